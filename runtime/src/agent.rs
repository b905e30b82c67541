//! The agent: store, alert sink, clock, resources and audit settings shared by its runs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use uuid::Uuid;

use crate::alert::{AlertSink, TracingAlert};
use crate::audit::{AuditError, AuditReport, AuditSettings, audit_registry};
use crate::clock::{Clock, TokioClock};
use crate::log::{ChainError, LogHead, LogQuery, verify_chain};
use crate::memory::MemoryStore;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::redacted::{RedactionKey, RedactionKeyError};
use crate::run::Run;
use crate::store::{Store, StoreError};

/// How long a call waits, by default, for another worker's live claim on its key or record.
pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// An agent: holds what its runs share. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use actguard::{Agent, MemoryStore};
///
/// struct Ledger;
///
/// let agent = Agent::builder()
///     .store(MemoryStore::new())
///     .claim_wait(Duration::from_secs(5))
///     .resource(Ledger)
///     .build()?;
/// assert!(agent.resource::<Ledger>().is_some());
/// let run = agent.start_run();
/// assert_eq!(run.id().get_version_num(), 7);
/// # Ok::<(), actguard::AgentError>(())
/// ```
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<AgentInner>,
}

pub(crate) struct AgentInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) alert: Arc<dyn AlertSink>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) claim_wait: Duration,
    pub(crate) strict: bool,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) metrics: Metrics,
    audit: AuditReport,
    /// Seeds the jitter generator of each call that retries (drawn at its first retryable failure);
    /// seeded by the builder for reproducible delays.
    rng: Mutex<SmallRng>,
    /// Keys the digests of `Redacted` values in payloads, captured states and results.
    pub(crate) redaction: RedactionKey,
    /// Whether the alert sink hears of every review-queue entry a call opens.
    alert_on_queue_entries: bool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("claim_wait", &self.inner.claim_wait)
            .field("strict", &self.inner.strict)
            .field("resources", &self.inner.resources.len())
            .field("redaction_key", &self.inner.redaction)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent on a fresh [`MemoryStore`] with every other setting at its default: for tests and
    /// examples. Fails like [`AgentBuilder::build`] if the startup audit fails.
    pub fn in_memory() -> Result<Agent, AgentError> {
        Agent::builder().store(MemoryStore::new()).build()
    }

    /// Configures an agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Starts a run (its id is a UUIDv7, sortable by start time).
    pub fn start_run(&self) -> Run {
        self.run_with_id(Uuid::now_v7())
    }

    /// A handle on an existing run (for instance one started by another process sharing the store).
    pub fn run_with_id(&self, id: Uuid) -> Run {
        Run {
            agent: self.clone(),
            id,
            attempt: None,
            invocation: None,
            outcome: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// How long a call waits for another worker's live claim on its key or record before answering
    /// [`ActionError::InProgress`](crate::ActionError::InProgress).
    pub fn claim_wait(&self) -> Duration {
        self.inner.claim_wait
    }

    /// Whether the startup audit is strict (rejects answers left to defaults).
    pub fn is_strict(&self) -> bool {
        self.inner.strict
    }

    /// A resource given to the builder with [`AgentBuilder::resource`], by type.
    pub fn resource<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner
            .resources
            .get(&TypeId::of::<T>())
            .and_then(|r| r.downcast_ref::<T>())
    }

    /// Counters per action and outcome since the agent was built.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The key of the digests of [`Redacted`](crate::Redacted) values this agent stores: the one it was
    /// given, or its store's. [`RedactionKey::scope`] serializes as the agent's calls do.
    pub fn redaction_key(&self) -> &RedactionKey {
        &self.inner.redaction
    }

    /// The startup audit's report (its warnings; an agent is never built on a failing audit).
    pub fn audit_report(&self) -> &AuditReport {
        &self.inner.audit
    }

    /// Verifies the whole action log of the store: see [`verify`].
    pub async fn verify(&self) -> Result<u64, VerifyError> {
        verify(self.inner.store.as_ref()).await
    }

    /// Verifies the whole action log of the store and returns its head, checked against
    /// `expected_head` if given: see [`verify_report`].
    pub async fn verify_report(
        &self,
        expected_head: Option<&LogHead>,
    ) -> Result<VerifyReport, VerifyError> {
        verify_report(self.inner.store.as_ref(), expected_head).await
    }

    pub(crate) fn alert_sink(&self) -> &dyn AlertSink {
        self.inner.alert.as_ref()
    }

    /// Tells the alert sink of a queue entry a call opened, if the agent opted in.
    pub(crate) fn queue_entry_opened(&self, entry: impl FnOnce() -> crate::alert::QueueAlert) {
        if self.inner.alert_on_queue_entries {
            self.inner.alert.queue_entry(&entry());
        }
    }

    pub(crate) fn call_rng(&self) -> SmallRng {
        let mut rng = self.inner.rng.lock().unwrap_or_else(|e| e.into_inner());
        SmallRng::from_rng(&mut *rng)
    }
}

