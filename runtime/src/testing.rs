//! Test support (feature `testing`): a simulated downstream that reproduces the incidents actguard prevents, an alert sink
//! that records, and helpers that keep scenario tests short.
//!
//! The [`Downstream`] is a ledger-like service with the faults of real ones: it can apply a write and
//! then lose the acknowledgement (the duplicate-disbursement incident), honour or ignore idempotency
//! keys, notice two writers on one record at once, reject a stale fencing token, and count the effects
//! per record, so a test asserts on what the outside world saw.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use actguard::testing::{Downstream, DownstreamError};
//!
//! let ledger = Downstream::new().ignoring_keys();
//! ledger.fail_acks(1);
//! // The write is applied, but the caller sees a timeout...
//! assert!(matches!(ledger.write("L-1", Some("k"), None).await, Err(DownstreamError::AckTimeout)));
//! // ...so a naive retry applies it again.
//! ledger.write("L-1", Some("k"), None).await.unwrap();
//! assert_eq!(ledger.effects("L-1"), 2);
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::alert::{AlertSink, HaltAlert};
use crate::classify::Classify;
use crate::error::ActionError;
use crate::guard::{Begun, Call};
use crate::key::{KeyBuilder, Payload};
use crate::log::{LogEntry, LogQuery};
use crate::policy::{ActionSpec, Effect, FailureKind, Policy};
use crate::run::{Attempt, Run};

/// What the [`Downstream`] answers to an applied write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The record written.
    pub record: String,
    /// The idempotency key sent with the write.
    pub key: Option<String>,
    /// The number of the effect, counting every effect on every record from 1.
    pub effect: u64,
}

