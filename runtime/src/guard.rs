//! The guarded call: the state machine the expansion of `#[agent_action]` drives.
//!
//! The generated function renders the key, record and payload, calls [`Call::begin`], then loops:
//! run the body once with [`Call::run`] (the run handle carrying the attempt), and hand its result to
//! [`Call::settle`], which either finishes the call or sleeps and asks for another attempt. Attempts are
//! therefore strictly sequential, and the body is the user's own code, borrowed, never moved.
//!
//! Order of one call: one atomic `begin` in the store (refused if the
//! run is halted; replay of a completed key; `KeyReused`; a terminally failed key's queue entry; a
//! bounded wait for a live claim; the loop filter; else the claim with its fencing token), then the
//! attempts, then `complete` or `fail`. The store is never bypassed: if it errors, the body does not run.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::SmallRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::agent::Agent;
use crate::alert::{HaltAlert, QueueAlert};
use crate::backoff::Backoff;
use crate::classify::Classify;
use crate::error::ActionError;
use crate::invoke::{OutcomeSlot, record_outcome};
use crate::key::{KeyBuilder, Payload, PayloadError, RenderedKey};
use crate::log::LogQuery;
use crate::log::{LogEntry, LogHead};
use crate::log::{NewLogEntry, Outcome};
use crate::policy::{ActionSpec, FailureKind, Route};
use crate::run::{Attempt, ClaimHold, Run};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, Millis, NewQueueEntry, QueueKind, QueueQuery,
    QueueRef, QueueStatus, Renewal, RunState, SharedStr, StoreError,
};

/// The first pause while waiting for another worker's claim; it doubles up to [`MAX_CLAIM_POLL`].
const FIRST_CLAIM_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two looks at another worker's claim.
const MAX_CLAIM_POLL: Duration = Duration::from_millis(500);
/// How often a completion is sent before its failure is final (the store may have committed it and
/// lost the reply: sending it again converges).
const COMPLETE_TRIES: u32 = 4;
/// The pause before the first resend of a completion; it grows fourfold.
const COMPLETE_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The queue name of exhausted retries.
pub const DEAD_LETTER_QUEUE: &str = "dead-letter";
/// The queue name of failures that halted their run: their keys wait there for a person.
pub const SECURITY_QUEUE: &str = "security";

/// What [`Call::begin`] decided.
// Built once per call and destructured at once by the expansion: boxing the call would only add an
// allocation to every guarded call.
#[allow(clippy::large_enum_variant)]
pub enum Begun<T, E> {
    /// Act: run the body.
    Act(Call<T, E>),
    /// Done without acting (replayed, skipped, refused): return this.
    Done(Result<T, ActionError<E>>),
}

/// One guarded call in progress.
pub struct Call<T, E> {
    /// The run handle the body sees; carries the current attempt.
    run: Run,
    spec: &'static ActionSpec,
    /// `None` for `read` actions: no claim, no dedup, no log. The key, its digest and the record are
    /// the attempt's (`run.attempt()`): not copied here.
    claim: Option<Claimed>,
    /// The current attempt's number (counting attempts of a dead worker whose claim was taken over).
    number: u32,
    /// When the first attempt began: the retry budget is measured from it, to the nanosecond (a
    /// budget in milliseconds could overrun by a fraction of one).
    started: Instant,
    /// When the current attempt began, on the agent's clock: its logged duration is in milliseconds
    /// of that clock.
    attempt_started_ms: Millis,
    first_failure_ms: Option<Millis>,
    /// Built at the first retryable failure (most calls never need one), from the agent's jitter
    /// generator.
    backoff: Option<Backoff<SmallRng>>,
    span: tracing::Span,
    /// The queue entry this call replays (an operator's replay), if any.
    replay_of: Option<u64>,
    /// Where an invoked call leaves its outcome.
    outcome: Option<OutcomeSlot>,
    _result: PhantomData<fn() -> (T, E)>,
}