/// Builds an [`Agent`]; every setting has a default.
#[derive(Default)]
pub struct AgentBuilder {
    store: Option<Arc<dyn Store>>,
    alert: Option<Arc<dyn AlertSink>>,
    clock: Option<Arc<dyn Clock>>,
    claim_wait: Option<Duration>,
    strict: bool,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    seed: Option<u64>,
    redaction: Option<Result<RedactionKey, RedactionKeyError>>,
    alert_on_queue_entries: bool,
}

impl AgentBuilder {
    /// Tells the alert sink of every review-queue entry a call opens (a routed failure, a dead-letter,
    /// an approval request), not only of halts ([`AlertSink::queue_entry`]). Off by default.
    pub fn alert_on_queue_entries(mut self, on: bool) -> Self {
        self.alert_on_queue_entries = on;
        self
    }

    /// Where claims, the log, the queues and run state are kept (default: the embedded SQLite file
    /// named by [`STORE_ENV`], as the `actguard` command reads it, else [`DEFAULT_STORE_PATH`] in the
    /// working directory).
    pub fn store(self, store: impl Store) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// A store shared with other agents or code.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Who is told when a run halts (default: [`TracingAlert`]).
    pub fn alert_sink(mut self, sink: impl AlertSink) -> Self {
        self.alert = Some(Arc::new(sink));
        self
    }

    /// The clock giving the stores their `now` (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a call waits for another worker's live claim on its key or record (default 30s; never
    /// longer than that claim's lease). `Duration::ZERO` answers `InProgress` at once.
    pub fn claim_wait(mut self, wait: Duration) -> Self {
        self.claim_wait = Some(wait);
        self
    }

    /// Strict audit: also reject answers left to defaults (default: off).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// A value `#[dep]` parameters can be taken from, by type (clients, handles); one per type, the last
    /// given wins.
    pub fn resource<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.resources.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// The secret that keys the digests of [`Redacted`](crate::Redacted) values (default: the store's
    /// own, [`Store::redaction_key`]).
    ///
    /// A secret kept outside the store (a secret manager, a KMS, the environment) also protects the
    /// digests against whoever can read the store; every agent sharing the store must be given the
    /// same one. Changing it changes the digests, so a call under a key claimed with the old ones
    /// answers `KeyReused` (see [`Redacted`](crate::Redacted)).
    pub fn redaction_key(mut self, key: RedactionKey) -> Self {
        self.redaction = Some(Ok(key));
        self
    }

    /// [`redaction_key`](Self::redaction_key) from the environment variable `var`
    /// ([`RedactionKey::from_env`]); [`build`](Self::build) fails if it is not set or too short.
    pub fn redaction_key_from_env(mut self, var: &str) -> Self {
        self.redaction = Some(RedactionKey::from_env(var));
        self
    }

