//! The redaction secret: kept by the store, the same when reopened, its own.

use super::{Fixture, T0, claim, id, request};

/// The redaction secret ([`Store::redaction_key`](crate::store::Store::redaction_key)) is the
/// store's: the same every time it is asked, the same once the store is opened again (as by another
/// process), and not another store's (two fresh stores give one value different digests). A store
/// that keeps none answers `None` always.
pub async fn redaction_key_is_kept_and_differs_between_stores(
    first: &dyn Fixture,
    second: &dyn Fixture,
) {
    let (Some(a), Some(b)) = (
        first.store().redaction_key(),
        second.store().redaction_key(),
    ) else {
        assert!(
            first.store().redaction_key().is_none() && second.store().redaction_key().is_none(),
            "a store keeps a redaction secret or never does"
        );
        return;
    };
    let again = first
        .store()
        .redaction_key()
        .expect("a store keeps its redaction secret");
    assert_eq!(
        again.id(),
        a.id(),
        "the secret is the same when asked again"
    );
    assert_ne!(a.id(), b.id(), "two stores have distinct secrets");
    let value = crate::Redacted::new("1234");
    assert_ne!(
        value.digest_with(&a),
        value.digest_with(&b),
        "one value has different digests in two stores"
    );
    if let Some(reopened) = first.reopen().await {
        let kept = reopened
            .redaction_key()
            .expect("a reopened store keeps its redaction secret");
        assert_eq!(kept.id(), a.id(), "the secret survives reopening the store");
        assert_eq!(value.digest_with(&kept), value.digest_with(&a));
        // The reopened handle is the same store: what one writes, the other reads.
        let r = request(id(), "reopened", "rec-reopened", T0);
        claim(first.store(), &r).await;
        assert_eq!(
            reopened
                .current_fencing_token("rec-reopened")
                .await
                .expect("the reopened store answers"),
            Some(1)
        );
    }
}
