//! A run of an agent, and the context of one attempt of a guarded call.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use crate::agent::Agent;
use crate::alert::HaltAlert;
use crate::log::LogEntry;
use crate::shared::SharedStr;
use crate::store::{RunState, StoreError};

/// One run of an agent: the first argument of every guarded action (`disburse(&run, &instr).await`).
///
/// Cheap to clone. Inside an action's body, the same name gives access to the current attempt through
/// [`Run::attempt`].
#[derive(Clone)]
pub struct Run {
    pub(crate) agent: Agent,
    pub(crate) id: Uuid,
    pub(crate) attempt: Option<Arc<Attempt>>,
    /// Set when an operator invokes an action from stored data (replay, revert); only the call begun
    /// with this run handle reads it (the run its body sees carries none).
    pub(crate) invocation: Option<Arc<Invocation>>,
    /// Where that call leaves its outcome.
    pub(crate) outcome: Option<crate::invoke::OutcomeSlot>,
}

/// How an action is invoked by an operation rather than by the agent's own code: the guarded call
/// reads it in `begin`.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Replay of this queue entry: the failed key is claimed again, and the entry is marked replayed on
    /// success (or updated on failure).
    pub replay_of: Option<u64>,
    /// Replaces the rendered idempotency key's text (the digest is recomputed over it): a revert uses
    /// `revert:{key of the reversed entry}`, stable, so a second revert replays instead of acting.
    pub key_override: Option<String>,
    /// The log entry a compensating action reverses: [`Attempt::reverting`].
    pub reverting: Option<LogEntry>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Run {
    /// The run's id (UUIDv7: sortable by start time).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The agent this run belongs to.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Halts the run durably: every later action of it, in every process sharing the store, refuses
    /// with [`ActionError::Halted`](crate::ActionError::Halted). The alert sink is told if this call
    /// halted it; returns `false` (and tells no one) if it was halted already.
    pub async fn halt(&self, reason: &str) -> Result<bool, StoreError> {
        let now_ms = self.agent.inner.clock.now_ms();
        let halted =
            crate::guard::halt_converging(&*self.agent.inner.store, self.id, reason, now_ms)
                .await?;
        if halted {
            tracing::error!(run_id = %self.id, reason, "run halted");
            let log_head = crate::guard::read_head(&*self.agent.inner.store).await;
            self.agent.alert_sink().alert(&HaltAlert {
                run_id: self.id,
                reason: reason.to_owned(),
                action: None,
                record: None,
                key: None,
                failure_kind: None,
                at_ms: now_ms,
                log_head,
            });
        }
        Ok(halted)
    }

    /// Whether the run is halted, as the store says (so a halt by another process is seen).
    pub async fn is_halted(&self) -> Result<bool, StoreError> {
        Ok(matches!(self.state().await?, RunState::Halted { .. }))
    }

    /// The run's state in the store, with the halt's reason and time.
    pub async fn state(&self) -> Result<RunState, StoreError> {
        self.agent.inner.store.run_state(self.id).await
    }

    /// The current attempt of the guarded call whose body is running.
    ///
    /// # Panics
    /// Outside the body of an `#[agent_action]`; use [`Run::try_attempt`] where that can happen.
    pub fn attempt(&self) -> &Attempt {
        self.try_attempt().expect(
            "run.attempt() is only available inside the body of an #[agent_action] function",
        )
    }

    /// The current attempt, or `None` outside the body of an action.
    pub fn try_attempt(&self) -> Option<&Attempt> {
        self.attempt.as_deref()
    }

    pub(crate) fn with_attempt(&self, attempt: Attempt) -> Run {
        Run {
            agent: self.agent.clone(),
            id: self.id,
            attempt: Some(Arc::new(attempt)),
            // The body's own calls are ordinary calls: no replay, no key override.
            invocation: None,
            outcome: None,
        }
    }

    /// This run, with actions called through it invoked as `invocation` says (replay, revert).
    pub fn with_invocation(&self, invocation: Invocation) -> Run {
        Run {
            agent: self.agent.clone(),
            id: self.id,
            attempt: None,
            invocation: Some(Arc::new(invocation)),
            outcome: None,
        }
    }

    /// How actions called through this run are invoked, if by an operation.
    pub fn invocation(&self) -> Option<&Invocation> {
        self.invocation.as_deref()
    }
}

/// The context of one attempt: the key to pass downstream, the record, the attempt number, the fencing
/// token, and the before/after capture of the action log.
#[derive(Debug)]
pub struct Attempt {
    pub(crate) action: &'static str,
    pub(crate) key: SharedStr,
    pub(crate) key_digest: SharedStr,
    pub(crate) record: SharedStr,
    pub(crate) number: u32,
    pub(crate) retry: bool,
    pub(crate) run_id: Uuid,
    pub(crate) fencing_token: Option<u64>,
    pub(crate) before: Mutex<Option<Captured>>,
    pub(crate) after: Mutex<Option<Captured>>,
    /// The entry a compensating action reverses (revert), if any.
    /// Boxed: most attempts revert nothing, and the attempt is built on every guarded call.
    pub(crate) reverting: Option<Box<LogEntry>>,
    /// The call's claim, renewed while the body runs (`None` for a read, which holds no claim).
    pub(crate) hold: Option<ClaimHold>,
    /// The agent's key for `Redacted` values in the captured states.
    pub(crate) redaction: crate::RedactionKey,
}