    /// Seeds the jitter of backoff delays, so a test gets the same delays on every run.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Audits every registered action (strict if [`strict`](Self::strict) was set), opens the default
    /// store if none was given, and builds the agent.
    ///
    /// Refuses to build when the audit finds an error (the report lists every finding with its action
    /// and source location), the store cannot be opened, or there is no redaction key (the one given
    /// is missing or too short, or none was given and the store keeps none). Audit warnings are logged
    /// as tracing warnings and kept in [`Agent::audit_report`].
    pub fn build(self) -> Result<Agent, AgentError> {
        let audit = audit_registry(&AuditSettings {
            strict: self.strict,
        })
        .into_result()?;
        for finding in audit.warnings() {
            tracing::warn!(
                action = %finding.action,
                location = %finding.location,
                rule = %finding.rule,
                "{}",
                finding.message
            );
        }
        let store = match self.store {
            Some(store) => store,
            None => default_store()?,
        };
        let redaction = match self.redaction {
            Some(given) => given?,
            None => store.redaction_key().ok_or(RedactionKeyError::NoKey)?,
        };
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Ok(Agent {
            inner: Arc::new(AgentInner {
                store,
                alert: self.alert.unwrap_or_else(|| Arc::new(TracingAlert)),
                clock: self.clock.unwrap_or_else(|| Arc::new(TokioClock::new())),
                claim_wait: self.claim_wait.unwrap_or(DEFAULT_CLAIM_WAIT),
                strict: self.strict,
                resources: self.resources,
                metrics: Metrics::default(),
                audit,
                rng: Mutex::new(rng),
                redaction,
                alert_on_queue_entries: self.alert_on_queue_entries,
            }),
        })
    }
}

/// The file of the default store, in the working directory.
pub const DEFAULT_STORE_PATH: &str = "actguard.db";

/// The environment variable that names the default store's file (a path or `sqlite:PATH`): read by
/// [`AgentBuilder::build`] when no store is given, and by the `actguard` command.
pub const STORE_ENV: &str = "ACTGUARD_STORE";

/// The default store's file: [`STORE_ENV`]'s value when set and not empty, else
/// [`DEFAULT_STORE_PATH`]. A `scheme://` URL is refused: the agent opens a SQLite file by itself,
/// a PostgreSQL store is connected by the program (`PostgresStore::connect`) and given with
/// [`AgentBuilder::store`].
pub fn default_store_path(env: Option<&str>) -> Result<std::path::PathBuf, StoreError> {
    let Some(value) = env.filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_STORE_PATH.into());
    };
    if let Some(rest) = value.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(StoreError::Unavailable(
                format!("{STORE_ENV}=`{value}` names no file: write sqlite:PATH or a path").into(),
            ));
        }
        return Ok(path.into());
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(StoreError::Unavailable(
            format!(
                "{STORE_ENV} names a `{scheme}://` store, which the agent does not open by itself: \
             connect it in the program and pass it with Agent::builder().store(..), or name a \
             SQLite file"
            )
            .into(),
        ));
    }
    Ok(value.into())
}

#[cfg(feature = "sqlite")]
fn default_store() -> Result<Arc<dyn Store>, StoreError> {
    let env = std::env::var(STORE_ENV).ok();
    let path = default_store_path(env.as_deref())?;
    Ok(Arc::new(crate::sqlite::SqliteStore::open(path)?))
}

#[cfg(not(feature = "sqlite"))]
fn default_store() -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Unavailable(
        "no store was given and the `sqlite` feature (the embedded default) is off: \
         pass one with `Agent::builder().store(..)`"
            .to_owned(),
    ))
}

/// Why an agent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The startup audit found errors: the agent refuses to start. The report lists every finding.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The store could not be opened.
    #[error("cannot open the action store: {0}")]
    Store(#[from] StoreError),
    /// No key for the digests of `Redacted` values: the one given is missing or too short, or none was
    /// given and the store keeps none.
    #[error(transparent)]
    RedactionKey(#[from] RedactionKeyError),
}

/// Why [`verify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log could not be read, or a row disagrees with its hashed entry (a queryable column or an
    /// index copy edited outside the store: [`StoreError::Corrupt`], naming the entry and the column).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain is broken at an entry.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The chain verifies but does not hold the head the operator expected.
    #[error(transparent)]
    Head(#[from] HeadError),
}

/// Why the log does not hold the expected head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The expected head entry is not in the log: entries were deleted from its end.
    #[error(
        "log entry {} of the expected head {expected} is missing: the log ends at entry {last}, \
         entries were deleted from its end", expected.seq
    )]
    Missing {
        /// The head expected.
        expected: LogHead,
        /// The last entry in the log (0 for an empty log).
        last: u64,
    },
    /// The entry is there with another hash: the chain was rewritten from that entry or before.
    #[error(
        "log entry {} does not have the expected hash {} (it has {found}): the chain was rewritten",
        expected.seq, expected.hash
    )]
    Differs {
        /// The head expected.
        expected: LogHead,
        /// The hash the entry has.
        found: String,
    },
}

