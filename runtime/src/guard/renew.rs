//! Renewal: a live call keeps its claim on the key and its lease on the record however long its
//! body (or a backoff wait) runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::run::{Attempt, ClaimHold, Run};
use crate::store::{Millis, Renewal, StoreError};

/// An attempt's body, run with its claim renewed in the background; pins the body's output type so
/// `?` and `return` inside it resolve to `Result<T, E>`.
pub fn attempt<T, E, F: Future<Output = Result<T, E>>>(run: &Run, body: F) -> Renewing<'_, F> {
    Renewing::new(run, body)
}

pin_project_lite::pin_project! {
    /// A future (an attempt's body, a backoff wait) during which the call's claim is renewed: every
    /// third of the lease, the key's claim and the record's lease are extended in the store, so a live
    /// call keeps them however long it runs. The renewal runs inside this future's own polls (no task
    /// is spawned); a body that answers at its first poll never starts a timer.
    pub struct Renewing<'r, F> {
        #[pin]
        inner: F,
        run: &'r Run,
        // Inline, not boxed: arming it costs no allocation.
        #[pin]
        timer: Option<tokio::time::Sleep>,
        renewal: Option<RenewalFuture>,
    }
}

impl<'r, F> Renewing<'r, F> {
    /// `inner`, with the claim of `run`'s attempt renewed while it is pending.
    pub fn new(run: &'r Run, inner: F) -> Self {
        Renewing {
            inner,
            run,
            timer: None,
            renewal: None,
        }
    }
}

impl<F: Future> Future for Renewing<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(attempt) = this.run.try_attempt()
            && let Some(hold) = &attempt.hold
        {
            renew_while_pending(this.run, attempt, hold, this.timer, this.renewal, cx);
        }
        Poll::Pending
    }
}

/// A renewal in flight: the store's answer, the claim's new end.
type RenewalFuture = Pin<Box<dyn Future<Output = Result<Millis, StoreError>> + Send>>;

/// How often a live claim is renewed: a third of the lease, so two renewals may fail before it ends.
fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Drives the renewals of `hold` while the future around it is pending: starts one when the timer
/// fires, takes its answer, and marks the claim lost when the store says it was taken over or no
/// renewal succeeded before the lease ended.
fn renew_while_pending(
    run: &Run,
    attempt: &Attempt,
    hold: &ClaimHold,
    mut timer: Pin<&mut Option<tokio::time::Sleep>>,
    renewal: &mut Option<RenewalFuture>,
    cx: &mut Context<'_>,
) {
    let interval = renewal_interval(hold.lease);
    loop {
        if hold.is_lost() {
            return;
        }
        if let Some(pending) = renewal.as_mut() {
            let Poll::Ready(answer) = pending.as_mut().poll(cx) else {
                return;
            };
            *renewal = None;
            match answer {
                Ok(until_ms) => hold.renewed(until_ms),
                Err(e @ StoreError::ClaimLost { .. }) => {
                    tracing::error!(target: "actguard::guard", error = %e, "the claim was lost while the call ran");
                    hold.lose();
                }
                Err(e) => {
                    let now_ms = run.agent().inner.clock.now_ms();
                    if now_ms >= hold.until_ms() {
                        tracing::error!(target: "actguard::guard", error = %e, "no renewal reached the store before the lease ended: the claim is lost");
                        hold.lose();
                    } else {
                        tracing::warn!(target: "actguard::guard", error = %e, "the claim could not be renewed; trying again");
                    }
                }
            }
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(interval)));
        }
        let mut armed = timer.as_mut().as_pin_mut().expect("armed just above");
        if armed.as_mut().poll(cx).is_pending() {
            return;
        }
        armed.reset(tokio::time::Instant::now() + interval);
        let store = run.agent().inner.store.clone();
        let renewing = Renewal {
            key_digest: attempt.key_digest.clone(),
            key_text: attempt.key.clone(),
            claim_id: hold.claim_id,
            record: attempt.record.clone(),
            now_ms: run.agent().inner.clock.now_ms(),
            lease_ms: hold.lease.as_millis() as Millis,
        };
        *renewal = Some(Box::pin(async move { store.renew(&renewing).await }));
    }
}