/// A guarded call's claim as an attempt sees it, renewed in the background of the body and of the
/// backoff waits; the next attempt carries it on ([`ClaimHold::carry`]). Kept inline in the attempt:
/// a call pays no allocation for it.
#[derive(Debug)]
pub(crate) struct ClaimHold {
    pub(crate) claim_id: Uuid,
    /// How long the claim holds after each renewal.
    pub(crate) lease: std::time::Duration,
    /// When the claim's lease ends, as last renewed (Unix ms, agent clock).
    until_ms: std::sync::atomic::AtomicI64,
    /// Set once the claim is lost: a renewal found it taken over, or none succeeded before it ended.
    lost: std::sync::atomic::AtomicBool,
}

impl ClaimHold {
    pub(crate) fn new(claim_id: Uuid, lease: std::time::Duration, until_ms: i64) -> Self {
        ClaimHold {
            claim_id,
            lease,
            until_ms: until_ms.into(),
            lost: false.into(),
        }
    }

    /// The same claim, for the next attempt.
    pub(crate) fn carry(&self) -> ClaimHold {
        ClaimHold {
            claim_id: self.claim_id,
            lease: self.lease,
            until_ms: self.until_ms().into(),
            lost: self.is_lost().into(),
        }
    }

    pub(crate) fn until_ms(&self) -> i64 {
        self.until_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn renewed(&self, until_ms: i64) {
        self.until_ms
            .store(until_ms, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn lose(&self) {
        self.lost.store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A state captured by [`Attempt::before`] or [`Attempt::after`]: the value the log keeps, or why it
/// cannot be kept.
pub(crate) type Captured = Result<serde_json::Value, String>;

fn capture<S: Serialize + ?Sized>(state: &S, when: &str) -> Captured {
    let what = format!("the state captured {when} the write");
    crate::limits::stored_value(state, when, &what, crate::limits::Limits::STATE).map_err(|e| {
        match e {
            crate::limits::Unstorable::Serialize(e) => format!("{what} does not serialize: {e}"),
            refused => refused.to_string(),
        }
    })
}

impl Attempt {
    /// The action's name.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The readable rendered idempotency key (`disburse:L-17:3`): pass it downstream. Different
    /// intents never share it: in a template of two or more parts, a separator inside a part is
    /// escaped ([`RenderedKey`](crate::RenderedKey)).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's digest (hex SHA-256 of action and parts): a fixed-length form for downstreams that
    /// limit key length.
    pub fn key_digest(&self) -> &str {
        &self.key_digest
    }

    /// The rendered record this write touches.
    pub fn record(&self) -> &str {
        &self.record
    }

    /// 1 for the first attempt, 2 for the first retry, …
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this attempt is a retry (of this call, or of a claim taken over from a dead worker).
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The record lease's fencing token (strictly increasing per record): pass it downstream so a
    /// stale writer can be rejected. `None` for `read` actions.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// The log entry this call reverses, when it runs as a compensating action of a revert: its `before`
    /// is the state to restore and its `after` the state the reversed action left. A compensating body
    /// that finds the record's current state differs from `after` should return a conflict error
    /// rather than overwrite a later change (the call then goes to the expert queue).
    ///
    /// When the reverted selection wrote the record several times, this is one view of all of them
    /// ([`AffectedRecord::reverting`](crate::ops::AffectedRecord::reverting)): the last write's entry
    /// with `before` taken from the first write, so the state restored is the one before the first.
    pub fn reverting(&self) -> Option<&LogEntry> {
        self.reverting.as_deref()
    }

    /// Whether this call's claim was lost while it ran: a renewal found the key taken over by another
    /// call, or no renewal reached the store before the lease ended. Another worker may now act on the
    /// key or the record; a body about to write should stop and return an error, and whatever it
    /// returns, the call ends saying the effect may have happened
    /// ([`ActionError::Unrecorded`](crate::ActionError::Unrecorded)). Always `false` for a read.
    pub fn claim_lost(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| h.is_lost())
    }

    /// Captures the state of the record before the write, for the action log (and revert).
    ///
    /// A state is stored like a result, within the same [limits](crate::limits): one that does not
    /// serialize, nests deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), is larger than
    /// [`MAX_RESULT_BYTES`](crate::MAX_RESULT_BYTES) or holds a non-finite float is not logged. A
    /// successful call then ends [`ActionError::ResultNotStored`](crate::ActionError::ResultNotStored)
    /// (its key dead-lettered, so that a person checks what it wrote); a failed attempt's log entry
    /// says why the state is missing. A [`Redacted`](crate::Redacted) value in it is kept as its
    /// digest under the agent's key.
    pub fn before<S: Serialize + ?Sized>(&self, state: &S) {
        let v = self.redaction.scope(|| capture(state, "before"));
        *self.before.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    /// Captures the state after the write (default: the action's result); within the same limits as
    /// [`before`](Self::before).
    pub fn after<S: Serialize + ?Sized>(&self, state: &S) {
        let v = self.redaction.scope(|| capture(state, "after"));
        *self.after.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    pub(crate) fn take_before(&self) -> Option<Captured> {
        self.before.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn take_after(&self) -> Option<Captured> {
        self.after.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
