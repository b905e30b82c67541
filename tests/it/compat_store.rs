//! Stores written by release 0.1 stay usable: every completed key of the committed fixture store
//! replays its stored result (its payload's fingerprint is unchanged), the routed call finds its queue
//! entry, the log verifies, and the pinned fingerprints, log hashes and manifest digest are unchanged.
//! The one key whose payload held a `Redacted` value (digested without a key in 0.1) answers
//! `KeyReused` and does not run: its digest is keyed now. `feature-check/` runs the same checks with
//! `serde_json`'s `preserve_order` and `arbitrary_precision` on.

use crate::support::compat;

use std::path::Path;

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn a_store_written_by_release_0_1_replays_and_verifies() {
    let copy = compat::copy_of_store(tests_dir());
    compat::replay_store(&copy).await;
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

#[test]
fn fingerprints_log_hashes_and_the_manifest_digest_are_those_of_release_0_1() {
    compat::check_pinned(tests_dir());
}