/// The failures of the [`Downstream`], classified by hand as an application would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownstreamError {
    /// The write may or may not have been applied: the acknowledgement did not arrive.
    #[error("timed out waiting for the acknowledgement")]
    AckTimeout,
    /// The service is unavailable; it may say when to come back.
    #[error("service unavailable")]
    Unavailable {
        /// The server's Retry-After.
        retry_after: Option<Duration>,
    },
    /// The request is wrong.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The record's state does not allow the write.
    #[error("state conflict: {0}")]
    Conflict(String),
    /// The write carried a fencing token lower than one already seen for the record: a stale writer.
    #[error("stale fencing token {token} (highest seen {highest})")]
    StaleToken {
        /// The token sent.
        token: u64,
        /// The highest token seen for the record.
        highest: u64,
    },
    /// The caller is not allowed to do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl Classify for DownstreamError {
    fn classify(&self) -> FailureKind {
        match self {
            DownstreamError::AckTimeout | DownstreamError::Unavailable { .. } => {
                FailureKind::Transient
            }
            DownstreamError::Invalid(_) => FailureKind::Validation,
            DownstreamError::Conflict(_) | DownstreamError::StaleToken { .. } => {
                FailureKind::Conflict
            }
            DownstreamError::Forbidden(_) => FailureKind::Security,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DownstreamError::Unavailable { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A simulated downstream service. Cheap to clone: clones share the same state.
#[derive(Debug, Clone)]
pub struct Downstream {
    inner: Arc<Mutex<DownstreamState>>,
}

#[derive(Debug)]
struct DownstreamState {
    honour_keys: bool,
    latency: Duration,
    /// Writes still to apply and then time out.
    failing_acks: u32,
    /// Failures to return, before applying, to the next writes.
    failures: VecDeque<DownstreamError>,
    effects: HashMap<String, u64>,
    total_effects: u64,
    seen_keys: HashMap<String, Receipt>,
    in_flight: HashMap<String, u32>,
    max_in_flight: HashMap<String, u32>,
    overlaps: u64,
    highest_token: HashMap<String, u64>,
    stale_rejections: u64,
    writes: u64,
}

impl Default for Downstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Downstream {
    /// A downstream that honours idempotency keys (a repeated key returns the first receipt without a
    /// new effect) and takes 1ms of (tokio) time per write.
    pub fn new() -> Self {
        Downstream {
            inner: Arc::new(Mutex::new(DownstreamState {
                honour_keys: true,
                latency: Duration::from_millis(1),
                failing_acks: 0,
                failures: VecDeque::new(),
                effects: HashMap::new(),
                total_effects: 0,
                seen_keys: HashMap::new(),
                in_flight: HashMap::new(),
                max_in_flight: HashMap::new(),
                overlaps: 0,
                highest_token: HashMap::new(),
                stale_rejections: 0,
                writes: 0,
            })),
        }
    }

    /// Ignores idempotency keys: every applied write is a new effect (a service without key support).
    pub fn ignoring_keys(self) -> Self {
        self.lock().honour_keys = false;
        self
    }

    /// How long each write takes (tokio time); while it lasts, the write is in flight on its record.
    pub fn with_latency(self, latency: Duration) -> Self {
        self.lock().latency = latency;
        self
    }

    /// The answers to the next `n` writes are lost: each write is applied (or deduplicated by its key)
    /// and then answers [`DownstreamError::AckTimeout`], so the caller cannot tell that it was applied.
    pub fn fail_acks(&self, n: u32) {
        self.lock().failing_acks += n;
    }

    /// The next write fails with `error` without being applied (queued after earlier ones).
    pub fn fail_next(&self, error: DownstreamError) {
        self.lock().failures.push_back(error);
    }

    /// The next `n` writes fail with `error` without being applied.
    pub fn fail_next_n(&self, n: usize, error: DownstreamError) {
        let mut s = self.lock();
        s.failures.extend(std::iter::repeat_n(error, n));
    }

    /// Writes to `record`, sending `key` and `fencing_token` as a real client would.
    pub async fn write(
        &self,
        record: &str,
        key: Option<&str>,
        fencing_token: Option<u64>,
    ) -> Result<Receipt, DownstreamError> {
        let latency = {
            let mut s = self.lock();
            s.writes += 1;
            let n = s.in_flight.entry(record.to_owned()).or_default();
            *n += 1;
            let n = *n;
            if n > 1 {
                s.overlaps += 1;
            }
            let max = s.max_in_flight.entry(record.to_owned()).or_default();
            *max = (*max).max(n);
            s.latency
        };
        // Leaves the record's in-flight count even if the writer is cancelled while its write lasts.
        let in_flight = InFlight {
            downstream: self,
            record,
        };
        // The write takes time: another writer on the same record can start meanwhile.
        if latency.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(latency).await;
        }
        drop(in_flight);
        let mut s = self.lock();
        if let Some(token) = fencing_token {
            let highest = s.highest_token.entry(record.to_owned()).or_default();
            if token < *highest {
                let highest = *highest;
                s.stale_rejections += 1;
                return Err(DownstreamError::StaleToken { token, highest });
            }
            *highest = token;
        }
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        let known = key
            .filter(|_| s.honour_keys)
            .and_then(|k| s.seen_keys.get(k))
            .cloned();
        let receipt = match known {
            Some(receipt) => receipt,
            None => {
                s.total_effects += 1;
                *s.effects.entry(record.to_owned()).or_default() += 1;
                let receipt = Receipt {
                    record: record.to_owned(),
                    key: key.map(str::to_owned),
                    effect: s.total_effects,
                };
                if let Some(k) = key {
                    s.seen_keys.insert(k.to_owned(), receipt.clone());
                }
                receipt
            }
        };
        // The answer is lost on the way back, whether the write was new or deduplicated.
        if s.failing_acks > 0 {
            s.failing_acks -= 1;
            return Err(DownstreamError::AckTimeout);
        }
        Ok(receipt)
    }

    /// Writes the attempt's record with its key and fencing token: what an action's body does.
    pub async fn write_for(&self, attempt: &Attempt) -> Result<Receipt, DownstreamError> {
        let key = (!attempt.key().is_empty()).then_some(attempt.key());
        self.write(attempt.record(), key, attempt.fencing_token())
            .await
    }

    /// Effects applied on `record`.
    pub fn effects(&self, record: &str) -> u64 {
        self.lock().effects.get(record).copied().unwrap_or(0)
    }

    /// Effects applied on every record.
    pub fn total_effects(&self) -> u64 {
        self.lock().total_effects
    }

    /// Writes received (applied or not).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// How many writes started while another write on the same record was in flight.
    pub fn overlaps(&self) -> u64 {
        self.lock().overlaps
    }

    /// The most writes ever in flight at once on `record`.
    pub fn max_in_flight(&self, record: &str) -> u32 {
        self.lock().max_in_flight.get(record).copied().unwrap_or(0)
    }

    /// The highest fencing token seen for `record`.
    pub fn highest_token(&self, record: &str) -> Option<u64> {
        self.lock().highest_token.get(record).copied()
    }

    /// Writes rejected for a stale fencing token.
    pub fn stale_rejections(&self) -> u64 {
        self.lock().stale_rejections
    }

    fn lock(&self) -> MutexGuard<'_, DownstreamState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One write in flight on a record, counted until dropped.
struct InFlight<'a> {
    downstream: &'a Downstream,
    record: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.downstream.lock().in_flight.get_mut(self.record) {
            *n -= 1;
        }
    }
}

/// An [`AlertSink`] that keeps every alert, for assertions. Clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct RecordingAlert {
    alerts: Arc<Mutex<Vec<HaltAlert>>>,
}

