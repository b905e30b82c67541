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
//!
//! The parts, in the order a call meets them: [`drive`] is what the expansion calls (it begins the
//! call, then settles each attempt); `begin.rs` is the store's `begin` and what its answer means;
//! [`renew`] keeps the claim alive while a body or a backoff is pending; `call.rs` settles each
//! attempt (success, retry, queue, dead-letter, halt).
//!
//! Every span and event of the guarded call has the target `actguard::guard`, whichever file emits
//! it: filters and dashboards name one target.

mod begin;
mod call;
pub mod drive;
pub mod renew;

pub(crate) use call::{halt_converging, read_head};
pub use renew::attempt;

use std::marker::PhantomData;

use rand::rngs::SmallRng;
use tokio::time::Instant;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::error::ActionError;
use crate::invoke::OutcomeSlot;
use crate::log::LogEntry;
use crate::policy::ActionSpec;
use crate::run::Run;
use crate::store::Millis;

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

struct Claimed {
    claim_id: Uuid,
    fencing_token: u64,
    payload: crate::key::PayloadJson,
    /// When the claim's lease ends, as `begin` set it.
    lease_until_ms: Millis,
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