/// Whether a key of an action with `approve` may act.
enum Approval {
    /// Approved with this payload, unexpired and unused.
    Granted,
    /// Never approved with this payload.
    Needed,
    /// Approved, but the approval (this entry) expired unused.
    Expired(u64),
    /// Approved, and the approval (this entry) was used by an attempt since.
    Used(u64),
}

struct Claimed {
    claim_id: Uuid,
    fencing_token: u64,
    payload: crate::key::PayloadJson,
    /// When the claim's lease ends, as `begin` set it.
    lease_until_ms: Millis,
}

impl<T, E> Call<T, E>
where
    T: Serialize + DeserializeOwned,
    E: Classify + Display,
{
    /// Steps 1–3 of the guarded call. `key` is `None` for `read` actions (no claim, no dedup, no log);
    /// `record` defaults to the key.
    pub async fn begin(
        run: &Run,
        spec: &'static ActionSpec,
        key: Option<RenderedKey>,
        record: Option<RenderedKey>,
        payload: Result<Payload, PayloadError>,
    ) -> Begun<T, E> {
        let read = key.is_none();
        let invocation = run.invocation();
        // An operation may replace the key (a revert's `revert:{reversed key}`): same rules, another key.
        // Without a template of its own, the record is the rendered key's text (not an override's).
        let record = match (&record, &key) {
            (Some(r), _) | (None, Some(r)) => r.text.clone(),
            (None, None) => SharedStr::default(),
        };
        let key = match (key, invocation.and_then(|i| i.key_override.as_deref())) {
            (Some(_), Some(text)) => Some(KeyBuilder::new(spec.name).literal(text).finish()),
            (key, _) => key,
        };
        let (key_text, key_digest) = key.map(|k| (k.text, k.digest)).unwrap_or_default();
        let span = tracing::info_span!(
            "agent_action",
            action = spec.name,
            record = %record,
            key = %key_text,
            run_id = %run.id(),
            attempt = tracing::field::Empty,
        );
        let begin = Beginning {
            agent: run.agent(),
            run,
            spec,
            read,
            key_text,
            key_digest,
            record,
        };
        let slot = run.outcome.clone();
        let mut begun = begin.run(payload, span.clone()).instrument(span).await;
        match &mut begun {
            Begun::Done(result) => run
                .agent()
                .inner
                .redaction
                .scope(|| record_outcome(slot.as_ref(), spec.name, result, result.is_ok())),
            Begun::Act(call) => call.outcome = slot,
        }
        begun
    }

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

    fn count(&self, outcome: &'static str) {
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
            self.count("succeeded");
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
                    tracing::debug!(attempts = self.number, "succeeded");
                    self.count("succeeded");
                    return Ok(value);
                }
                Err(e @ (StoreError::Unavailable(_) | StoreError::Backend(_)))
                    if tries < COMPLETE_TRIES =>
                {
                    tracing::warn!(error = %e, "the result could not be recorded; sending it again");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                    tries += 1;
                    let result = self.to_value(&value).unwrap_or_default();
                    completion =
                        self.completion(claim_id, now_ms, result, before.clone(), after.clone());
                }
                Err(e @ (StoreError::ClaimLost { .. } | StoreError::Unavailable(_))) => {
                    tracing::error!(error = %e, "the result could not be recorded");
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
        self.count("unrecorded");
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
            return self.unrecorded(StoreError::Backend(message));
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
                tracing::error!(error = %message, "the result cannot be stored: dead-lettered");
                self.count("result_not_stored");
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
                tracing::error!(error = %e, "the result cannot be stored, nor that the action ran");
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
                tracing::error!(error = %e, "the claim could not be confirmed before the retry");
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
                tracing::warn!(
                    kind = kind.as_str(),
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "attempt {} failed; retrying",
                    self.number
                );
                self.count("retrying");
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
                tracing::info!("refused: the run was halted before the retry");
                self.count("refused");
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
                        tracing::error!(error = %e, "the claim could not be released");
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
            tracing::error!(kind = kind.as_str(), error = %message, attempts, "read failed");
            self.count("failed");
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
                tracing::error!(error = %e, "the failure could not be recorded");
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
            tracing::error!(kind = kind.as_str(), attempts, queue_entry = id, error = %message, "dead-lettered");
            self.count("dead_lettered");
            ActionError::DeadLettered {
                attempts,
                queue,
                error,
            }
        } else {
            tracing::warn!(
                kind = kind.as_str(),
                queue = queue_kind.as_str(),
                queue_name = name,
                queue_entry = id,
                error = %message,
                "routed"
            );
            self.count("routed");
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
                tracing::error!(kind = kind.as_str(), error = %message, "run halted");
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
                tracing::error!(kind = kind.as_str(), error = %message, "run already halted");
            }
            Err(e) => {
                // Not halted durably: report the store error, so the caller does not believe the run is
                // safely stopped. The claim stays until its lease expires.
                tracing::error!(error = %e, "the run could not be halted");
                return self.unrecorded(e);
            }
        }
        self.count("halted");
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
                    tracing::error!(error = %e, "the halted call's key could not be quarantined")
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
    tracing::warn!(error = %e, "halting the run got no answer; sending it again");
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
            tracing::error!(error = %e, "the log's head could not be read for the halt alert");
            None
        }
    }
}

