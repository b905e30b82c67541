//! Settling a guarded call: each attempt's result becomes a completion, a retry after a backoff, a
//! queue entry, a dead letter or a halted run.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use uuid::Uuid;

use super::renew::Renewing;
use super::{Call, DEAD_LETTER_QUEUE, SECURITY_QUEUE, invocation_note, ms_since};
use crate::agent::Agent;
use crate::alert::{HaltAlert, QueueAlert};
use crate::backoff::Backoff;
use crate::classify::Classify;
use crate::error::ActionError;
use crate::invoke::record_outcome;
use crate::log::LogHead;
use crate::log::{NewLogEntry, Outcome};
use crate::metrics::MetricOutcome;
use crate::policy::{FailureKind, Route};
use crate::run::{Attempt, ClaimHold, Run};
use crate::store::{
    Completion, Failure, Millis, NewQueueEntry, QueueKind, QueueRef, Renewal, RunState, SharedStr,
    StoreError,
};

/// How often a completion is sent before its failure is final (the store may have committed it and
/// lost the reply: sending it again converges).
const COMPLETE_TRIES: u32 = 4;
/// The pause before the first resend of a completion; it grows fourfold.
const COMPLETE_RETRY_FIRST: Duration = Duration::from_millis(50);

impl<T, E> Call<T, E>
where
    T: Serialize + DeserializeOwned,
    E: Classify + Display,
{
    /// The run handle the body sees: it carries the current attempt.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Steps 4–5: takes the body's result; `Some` ends the call, `None` asks for another attempt (after
    /// the backoff delay, already slept).
    pub async fn settle(&mut self, outcome: Result<T, E>) -> Option<Result<T, ActionError<E>>> {
        let span = self.span.clone();
        let this = &mut *self;
        let result = async move {
            match outcome {
                Ok(value) => Some(this.succeed(value).await),
                Err(error) => this.failed(error).await,
            }
        }
        .instrument(span)
        .await;
        if let Some(r) = &result {
            let key = &self.agent().inner.redaction;
            key.scope(|| record_outcome(self.outcome.as_ref(), self.spec.name, r, false));
        }
        result
    }

    fn agent(&self) -> &Agent {
        self.run.agent()
    }

    fn attempt(&self) -> &Attempt {
        self.run.attempt()
    }

    fn count(&self, outcome: MetricOutcome) {
        self.agent().inner.metrics.count(self.spec.name, outcome);
    }

    fn now_ms(&self) -> Millis {
        self.agent().inner.clock.now_ms()
    }

    /// The result as stored: `Redacted` values in it as their digests under the agent's key.
    /// The result as stored: within the limits, `Redacted` values keyed by the agent's key.
    fn to_value(&self, value: &T) -> Result<serde_json::Value, crate::limits::Unstorable> {
        self.agent()
            .inner
            .redaction
            .scope(|| crate::limits::result_value(value))
    }

    fn entry(&self, outcome: Outcome, now_ms: Millis) -> NewLogEntry {
        NewLogEntry {
            at_ms: now_ms,
            run_id: self.run.id(),
            action: SharedStr::from_static(self.spec.name),
            record: self.attempt().record.clone(),
            key_text: self.attempt().key.clone(),
            key_digest: self.attempt().key_digest.clone(),
            attempt: self.number,
            retry: self.attempt().is_retry() || self.replay_of.is_some(),
            outcome,
            failure_kind: None,
            route: None,
            message: invocation_note(self.replay_of, self.attempt().reverting()),
            queue_entry: self.replay_of,
            before: None,
            after: None,
            fencing_token: self.claim.as_ref().map(|c| c.fencing_token),
            duration_ms: ms_since(self.attempt_started_ms, now_ms),
        }
    }

    /// The log entry of a failed attempt (or of a call stopped before its retry), saying `message`,
    /// with the state the body captured before the write, or why that state is not logged.
    fn failure_entry(&self, outcome: Outcome, now_ms: Millis, message: String) -> NewLogEntry {
        let mut entry = self.entry(outcome, now_ms);
        entry.message = Some(match self.attempt().take_before() {
            Some(Ok(state)) => {
                entry.before = Some(state);
                message
            }
            Some(Err(why)) => {
                format!("{message} (its state before the write is not logged: {why})")
            }
            None => message,
        });
        entry
    }

    /// The states the body captured, each `None` if it captured none or it cannot be stored, and why
    /// one cannot be stored.
    fn take_states(
        &self,
    ) -> (
        Option<serde_json::Value>,
        Option<serde_json::Value>,
        Option<String>,
    ) {
        let mut refused = None;
        let mut keep = |captured: Option<crate::run::Captured>| match captured? {
            Ok(state) => Some(state),
            Err(why) => {
                refused.get_or_insert(why);
                None
            }
        };
        let before = keep(self.attempt().take_before());
        let after = keep(self.attempt().take_after());
        (before, after, refused)
    }

    async fn succeed(&mut self, value: T) -> Result<T, ActionError<E>> {
        let Some(claim) = &self.claim else {
            self.count(MetricOutcome::Succeeded);
            return Ok(value);
        };
        let claim_id = claim.claim_id;
        // Captured states are kept (a capture is rare; cloning `None` is free) so that a completion
        // sent again is built the same way; the result is serialized again from the value.
        let (before, after, refused) = self.take_states();
        // The body ran: the key must end recorded, never released to run again. A result or a state
        // beyond the limits is refused while serialized, however deep the value.
        let result = match self.to_value(&value) {
            Ok(r) => r,
            Err(e) => return Err(self.result_not_stored(e.to_string(), before, after).await),
        };
        if let Some(why) = refused {
            return Err(self.result_not_stored(why, before, after).await);
        }
        let now_ms = self.now_ms();
        let mut completion =
            self.completion(claim_id, now_ms, result, before.clone(), after.clone());
        // A completion whose reply was lost is sent again: the store accepts the same claim's same
        // completion once more (it converges), so a lost reply does not leave the key to run again.
        let store = self.agent().inner.store.clone();
        let mut pause = COMPLETE_RETRY_FIRST;
        let mut tries = 1;
        loop {
            match store.complete(completion).await {
                Ok(_) => {
                    tracing::debug!(target: "actguard::guard", attempts = self.number, "succeeded");
                    self.count(MetricOutcome::Succeeded);
                    return Ok(value);
                }
                Err(e @ (StoreError::Unavailable(_) | StoreError::Backend(_)))
                    if tries < COMPLETE_TRIES =>
                {
                    tracing::warn!(target: "actguard::guard", error = %e, "the result could not be recorded; sending it again");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                    tries += 1;
                    let result = self.to_value(&value).unwrap_or_default();
                    completion =
                        self.completion(claim_id, now_ms, result, before.clone(), after.clone());
                }
                Err(e @ (StoreError::ClaimLost { .. } | StoreError::Unavailable(_))) => {
                    tracing::error!(target: "actguard::guard", error = %e, "the result could not be recorded");
                    return Err(self.unrecorded(e));
                }
                // The store is there but refuses this result: record that the body ran instead.
                Err(e) => {
                    return Err(self.result_not_stored(e.to_string(), before, after).await);
                }
            }
        }
    }

    /// The completion of a successful attempt: the result and the final log entry (`after` defaults
    /// to the result).
    fn completion(
        &self,
        claim_id: Uuid,
        now_ms: Millis,
        result: serde_json::Value,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Completion {
        // A compensating action's success is logged as the compensation it is (and so stays out of the
        // blast radius of later queries for succeeded writes).
        let outcome = if self.attempt().reverting().is_some() {
            Outcome::Compensated
        } else {
            Outcome::Succeeded
        };
        let mut entry = self.entry(outcome, now_ms);
        entry.before = state(before);
        entry.after = state(Some(after.unwrap_or_else(|| result.clone())));
        Completion {
            key_digest: self.attempt().key_digest.clone(),
            claim_id,
            action: SharedStr::from_static(self.spec.name),
            record: self.attempt().record.clone(),
            result,
            entry,
            now_ms,
            replay_of: self.replay_of,
        }
    }

    /// The body ran, but the call's outcome could not be recorded.
    fn unrecorded(&self, error: StoreError) -> ActionError<E> {
        self.count(MetricOutcome::Unrecorded);
        ActionError::Unrecorded {
            key: self.attempt().key.to_string(),
            attempts: self.number,
            error,
        }
    }

    /// The body ran and succeeded, but its result cannot be stored: the key is dead-lettered with
    /// what happened (and the states the body captured, for blast radius and revert), so that it
    /// never runs again.
    async fn result_not_stored(
        &mut self,
        message: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> ActionError<E> {
        let Some(claim) = &self.claim else {
            return self.unrecorded(StoreError::Backend(message.into()));
        };
        let now_ms = self.now_ms();
        let note = format!(
            "the action ran and succeeded, but its result cannot be stored ({message}): it will not run again"
        );
        let mut entry = self.entry(Outcome::DeadLettered, now_ms);
        entry.failure_kind = Some(FailureKind::Validation);
        entry.route = Some(Route::DeadLetter);
        entry.message = Some(note.clone());
        entry.before = state(before);
        entry.after = state(after);
        let failure = Failure {
            key_digest: self.attempt().key_digest.clone(),
            claim_id: claim.claim_id,
            queue_entry: Some(self.queue_entry(
                QueueKind::DeadLetter,
                DEAD_LETTER_QUEUE,
                FailureKind::Validation,
                note,
                now_ms,
            )),
            entry,
            now_ms,
            replay_of: self.replay_of,
        };
        match self.agent().inner.store.fail(failure).await {
            Ok(logged) => {
                tracing::error!(target: "actguard::guard", error = %message, "the result cannot be stored: dead-lettered");
                self.count(MetricOutcome::ResultNotStored);
                let queue = QueueRef {
                    id: logged.entry.queue_entry.unwrap_or_default(),
                    kind: QueueKind::DeadLetter,
                    name: DEAD_LETTER_QUEUE.to_owned(),
                };
                self.queue_entry_opened(&queue, None, &message, now_ms);
                ActionError::ResultNotStored {
                    key: self.attempt().key.to_string(),
                    queue,
                    message,
                }
            }
            Err(e) => {
                tracing::error!(target: "actguard::guard", error = %e, "the result cannot be stored, nor that the action ran");
                self.unrecorded(e)
            }
        }
    }

    /// Before a retry: renews the claim, which also confirms that the call still holds it. A claim
    /// taken over, or a store that cannot confirm it, ends the call (no attempt runs unclaimed).
    async fn confirm_claim(&mut self) -> Result<(), ActionError<E>> {
        let (Some(claim), Some(hold)) = (&self.claim, &self.attempt().hold) else {
            return Ok(());
        };
        if hold.is_lost() {
            return Err(self.unrecorded(StoreError::ClaimLost {
                key: self.attempt().key.to_string(),
            }));
        }
        let renewal = Renewal {
            key_digest: self.attempt().key_digest.clone(),
            key_text: self.attempt().key.clone(),
            claim_id: claim.claim_id,
            record: self.attempt().record.clone(),
            now_ms: self.now_ms(),
            lease_ms: hold.lease.as_millis() as Millis,
        };
        match self.agent().inner.store.renew(&renewal).await {
            Ok(until_ms) => {
                hold.renewed(until_ms);
                Ok(())
            }
            Err(e) => {
                tracing::error!(target: "actguard::guard", error = %e, "the claim could not be confirmed before the retry");
                hold.lose();
                Err(self.unrecorded(e))
            }
        }
    }

    async fn failed(&mut self, error: E) -> Option<Result<T, ActionError<E>>> {
        if self.attempt().claim_lost() {
            // Another call may hold the key now: nothing of this one is recorded or retried.
            return Some(Err(self.unrecorded(StoreError::ClaimLost {
                key: self.attempt().key.to_string(),
            })));
        }
        let kind = error.classify();
        let now_ms = self.now_ms();
        self.first_failure_ms.get_or_insert(now_ms);
        let policy = &self.spec.policy;
        let mut route = policy.route_for(kind);
        if route == Route::Retry {
            let backoff = match &mut self.backoff {
                Some(b) => b,
                None => self.backoff.insert(Backoff::with_rng(
                    policy.backoff_base,
                    policy.backoff_cap,
                    policy.jitter,
                    self.run.agent().call_rng(),
                )),
            };
            // The exponent advances either way; a server's Retry-After replaces the delay as asked
            // (no jitter, not capped by the backoff cap: only `max_elapsed` bounds it).
            let backoff_delay = backoff.next().unwrap_or(policy.backoff_cap);
            let asked = error.retry_after();
            let delay = asked.unwrap_or(backoff_delay);
            let attempts_left = self.number < policy.retries.saturating_add(1);
            let elapsed = self.started.elapsed();
            let in_budget = elapsed + delay <= policy.max_elapsed;
            if attempts_left && in_budget {
                if self.claim.is_some() {
                    let mut entry =
                        self.failure_entry(Outcome::Retrying, now_ms, failure_message(&error));
                    entry.failure_kind = Some(kind);
                    entry.route = Some(Route::Retry);
                    if let Err(e) = self.agent().inner.store.append_log(&entry).await {
                        return Some(Err(self.unrecorded(e)));
                    }
                }
                tracing::warn!(target: "actguard::guard",
                    kind = kind.as_str(),
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "attempt {} failed; retrying",
                    self.number
                );
                self.count(MetricOutcome::Retrying);
                // The claim is renewed while the call waits, and confirmed before the retry.
                let run = self.run.clone();
                Renewing::new(&run, tokio::time::sleep(delay)).await;
                // Another action of the run may have halted it meanwhile: a halted run acts no more.
                if let Some(refused) = self.refuse_if_halted().await {
                    return Some(Err(refused));
                }
                if let Err(lost) = self.confirm_claim().await {
                    return Some(Err(lost));
                }
                self.next_attempt();
                return None;
            }
            route = Route::DeadLetter;
            if let (true, Some(asked)) = (attempts_left, asked) {
                // The server asked for longer than the budget leaves: waiting would overshoot
                // `max_elapsed`, retrying sooner would go against what the server said.
                let left = policy.max_elapsed.saturating_sub(elapsed);
                let why = format!(
                    "the server asked to retry after {}, but only {} of the {} budget remain",
                    DisplayDuration(asked),
                    DisplayDuration(left),
                    DisplayDuration(policy.max_elapsed),
                );
                return Some(Err(self
                    .terminal(error, kind, route, now_ms, Some(why))
                    .await));
            }
        }
        Some(Err(self.terminal(error, kind, route, now_ms, None).await))
    }

    /// Before a retry: `Some` if the run was halted during the backoff (the claim is released), or the
    /// store cannot tell (fail closed).
    async fn refuse_if_halted(&mut self) -> Option<ActionError<E>> {
        let store = self.agent().inner.store.clone();
        match store.run_state(self.run.id()).await {
            Ok(RunState::Active) => None,
            Err(e) => Some(self.unrecorded(e)),
            Ok(RunState::Halted { reason, .. }) => {
                tracing::info!(target: "actguard::guard", "refused: the run was halted before the retry");
                self.count(MetricOutcome::Refused);
                if let Some(claim) = &self.claim {
                    let now_ms = self.now_ms();
                    let mut entry = self.entry(Outcome::Halted, now_ms);
                    // Not an attempt: the one before it is already logged as `Retrying`.
                    entry.attempt = 0;
                    entry.retry = false;
                    entry.message = Some(format!("not retried: the run was halted ({reason})"));
                    let release = Failure {
                        key_digest: self.attempt().key_digest.clone(),
                        claim_id: claim.claim_id,
                        queue_entry: None,
                        entry,
                        now_ms,
                        replay_of: self.replay_of,
                    };
                    if let Err(e) = store.fail(release).await {
                        tracing::error!(target: "actguard::guard", error = %e, "the claim could not be released");
                    }
                }
                Some(ActionError::Halted {
                    run_id: self.run.id(),
                    attempts: self.number,
                })
            }
        }
    }

    fn next_attempt(&mut self) {
        self.number += 1;
        let attempt = Attempt {
            action: self.spec.name,
            key: self.attempt().key.clone(),
            key_digest: self.attempt().key_digest.clone(),
            record: self.attempt().record.clone(),
            number: self.number,
            retry: true,
            run_id: self.run.id(),
            fencing_token: self.claim.as_ref().map(|c| c.fencing_token),
            before: Mutex::new(None),
            after: Mutex::new(None),
            reverting: self.attempt().reverting().cloned().map(Box::new),
            hold: self.attempt().hold.as_ref().map(ClaimHold::carry),
            redaction: self.attempt().redaction.clone(),
        };
        self.run = self.run.with_attempt(attempt);
        self.attempt_started_ms = self.now_ms();
        self.span.record("attempt", self.number);
    }

    async fn terminal(
        &mut self,
        error: E,
        kind: FailureKind,
        route: Route,
        now_ms: Millis,
        why: Option<String>,
    ) -> ActionError<E> {
        let mut message = failure_message(&error);
        if let Some(why) = why {
            message = format!("{message}: {why}");
        }
        let attempts = self.number;
        if route == Route::Halt {
            return self.halt(error, kind, message, now_ms).await;
        }
        let Some(claim) = &self.claim else {
            tracing::error!(target: "actguard::guard", kind = kind.as_str(), error = %message, attempts, "read failed");
            self.count(MetricOutcome::Failed);
            return ActionError::Failed {
                kind,
                attempts,
                error,
            };
        };
        let policy = &self.spec.policy;
        let (queue_kind, name, outcome) = match route {
            Route::RouteOwner => (
                QueueKind::Owner,
                policy.owner.unwrap_or("owner"),
                Outcome::Routed,
            ),
            Route::Escalate => (
                QueueKind::Expert,
                policy.expert.unwrap_or("expert"),
                Outcome::Routed,
            ),
            _ => (
                QueueKind::DeadLetter,
                DEAD_LETTER_QUEUE,
                Outcome::DeadLettered,
            ),
        };
        let route = match queue_kind {
            QueueKind::DeadLetter => Route::DeadLetter,
            _ => route,
        };
        let mut entry = self.failure_entry(outcome, now_ms, message.clone());
        entry.failure_kind = Some(kind);
        entry.route = Some(route);
        let failure = Failure {
            key_digest: self.attempt().key_digest.clone(),
            claim_id: claim.claim_id,
            queue_entry: Some(self.queue_entry(queue_kind, name, kind, message.clone(), now_ms)),
            entry,
            now_ms,
            replay_of: self.replay_of,
        };
        let logged = match self.agent().inner.store.fail(failure).await {
            Ok(logged) => logged,
            Err(e) => {
                tracing::error!(target: "actguard::guard", error = %e, "the failure could not be recorded");
                return self.unrecorded(e);
            }
        };
        let Some(id) = logged.entry.queue_entry else {
            return self.unrecorded(StoreError::Backend(
                "the store did not name the queue entry it created".into(),
            ));
        };
        let queue = QueueRef {
            id,
            kind: queue_kind,
            name: name.to_owned(),
        };
        self.queue_entry_opened(&queue, Some(kind), &message, now_ms);
        if queue_kind == QueueKind::DeadLetter {
            tracing::error!(target: "actguard::guard", kind = kind.as_str(), attempts, queue_entry = id, error = %message, "dead-lettered");
            self.count(MetricOutcome::DeadLettered);
            ActionError::DeadLettered {
                attempts,
                queue,
                error,
            }
        } else {
            tracing::warn!(target: "actguard::guard",
                kind = kind.as_str(),
                queue = queue_kind.as_str(),
                queue_name = name,
                queue_entry = id,
                error = %message,
                "routed"
            );
            self.count(MetricOutcome::Routed);
            ActionError::Routed { kind, queue, error }
        }
    }

    /// Tells the alert sink (if the agent opted in) of the queue entry this call opened.
    fn queue_entry_opened(
        &self,
        queue: &QueueRef,
        failure_kind: Option<FailureKind>,
        message: &str,
        now_ms: Millis,
    ) {
        self.agent().queue_entry_opened(|| QueueAlert {
            entry_id: queue.id,
            kind: queue.kind,
            queue: queue.name.clone(),
            run_id: self.run.id(),
            action: self.spec.name.to_owned(),
            record: self.attempt().record.to_string(),
            key: self.attempt().key.to_string(),
            failure_kind,
            message: message.to_owned(),
            at_ms: now_ms,
        });
    }

    /// The queue entry of this call's failure (a claimed call's).
    fn queue_entry(
        &self,
        kind: QueueKind,
        name: &str,
        failure_kind: FailureKind,
        message: String,
        now_ms: Millis,
    ) -> NewQueueEntry {
        NewQueueEntry {
            kind,
            name: name.to_owned(),
            run_id: self.run.id(),
            action: self.spec.name.to_owned(),
            key_text: self.attempt().key.to_string(),
            key_digest: self.attempt().key_digest.to_string(),
            record: self.attempt().record.to_string(),
            payload: self
                .claim
                .as_ref()
                .map_or(serde_json::Value::Null, |c| c.payload.value()),
            failure_kind,
            message,
            attempts: self.number,
            first_failure_ms: self.first_failure_ms.unwrap_or(now_ms),
            last_failure_ms: now_ms,
        }
    }

    async fn halt(
        &mut self,
        error: E,
        kind: FailureKind,
        message: String,
        now_ms: Millis,
    ) -> ActionError<E> {
        let run_id = self.run.id();
        let reason = format!("{kind} failure in `{}`: {message}", self.spec.name);
        let store = self.agent().inner.store.clone();
        // Whether this call halted the run: it then tells the alert sink, once the halt is logged.
        let mut alert = None;
        match halt_converging(&*store, run_id, &reason, now_ms).await {
            Ok(true) => {
                tracing::error!(target: "actguard::guard", kind = kind.as_str(), error = %message, "run halted");
                alert = Some(HaltAlert {
                    run_id,
                    reason,
                    action: Some(self.spec.name.to_owned()),
                    record: Some(self.attempt().record.to_string()),
                    key: Some(self.attempt().key.to_string()),
                    failure_kind: Some(kind),
                    at_ms: now_ms,
                    log_head: None,
                });
            }
            Ok(false) => {
                tracing::error!(target: "actguard::guard", kind = kind.as_str(), error = %message, "run already halted");
            }
            Err(e) => {
                // Not halted durably: report the store error, so the caller does not believe the run is
                // safely stopped. The claim stays until its lease expires.
                tracing::error!(target: "actguard::guard", error = %e, "the run could not be halted");
                return self.unrecorded(e);
            }
        }
        self.count(MetricOutcome::Halted);
        let mut queue = None;
        if let Some(claim) = &self.claim {
            let mut entry = self.failure_entry(Outcome::Halted, now_ms, message.clone());
            entry.failure_kind = Some(kind);
            entry.route = Some(Route::Halt);
            // The key is quarantined in the security queue: a later run that meets it is refused
            // without calling the downstream, until a person resolves the entry.
            let failure = Failure {
                key_digest: self.attempt().key_digest.clone(),
                claim_id: claim.claim_id,
                queue_entry: Some(self.queue_entry(
                    QueueKind::Security,
                    SECURITY_QUEUE,
                    kind,
                    message,
                    now_ms,
                )),
                entry,
                now_ms,
                replay_of: self.replay_of,
            };
            // The run is halted durably already; a failure to record the quarantine leaves the claim to
            // its lease, so the caller still learns that the run halted.
            match store.fail(failure).await {
                Ok(logged) => {
                    queue = logged.entry.queue_entry.map(|id| QueueRef {
                        id,
                        kind: QueueKind::Security,
                        name: SECURITY_QUEUE.to_owned(),
                    });
                    if let Some(alert) = &mut alert {
                        alert.log_head = Some(LogHead::of(&logged));
                    }
                }
                Err(e) => {
                    tracing::error!(target: "actguard::guard", error = %e, "the halted call's key could not be quarantined")
                }
            }
        }
        if let Some(mut alert) = alert {
            if alert.log_head.is_none() {
                alert.log_head = read_head(&*store).await;
            }
            self.agent().alert_sink().alert(&alert);
        }
        ActionError::SecurityHalt {
            run_id,
            queue,
            error,
        }
    }
}

/// A captured state as the log keeps it: JSON `null` is no state (stored, both read back as `None`).
fn state(value: Option<serde_json::Value>) -> Option<serde_json::Value> {
    value.filter(|v| !v.is_null())
}

/// Halts the run, converging when the answer is lost: a halt whose commit answered with an error
/// may have committed, so it is sent once more, and "halted already" is then checked against the
/// run's state: a halt with this very reason and time is this call's, which tells the alert sink.
/// A halt that cannot be sent twice stays an error (the caller does not believe the run stopped).
pub(crate) async fn halt_converging(
    store: &dyn crate::store::Store,
    run_id: uuid::Uuid,
    reason: &str,
    now_ms: Millis,
) -> Result<bool, StoreError> {
    let e = match store.halt_run(run_id, reason, now_ms).await {
        Err(e) => e,
        answered => return answered,
    };
    tracing::warn!(target: "actguard::guard", error = %e, "halting the run got no answer; sending it again");
    if store.halt_run(run_id, reason, now_ms).await? {
        return Ok(true);
    }
    Ok(matches!(
        store.run_state(run_id).await?,
        crate::store::RunState::Halted { reason: r, at_ms } if r == reason && at_ms == now_ms
    ))
}

/// The log's head for a halt alert: best effort (an alert without a head beats no alert).
pub(crate) async fn read_head(store: &dyn crate::store::Store) -> Option<LogHead> {
    match store.log_head().await {
        Ok(head) => head,
        Err(e) => {
            tracing::error!(target: "actguard::guard", error = %e, "the log's head could not be read for the halt alert");
            None
        }
    }
}

/// A failure's logged and queued message: the error's text, and what its classifier noted (that an
/// error was not recognized, or that a request may have reached the server).
fn failure_message<E: Classify + Display + ?Sized>(error: &E) -> String {
    match error.note() {
        Some(note) => format!("{error} ({note})"),
        None => error.to_string(),
    }
}

/// A duration as a person reads it: `120s`, `1.5s`, `250ms`, `2m 30s`.
struct DisplayDuration(Duration);

impl Display for DisplayDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        let (secs, ms) = (ms / 1000, ms % 1000);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut parts = Vec::new();
        if h > 0 {
            parts.push(format!("{h}h"));
        }
        if m > 0 {
            parts.push(format!("{m}m"));
        }
        match (s, ms) {
            (0, 0) => {}
            (s, 0) => parts.push(format!("{s}s")),
            (s, ms) => parts.push(format!("{s}.{}s", format!("{ms:03}").trim_end_matches('0'))),
        }
        f.write_str(&parts.join(" "))
    }
}