/// What [`verify_report`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The number of entries verified.
    pub entries: u64,
    /// The last entry's sequence number and hash; `None` for an empty log.
    pub head: Option<LogHead>,
}

/// Entries read per page by [`verify`].
const VERIFY_PAGE: usize = 1000;

/// Reads the whole action log of `store`, page by page, and verifies its hash chain: returns the number
/// of entries checked, or the first entry that was edited, deleted, inserted or moved. See
/// [`verify_report`], which also returns the head.
pub async fn verify(store: &dyn Store) -> Result<u64, VerifyError> {
    Ok(verify_report(store, None).await?.entries)
}

/// [`verify`], returning the head of the log too, and checking it against `expected_head` if given
/// (the head recorded outside the store at an earlier verification): entry `expected_head.seq` must be
/// in the log with that hash ([`VerifyError::Head`] otherwise).
///
/// Besides the chain, every row's queryable columns (run, action, record, key digest, attempt,
/// outcome, time) must agree with its hashed entry, and the store's own copies (SQLite's query
/// index, PostgreSQL's chain head) with the rows ([`Store::check_log_copies`]): a disagreement is a
/// [`StoreError::Corrupt`] naming the entry and the column.
pub async fn verify_report(
    store: &dyn Store,
    expected_head: Option<&LogHead>,
) -> Result<VerifyReport, VerifyError> {
    let mut entries = Vec::new();
    let mut after_seq = None;
    loop {
        let page = store
            .log(&LogQuery {
                after_seq,
                limit: Some(VERIFY_PAGE),
                ..LogQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = Some(last.seq);
        let full = page.len() == VERIFY_PAGE;
        entries.extend(page);
        if !full {
            break;
        }
    }
    let count = verify_chain(&entries)?;
    store.check_log_copies().await?;
    let head = entries.last().map(LogHead::of);
    if let Some(expected) = expected_head {
        // The chain verified: entries are numbered 1, 2, 3, … in order.
        let at = usize::try_from(expected.seq - 1)
            .ok()
            .and_then(|i| entries.get(i));
        match at {
            None => {
                return Err(HeadError::Missing {
                    expected: expected.clone(),
                    last: head.as_ref().map_or(0, |h| h.seq),
                }
                .into());
            }
            Some(e) if e.hash.as_str() != expected.hash => {
                return Err(HeadError::Differs {
                    expected: expected.clone(),
                    found: e.hash.to_string(),
                }
                .into());
            }
            Some(_) => {}
        }
    }
    Ok(VerifyReport {
        entries: count,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_file_comes_from_the_environment_variable_or_the_working_directory() {
        let path = |env: Option<&str>| default_store_path(env).map(|p| p.display().to_string());
        assert_eq!(path(None).unwrap(), "actguard.db");
        assert_eq!(path(Some("")).unwrap(), "actguard.db");
        assert_eq!(
            path(Some("/var/lib/agent/a.db")).unwrap(),
            "/var/lib/agent/a.db"
        );
        assert_eq!(path(Some("sqlite:data/a.db")).unwrap(), "data/a.db");
        assert_eq!(path(Some("sqlite:///abs/a.db")).unwrap(), "/abs/a.db");
        let refused = path(Some("postgres://ops@db/actguard"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("ACTGUARD_STORE names a `postgres://` store")
                && refused.contains("Agent::builder().store(..)"),
            "{refused}"
        );
        assert!(
            path(Some("sqlite:"))
                .unwrap_err()
                .to_string()
                .contains("names no file")
        );
    }
}