/// The inputs of `begin`, borrowed for its duration.
struct Beginning<'a> {
    agent: &'a Agent,
    run: &'a Run,
    spec: &'static ActionSpec,
    read: bool,
    key_text: SharedStr,
    key_digest: SharedStr,
    record: SharedStr,
}

impl Beginning<'_> {
    fn replay_of(&self) -> Option<u64> {
        self.run.invocation().and_then(|i| i.replay_of)
    }

    fn count(&self, outcome: &'static str) {
        self.agent.inner.metrics.count(self.spec.name, outcome);
    }

    fn done<T, E>(&self, outcome: &'static str, error: ActionError<E>) -> Begun<T, E> {
        self.count(outcome);
        Begun::Done(Err(error))
    }

    /// A key whose approval request was decided, or not yet: `rejected` once a person rejected it
    /// (the entry discarded), else still awaiting approval. Nothing acts.
    async fn approval_decided<T, E>(&self, queue: QueueRef) -> Begun<T, E> {
        match self.agent.inner.store.queue_entry(queue.id).await {
            Err(e) => self.store_error(e),
            Ok(Some(entry)) if entry.status == QueueStatus::Discarded => {
                tracing::info!(queue_entry = queue.id, "rejected by a person");
                self.done(
                    "rejected",
                    ActionError::Rejected {
                        key: self.key_text.to_string(),
                        queue,
                        note: entry.note,
                    },
                )
            }
            Ok(_) => {
                tracing::info!(queue_entry = queue.id, "awaiting approval");
                self.done(
                    "awaiting_approval",
                    ActionError::AwaitingApproval {
                        key: self.key_text.to_string(),
                        queue,
                    },
                )
            }
        }
    }

    /// Whether a person approved this key with this payload, within `approval_expires`, and the
    /// approval is unused: no attempt of the key was logged since.
    async fn approved(
        &self,
        payload: &crate::key::PayloadJson,
        now_ms: Millis,
    ) -> Result<Approval, StoreError> {
        let store = &self.agent.inner.store;
        let approvals = store
            .queue_entries(&QueueQuery {
                kind: Some(QueueKind::Approval),
                action: Some(self.spec.name.to_owned()),
                status: Some(QueueStatus::Resolved),
                ..QueueQuery::default()
            })
            .await?;
        let payload = payload.value();
        let expires_ms = self.spec.policy.approval_expires.as_millis() as Millis;
        let mut answer = Approval::Needed;
        for entry in approvals
            .iter()
            .filter(|e| *e.key_digest == *self.key_digest && e.payload == payload)
        {
            let Some(approved_ms) = entry.closed_ms else {
                continue;
            };
            if now_ms.saturating_sub(approved_ms) > expires_ms {
                answer = Approval::Expired(entry.id);
                continue;
            }
            let since = store
                .log(&LogQuery {
                    action: Some(self.spec.name.to_owned()),
                    record: Some(self.record.to_string()),
                    from_ms: Some(approved_ms),
                    ..LogQuery::default()
                })
                .await?;
            let used = since
                .iter()
                .any(|l| *l.entry.key_digest == *self.key_digest && l.entry.attempt > 0);
            if !used {
                return Ok(Approval::Granted);
            }
            answer = Approval::Used(entry.id);
        }
        Ok(answer)
    }

    /// Opens an approval request for the claimed key (its payload in the entry) and ends the claim:
    /// the key waits on the entry; nothing acts.
    async fn request_approval<T, E>(
        &self,
        claimed: Claimed,
        queue: &'static str,
        why: Approval,
        now_ms: Millis,
    ) -> Begun<T, E> {
        let message = match why {
            Approval::Expired(id) => {
                format!("awaiting approval (the approval of entry {id} expired unused)")
            }
            Approval::Used(id) => {
                format!("awaiting approval (the approval of entry {id} was used)")
            }
            Approval::Needed | Approval::Granted => "awaiting approval".to_owned(),
        };
        let mut entry = self.log_entry(Outcome::Routed, now_ms);
        entry.message = Some(format!("{message} in the queue `{queue}`"));
        let failure = Failure {
            key_digest: self.key_digest.clone(),
            claim_id: claimed.claim_id,
            queue_entry: Some(NewQueueEntry {
                kind: QueueKind::Approval,
                name: queue.to_owned(),
                run_id: self.run.id(),
                action: self.spec.name.to_owned(),
                key_text: self.key_text.to_string(),
                key_digest: self.key_digest.to_string(),
                record: self.record.to_string(),
                payload: claimed.payload.value(),
                // No failure: an approval entry carries the kind a person settles by hand.
                failure_kind: FailureKind::Validation,
                message,
                attempts: 0,
                first_failure_ms: now_ms,
                last_failure_ms: now_ms,
            }),
            entry,
            now_ms,
            replay_of: self.replay_of(),
        };
        match self.agent.inner.store.fail(failure).await {
            Err(e) => self.store_error(e),
            Ok(logged) => {
                let id = logged.entry.queue_entry.unwrap_or_default();
                tracing::info!(queue_entry = id, queue, "approval requested");
                self.agent.queue_entry_opened(|| QueueAlert {
                    entry_id: id,
                    kind: QueueKind::Approval,
                    queue: queue.to_owned(),
                    run_id: self.run.id(),
                    action: self.spec.name.to_owned(),
                    record: self.record.to_string(),
                    key: self.key_text.to_string(),
                    failure_kind: None,
                    message: "awaiting approval".to_owned(),
                    at_ms: now_ms,
                });
                self.done(
                    "awaiting_approval",
                    ActionError::AwaitingApproval {
                        key: self.key_text.to_string(),
                        queue: QueueRef {
                            id,
                            kind: QueueKind::Approval,
                            name: queue.to_owned(),
                        },
                    },
                )
            }
        }
    }

    fn halted<T, E>(&self) -> Begun<T, E> {
        tracing::info!("refused: the run is halted");
        self.done(
            "refused",
            ActionError::Halted {
                run_id: self.run.id(),
                attempts: 0,
            },
        )
    }

    fn store_error<T, E>(&self, e: StoreError) -> Begun<T, E> {
        tracing::error!(error = %e, "store unavailable: the action does not run");
        self.done("store_error", ActionError::Store(e))
    }

    fn log_entry(&self, outcome: Outcome, now_ms: Millis) -> NewLogEntry {
        NewLogEntry {
            at_ms: now_ms,
            run_id: self.run.id(),
            action: SharedStr::from_static(self.spec.name),
            record: self.record.clone(),
            key_text: self.key_text.clone(),
            key_digest: self.key_digest.clone(),
            attempt: 0,
            retry: false,
            outcome,
            failure_kind: None,
            route: None,
            message: None,
            queue_entry: None,
            before: None,
            after: None,
            fencing_token: None,
            duration_ms: 0,
        }
    }

    async fn run<T, E>(
        self,
        payload: Result<Payload, PayloadError>,
        span: tracing::Span,
    ) -> Begun<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: Classify + Display,
    {
        // Before the store: a payload that cannot be stored leaves nothing claimed.
        let payload = match payload {
            Ok(p) => p,
            Err(PayloadError::Serialize(e)) => {
                return self.done(
                    "serialization_error",
                    ActionError::Serialization {
                        action: self.spec.name.to_owned(),
                        message: e.to_string(),
                    },
                );
            }
            Err(PayloadError::Refused(error)) => {
                tracing::warn!(error = %error, "payload refused: the action does not run");
                return self.done(
                    "payload_refused",
                    ActionError::PayloadRefused {
                        action: self.spec.name.to_owned(),
                        error,
                    },
                );
            }
        };
        let store = &self.agent.inner.store;
        let clock = &self.agent.inner.clock;
        let policy = &self.spec.policy;

        if self.read {
            return match store.run_state(self.run.id()).await {
                Err(e) => self.store_error(e),
                Ok(RunState::Halted { .. }) => self.halted(),
                Ok(RunState::Active) => self.act(None, 1, false, span),
            };
        }

        let now_ms = clock.now_ms();
        let mut request = BeginRequest {
            run_id: self.run.id(),
            action: SharedStr::from_static(self.spec.name),
            key_text: self.key_text.clone(),
            key_digest: self.key_digest.clone(),
            record: self.record.clone(),
            fingerprint: payload.fingerprint,
            payload: payload.json,
            claim_id: new_claim_id(now_ms),
            now_ms,
            lease_ms: policy.lease.as_millis() as Millis,
            dedup_ms: policy.dedup.map(|d| d.as_millis() as Millis),
            replay_of: self.replay_of(),
        };
        // Set at the first busy answer: a call that is answered at once reads no clock for it.
        let mut wait_until: Option<Instant> = None;
        let mut poll = FIRST_CLAIM_POLL;
        loop {
            let answer = match store.begin(&request).await {
                Ok(a) => a,
                Err(e) => return self.store_error(e),
            };
            let lease_until_ms = match answer {
                Begin::Halted => return self.halted(),
                Begin::Completed { result, .. } => {
                    return self.replay(result, request.now_ms).await;
                }
                Begin::KeyReused { .. } => {
                    tracing::warn!("key reused with a different payload");
                    return self.done(
                        "key_reused",
                        ActionError::KeyReused {
                            key: self.key_text.to_string(),
                        },
                    );
                }
                Begin::Failed { entry } if entry.kind == QueueKind::Approval => {
                    return self.approval_decided(entry).await;
                }
                Begin::Failed { entry } => {
                    tracing::info!(queue_entry = entry.id, "the key failed before");
                    return self.done(
                        "previously_failed",
                        ActionError::PreviouslyFailed {
                            key: self.key_text.to_string(),
                            queue: entry,
                        },
                    );
                }
                Begin::Skipped {
                    previous_key,
                    acted_at_ms,
                } => return self.skip(previous_key, acted_at_ms, request.now_ms).await,
                Begin::Claimed(claim) => {
                    let claimed = Claimed {
                        claim_id: request.claim_id,
                        fencing_token: claim.fencing_token,
                        payload: request.payload,
                        lease_until_ms: request.now_ms.saturating_add(request.lease_ms),
                    };
                    if let Some(queue) = policy.approve {
                        match self.approved(&claimed.payload, request.now_ms).await {
                            Ok(Approval::Granted) => {}
                            Ok(needed) => {
                                return self
                                    .request_approval(claimed, queue, needed, request.now_ms)
                                    .await;
                            }
                            // The claim ends with its lease: nothing acted under it.
                            Err(e) => return self.store_error(e),
                        }
                    }
                    let number = claim.previous_attempts.saturating_add(1);
                    if claim.takeover {
                        tracing::warn!(
                            previous_attempts = claim.previous_attempts,
                            "took over the expired claim of another worker"
                        );
                        if number > policy.retries.saturating_add(1) {
                            return self
                                .abandon(claimed, claim.previous_attempts, request.now_ms)
                                .await;
                        }
                    }
                    return self.act(Some(claimed), number, claim.takeover || number > 1, span);
                }
                Begin::InProgress { lease_until_ms } => lease_until_ms,
                Begin::RecordBusy { lease_until_ms, .. } => lease_until_ms,
            };
            // Another worker holds the key or the record: look again shortly, never past the wait
            // allowed, and at the latest when that lease expires (a takeover is possible then).
            let now = Instant::now();
            let wait_until = *wait_until.get_or_insert(now + self.agent.inner.claim_wait);
            if now >= wait_until {
                tracing::info!(lease_until_ms, "in progress in another worker");
                return self.done(
                    "in_progress",
                    ActionError::InProgress {
                        key: self.key_text.to_string(),
                        lease_until_ms,
                    },
                );
            }
            let to_expiry =
                Duration::from_millis(lease_until_ms.saturating_sub(request.now_ms).max(1) as u64);
            let pause = poll.min(wait_until - now).min(to_expiry);
            tokio::time::sleep(pause).await;
            poll = (poll * 2).min(MAX_CLAIM_POLL);
            request.now_ms = clock.now_ms();
        }
    }

    fn act<T, E>(
        self,
        claim: Option<Claimed>,
        number: u32,
        retry: bool,
        span: tracing::Span,
    ) -> Begun<T, E> {
        span.record("attempt", number);
        let replay_of = self.replay_of();
        let attempt = Attempt {
            action: self.spec.name,
            key: self.key_text,
            key_digest: self.key_digest,
            record: self.record,
            number,
            retry,
            run_id: self.run.id(),
            fencing_token: claim.as_ref().map(|c| c.fencing_token),
            before: Mutex::new(None),
            after: Mutex::new(None),
            reverting: self
                .run
                .invocation()
                .and_then(|i| i.reverting.clone().map(Box::new)),
            hold: claim
                .as_ref()
                .map(|c| ClaimHold::new(c.claim_id, self.spec.policy.lease, c.lease_until_ms)),
            redaction: self.agent.inner.redaction.clone(),
        };
        // After the claim: an attempt's logged duration is its own, not the claim's commit.
        let (started, started_ms) = self.agent.inner.clock.now();
        Begun::Act(Call {
            run: self.run.with_attempt(attempt),
            spec: self.spec,
            claim,
            number,
            started,
            attempt_started_ms: started_ms,
            first_failure_ms: None,
            backoff: None,
            span,
            replay_of,
            outcome: None,
            _result: PhantomData,
        })
    }

    async fn replay<T, E>(&self, result: serde_json::Value, now_ms: Millis) -> Begun<T, E>
    where
        T: DeserializeOwned,
    {
        let value = match T::deserialize(&result) {
            Ok(v) => v,
            Err(e) => {
                return self.done(
                    "serialization_error",
                    ActionError::Serialization {
                        action: self.spec.name.to_owned(),
                        message: format!("the stored result no longer deserializes: {e}"),
                    },
                );
            }
        };
        let mut entry = self.log_entry(Outcome::Replayed, now_ms);
        entry.after = Some(result);
        if let Err(e) = self.agent.inner.store.append_log(&entry).await {
            return self.store_error(e);
        }
        tracing::info!("replayed the stored result of a completed key");
        self.count("replayed");
        Begun::Done(Ok(value))
    }

    /// A takeover whose call has no attempt left: every worker that held the claim stopped in the
    /// middle of an attempt (an input that kills its worker). The body does not run again; the key
    /// goes to the dead-letter queue and the caller learns where.
    async fn abandon<T, E>(&self, claimed: Claimed, attempts: u32, now_ms: Millis) -> Begun<T, E> {
        let message = format!(
            "{attempts} attempts started and none ended: each worker holding the claim stopped \
             before its attempt did, so the body is not run again"
        );
        let mut entry = self.log_entry(Outcome::DeadLettered, now_ms);
        entry.failure_kind = Some(FailureKind::Transient);
        entry.route = Some(Route::DeadLetter);
        entry.message = Some(message.clone());
        entry.fencing_token = Some(claimed.fencing_token);
        let failure = Failure {
            key_digest: self.key_digest.clone(),
            claim_id: claimed.claim_id,
            queue_entry: Some(NewQueueEntry {
                kind: QueueKind::DeadLetter,
                name: DEAD_LETTER_QUEUE.to_owned(),
                run_id: self.run.id(),
                action: self.spec.name.to_owned(),
                key_text: self.key_text.to_string(),
                key_digest: self.key_digest.to_string(),
                record: self.record.to_string(),
                payload: claimed.payload.value(),
                failure_kind: FailureKind::Transient,
                message,
                attempts,
                first_failure_ms: now_ms,
                last_failure_ms: now_ms,
            }),
            entry,
            now_ms,
            replay_of: self.replay_of(),
        };
        let logged = match self.agent.inner.store.fail(failure).await {
            Ok(logged) => logged,
            Err(e) => return self.store_error(e),
        };
        let Some(id) = logged.entry.queue_entry else {
            return self.store_error(StoreError::Backend(
                "the store did not name the queue entry it created".into(),
            ));
        };
        tracing::error!(
            attempts,
            queue_entry = id,
            "dead-lettered: no attempt left after a takeover"
        );
        self.done(
            "dead_lettered",
            ActionError::PreviouslyFailed {
                key: self.key_text.to_string(),
                queue: QueueRef {
                    id,
                    kind: QueueKind::DeadLetter,
                    name: DEAD_LETTER_QUEUE.to_owned(),
                },
            },
        )
    }

    async fn skip<T, E>(
        &self,
        previous_key: String,
        acted_at_ms: Millis,
        now_ms: Millis,
    ) -> Begun<T, E> {
        let mut entry = self.log_entry(Outcome::Skipped, now_ms);
        entry.message = Some(format!(
            "acted under key `{previous_key}` at {acted_at_ms} (Unix ms), within the dedup window"
        ));
        if let Err(e) = self.agent.inner.store.append_log(&entry).await {
            return self.store_error(e);
        }
        tracing::info!(previous_key = %previous_key, acted_at_ms, "skipped by the loop filter");
        self.done(
            "skipped",
            ActionError::Skipped {
                action: self.spec.name.to_owned(),
                record: self.record.to_string(),
                previous_key,
                acted_at_ms,
            },
        )
    }
}

