//! The first step of a guarded call: the store's `begin` (one atomic decision of the rulebook) and
//! what its answer means for the call: act, replay, skip, wait for another worker's claim, refuse.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::{Begun, Call, Claimed, DEAD_LETTER_QUEUE};
use crate::agent::Agent;
use crate::alert::QueueAlert;
use crate::classify::Classify;
use crate::error::ActionError;
use crate::invoke::record_outcome;
use crate::key::{KeyBuilder, Payload, PayloadError, RenderedKey};
use crate::log::LogQuery;
use crate::log::{NewLogEntry, Outcome};
use crate::metrics::MetricOutcome;
use crate::policy::{ActionSpec, FailureKind, Route};
use crate::run::{Attempt, ClaimHold, Run};
use crate::store::{
    Begin, BeginRequest, Failure, Millis, NewQueueEntry, QueueKind, QueueQuery, QueueRef,
    QueueStatus, RunState, SharedStr, StoreError,
};

/// The first pause while waiting for another worker's claim; it doubles up to [`MAX_CLAIM_POLL`].
const FIRST_CLAIM_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two looks at another worker's claim.
const MAX_CLAIM_POLL: Duration = Duration::from_millis(500);

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
        let span = tracing::info_span!(target: "actguard::guard",
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
}

/// The inputs of `begin`, borrowed for its duration.
pub(super) struct Beginning<'a> {
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

    fn count(&self, outcome: MetricOutcome) {
        self.agent.inner.metrics.count(self.spec.name, outcome);
    }

    fn done<T, E>(&self, outcome: MetricOutcome, error: ActionError<E>) -> Begun<T, E> {
        self.count(outcome);
        Begun::Done(Err(error))
    }

    /// A key whose approval request was decided, or not yet: `rejected` once a person rejected it
    /// (the entry discarded), else still awaiting approval. Nothing acts.
    async fn approval_decided<T, E>(&self, queue: QueueRef) -> Begun<T, E> {
        match self.agent.inner.store.queue_entry(queue.id).await {
            Err(e) => self.store_error(e),
            Ok(Some(entry)) if entry.status == QueueStatus::Discarded => {
                tracing::info!(target: "actguard::guard", queue_entry = queue.id, "rejected by a person");
                self.done(
                    MetricOutcome::Rejected,
                    ActionError::Rejected {
                        key: self.key_text.to_string(),
                        queue,
                        note: entry.note,
                    },
                )
            }
            Ok(_) => {
                tracing::info!(target: "actguard::guard", queue_entry = queue.id, "awaiting approval");
                self.done(
                    MetricOutcome::AwaitingApproval,
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
                tracing::info!(target: "actguard::guard", queue_entry = id, queue, "approval requested");
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
                    MetricOutcome::AwaitingApproval,
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
        tracing::info!(target: "actguard::guard", "refused: the run is halted");
        self.done(
            MetricOutcome::Refused,
            ActionError::Halted {
                run_id: self.run.id(),
                attempts: 0,
            },
        )
    }

    fn store_error<T, E>(&self, e: StoreError) -> Begun<T, E> {
        tracing::error!(target: "actguard::guard", error = %e, "store unavailable: the action does not run");
        self.done(MetricOutcome::StoreError, ActionError::Store(e))
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

    pub(super) async fn run<T, E>(
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
                    MetricOutcome::SerializationError,
                    ActionError::Serialization {
                        action: self.spec.name.to_owned(),
                        message: e.to_string(),
                    },
                );
            }
            Err(PayloadError::Refused(error)) => {
                tracing::warn!(target: "actguard::guard", error = %error, "payload refused: the action does not run");
                return self.done(
                    MetricOutcome::PayloadRefused,
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
                    tracing::warn!(target: "actguard::guard", "key reused with a different payload");
                    return self.done(
                        MetricOutcome::KeyReused,
                        ActionError::KeyReused {
                            key: self.key_text.to_string(),
                        },
                    );
                }
                Begin::Failed { entry } if entry.kind == QueueKind::Approval => {
                    return self.approval_decided(entry).await;
                }
                Begin::Failed { entry } => {
                    tracing::info!(target: "actguard::guard", queue_entry = entry.id, "the key failed before");
                    return self.done(
                        MetricOutcome::PreviouslyFailed,
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
                        tracing::warn!(target: "actguard::guard",
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
                tracing::info!(target: "actguard::guard", lease_until_ms, "in progress in another worker");
                return self.done(
                    MetricOutcome::InProgress,
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
                    MetricOutcome::SerializationError,
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
        tracing::info!(target: "actguard::guard", "replayed the stored result of a completed key");
        self.count(MetricOutcome::Replayed);
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
                message: message.clone(),
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
        tracing::error!(target: "actguard::guard",
            attempts,
            queue_entry = id,
            "dead-lettered: no attempt left after a takeover"
        );
        self.agent.queue_entry_opened(|| QueueAlert {
            entry_id: id,
            kind: QueueKind::DeadLetter,
            queue: DEAD_LETTER_QUEUE.to_owned(),
            run_id: self.run.id(),
            action: self.spec.name.to_owned(),
            record: self.record.to_string(),
            key: self.key_text.to_string(),
            failure_kind: Some(FailureKind::Transient),
            message,
            at_ms: now_ms,
        });
        self.done(
            MetricOutcome::DeadLettered,
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
        tracing::info!(target: "actguard::guard", previous_key = %previous_key, acted_at_ms, "skipped by the loop filter");
        self.done(
            MetricOutcome::Skipped,
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