impl RecordingAlert {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert so far.
    pub fn alerts(&self) -> Vec<HaltAlert> {
        self.alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AlertSink for RecordingAlert {
    fn alert(&self, halt: &HaltAlert) {
        self.alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(halt.clone());
    }
}

/// Retries `op` up to `attempts` times until it succeeds, with no key, no claim and no backoff: the
/// loop that caused the incidents, for comparison.
pub async fn naive_retry<T, E, F, Fut>(attempts: u32, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut n = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if n >= attempts => return Err(e),
            Err(_) => n += 1,
        }
    }
}

/// An action spec for tests that drive [`guarded_call`] by hand (leaked: it lives as long as the
/// program, like the statics the attribute generates).
pub fn spec(name: &'static str, effect: Effect, policy: Policy) -> &'static ActionSpec {
    Box::leak(Box::new(ActionSpec {
        name,
        fn_name: name,
        module_path: module_path!(),
        file: file!(),
        line: line!(),
        effect,
        key: (effect != Effect::Read).then_some("{key}"),
        record: None,
        policy,
        compensate: None,
        explicit: &[],
        payload: &[],
        deps: &[],
        result_type: "T",
        error_type: "E",
        tool: None,
        invoke: None,
    }))
}

/// Drives one guarded call exactly as the expansion of `#[agent_action]` does: render `key` and
/// `record` (each a single literal segment; `key: None` for a `read`), begin, then run `body` once per
/// attempt with the run handle carrying the attempt, until the call settles.
pub async fn guarded_call<T, E, F, Fut>(
    run: &Run,
    spec: &'static ActionSpec,
    key: Option<&str>,
    record: Option<&str>,
    payload: serde_json::Value,
    mut body: F,
) -> Result<T, ActionError<E>>
where
    T: Serialize + DeserializeOwned,
    E: Classify + Display,
    F: FnMut(Run) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let key = key.map(|k| KeyBuilder::new(spec.name).part(k).finish());
    let record = record.map(|r| KeyBuilder::new(spec.name).part(r).finish());
    let mut call =
        match Call::<T, E>::begin(run, spec, key, record, Ok(Payload::new(payload))).await {
            Begun::Act(call) => call,
            Begun::Done(result) => return result,
        };
    loop {
        let outcome = body(call.run().clone()).await;
        if let Some(result) = call.settle(outcome).await {
            return result;
        }
    }
}

/// The whole action log of the agent's store, in order.
pub async fn log(agent: &Agent) -> Vec<LogEntry> {
    agent
        .store()
        .log(&LogQuery::default())
        .await
        .expect("the store's log can be read")
}