/// A fresh claim id: a UUIDv7 of `now_ms` (the agent's clock, already read for the request), whose
/// random bits come from the thread's cryptographically secure generator (seeded once from the OS)
/// instead of a system call per call. Claim ids are only compared for equality, so 74 random bits
/// under the millisecond suffice.
fn new_claim_id(now_ms: Millis) -> Uuid {
    let millis = u64::try_from(now_ms).unwrap_or(0);
    let mut random = [0u8; 10];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// Milliseconds from `from` to `to` on the agent's clock; 0 if the clock went back.
fn ms_since(from: Millis, to: Millis) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

/// The message of a log entry written by an operation's call: which queue entry it replays, which log
/// entry it reverses.
fn invocation_note(replay_of: Option<u64>, reverting: Option<&LogEntry>) -> Option<String> {
    match (replay_of, reverting) {
        (Some(id), _) => Some(format!("replay of queue entry {id}")),
        (None, Some(e)) => Some(format!("reverts log entry {}", e.seq)),
        (None, None) => None,
    }
}

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
                    tracing::error!(error = %e, "the claim was lost while the call ran");
                    hold.lose();
                }
                Err(e) => {
                    let now_ms = run.agent().inner.clock.now_ms();
                    if now_ms >= hold.until_ms() {
                        tracing::error!(error = %e, "no renewal reached the store before the lease ended: the claim is lost");
                        hold.lose();
                    } else {
                        tracing::warn!(error = %e, "the claim could not be renewed; trying again");
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
