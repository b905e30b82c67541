//! Operations: what people do when the agent was confidently wrong. Review queues (list, claim,
//! resolve, discard, **replay**), the **blast radius** of a faulty action, and **revert**.
//!
//! Every operation that changes something is recorded in the action log (outcome `operator`, with who
//! did it and the queue entry it concerns), atomically with the change where the store allows it.
//!
//! Replay and revert call actions from stored data, so they need the program's registry: they take the
//! [`Agent`] of the application's own binary (which links its actions), and only actions with an
//! [`InvokeFn`](crate::InvokeFn) can be called (free, non-generic functions; methods and generic
//! functions cannot).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use actguard::{Agent, QueueQuery, ops};
//!
//! let agent = Agent::in_memory().unwrap();
//! let open = ops::queue_list(agent.store().as_ref(), &QueueQuery::default()).await.unwrap();
//! assert!(open.is_empty());
//! # });
//! ```
//!
//! # Revert
//!
//! [`revert`] runs, for each affected record, the `compensate` action declared by the action that
//! wrote it. Conventions:
//!
//! - A compensating action takes **the same payload parameters** (names and types; `#[dep]`s may
//!   differ) as the action it reverses: it is called with the reversed entry's stored payload. The
//!   audit checks it (`compensate_signature_mismatch`).
//! - Its idempotency key is replaced by `revert:{key of the reversed entry}`: stable per reversed
//!   key, so a second revert replays the stored result instead of acting again ("already reverted").
//! - Inside its body, [`Attempt::reverting`](crate::Attempt::reverting) is the log entry being
//!   reversed: `before` is the state to restore, `after` the state the faulty action left. A body
//!   that finds the record's current state differs from `after` should return an error classified as
//!   a conflict instead of overwriting a later change: the call then goes to the expert queue and the
//!   record is reported as **diverged**.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use uuid::Uuid;

use crate::agent::Agent;
use crate::invoke::InvokeError;
use crate::key::KeyBuilder;
use crate::log::{LogEntry, LogQuery, NewLogEntry, Outcome};
use crate::policy::{ActionSpec, FailureKind};
use crate::registry::registry;
use crate::run::Invocation;
use crate::store::{
    KeyStatus, Millis, QueueEntry, QueueOp, QueueQuery, QueueUpdate, Store, StoreError,
};

/// Why an operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The store could not be reached or refused (including [`StoreError::Conflict`] for a queue entry
    /// already resolved, discarded or replayed, and [`StoreError::NotFound`] for an unknown entry).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entry names an action this program does not register.
    #[error(
        "no action named `{0}` is registered in this program: run the operation from the agent's own binary (which links its actions)"
    )]
    UnknownAction(String),
    /// The action cannot be called from stored data (a method or a generic function).
    #[error(
        "`{0}` cannot be invoked from a stored payload (methods and generic functions cannot): make it a free, non-generic function to replay or revert it"
    )]
    NotInvocable(String),
}

fn now(agent: &Agent) -> Millis {
    agent.inner.clock.now_ms()
}

fn find_action(name: &str) -> Result<&'static ActionSpec, OpsError> {
    registry()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| OpsError::UnknownAction(name.to_owned()))
}

fn operator_entry(e: &QueueEntry, run_id: Uuid, now_ms: Millis, message: String) -> NewLogEntry {
    NewLogEntry {
        at_ms: now_ms,
        run_id,
        action: e.action.as_str().into(),
        record: e.record.as_str().into(),
        key_text: e.key_text.as_str().into(),
        key_digest: e.key_digest.as_str().into(),
        attempt: 0,
        retry: false,
        outcome: Outcome::Operator,
        failure_kind: None,
        route: None,
        message: Some(message),
        queue_entry: Some(e.id),
        before: None,
        after: None,
        fencing_token: None,
        duration_ms: 0,
    }
}

async fn load(store: &dyn Store, id: u64) -> Result<QueueEntry, OpsError> {
    store
        .queue_entry(id)
        .await?
        .ok_or_else(|| OpsError::Store(StoreError::NotFound(format!("queue entry {id}"))))
}

/// Queue entries matching `query` (queue kind and name, action, status, run, age), oldest first.
pub async fn queue_list(
    store: &dyn Store,
    query: &QueueQuery,
) -> Result<Vec<QueueEntry>, OpsError> {
    Ok(store.queue_entries(query).await?)
}

async fn update(agent: &Agent, id: u64, op: QueueOp) -> Result<QueueEntry, OpsError> {
    let store = agent.store().as_ref();
    let entry = load(store, id).await?;
    let now_ms = now(agent);
    let message = match &op {
        QueueOp::Claim { by } => format!("queue entry {id} claimed by {by}"),
        QueueOp::Resolve {
            by,
            note,
            release: false,
        } => format!("queue entry {id} resolved by {by}: {note}"),
        QueueOp::Resolve {
            by,
            note,
            release: true,
        } => format!("queue entry {id} resolved by {by}, its key released: {note}"),
        QueueOp::Discard { by, note } => format!("queue entry {id} discarded by {by}: {note}"),
    };
    let log = operator_entry(&entry, entry.run_id, now_ms, message);
    Ok(store
        .queue_update(&QueueUpdate {
            id,
            op,
            now_ms,
            entry: log,
        })
        .await?)
}

/// Takes an open entry (open → claimed), logged.
pub async fn queue_claim(agent: &Agent, id: u64, by: &str) -> Result<QueueEntry, OpsError> {
    update(agent, id, QueueOp::Claim { by: by.to_owned() }).await
}

/// Settles an open or claimed entry with a note (→ resolved), logged. The key stays failed: a later
/// call with it still answers with this entry.
pub async fn queue_resolve(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: note.to_owned(),
        release: false,
    };
    update(agent, id, op).await
}

/// Settles an open or claimed entry with a note (→ resolved) **and releases its key**, logged: the
/// next call under the key acts again, with any payload, instead of answering this entry. For a
/// routed failure whose source data was corrected, a dead-lettered call whose downstream recovered, or
/// a quarantined key a person cleared. A key that moved on since (completed by a replay) is left as it
/// is.
pub async fn queue_release(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: note.to_owned(),
        release: true,
    };
    update(agent, id, op).await
}

/// Drops an open or claimed entry with a note (→ discarded), logged.
pub async fn queue_discard(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Discard {
        by: by.to_owned(),
        note: note.to_owned(),
    };
    update(agent, id, op).await
}

/// What a replay did.
#[derive(Debug)]
pub struct Replay {
    /// The queue entry after the replay: `replayed` on success; open again (attempts added, the new
    /// failure's message) if the replay failed again.
    pub entry: QueueEntry,
    /// The run the replay ran in (a new one).
    pub run_id: Uuid,
    /// The action's serialized result, or why it did not succeed.
    pub outcome: Result<serde_json::Value, InvokeError>,
}

impl Replay {
    /// Whether the replayed call succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Re-runs the action of queue entry `id` with its stored payload and the agent's resources, as a new
/// guarded call under the same key (claimed again although the key failed), logged as a replay.
///
/// It runs in a **new run**, not the entry's: a run halted by a security failure would refuse every
/// action, and the fix must not depend on it. Success marks the entry replayed and completes the key
/// (a later call with the key returns the stored result); a replay that fails again updates the same
/// entry (attempts added, status open again), so replaying until it succeeds acts exactly once
/// downstream. Entries already resolved, discarded or replayed are refused with
/// [`StoreError::Conflict`].
pub async fn replay(agent: &Agent, id: u64, by: &str) -> Result<Replay, OpsError> {
    let store = agent.store().as_ref();
    let entry = load(store, id).await?;
    if entry.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "queue entry {id} is {}: it cannot be replayed",
            entry.status.as_str()
        ))
        .into());
    }
    let spec = find_action(&entry.action)?;
    let invoke = spec
        .invoke
        .ok_or_else(|| OpsError::NotInvocable(spec.name.to_owned()))?;
    let run = agent.start_run();
    let log = operator_entry(
        &entry,
        run.id(),
        now(agent),
        format!("replay of queue entry {id} requested by {by}"),
    );
    store.append_log(&log).await?;
    tracing::info!(queue_entry = id, by, run_id = %run.id(), "replay");
    let run = run.with_invocation(Invocation {
        replay_of: Some(id),
        ..Invocation::default()
    });
    let outcome = invoke(&run, entry.payload.clone()).await;
    let entry = load(store, id).await?;
    Ok(Replay {
        entry,
        run_id: run.id(),
        outcome,
    })
}

/// One record written by a selected action: the latest succeeded entry of (record, action).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedRecord {
    pub record: String,
    pub action: String,
    pub key_text: String,
    pub key_digest: String,
    /// The log entry's sequence number.
    pub seq: u64,
    pub run_id: Uuid,
    pub at_ms: Millis,
    /// State before the write, as the action captured it.
    pub before: Option<serde_json::Value>,
    /// State after the write (default: the result).
    pub after: Option<serde_json::Value>,
    /// The whole log entry (what a compensating action sees as `reverting`).
    #[serde(skip)]
    pub entry: LogEntry,
}

/// The records a selection of the log wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlastRadius {
    /// Oldest write first.
    pub records: Vec<AffectedRecord>,
}

impl BlastRadius {
    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was written.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The records written by the succeeded entries matching `query` (action, run, record, time range;
/// its `outcome` is ignored: only writes that succeeded touched a record), with before and after
/// state, the latest entry per (record, action).
pub async fn blast_radius(store: &dyn Store, query: &LogQuery) -> Result<BlastRadius, OpsError> {
    let query = LogQuery {
        outcome: Some(Outcome::Succeeded),
        ..query.clone()
    };
    let mut latest: BTreeMap<(String, String), LogEntry> = BTreeMap::new();
    for e in store.log(&query).await? {
        latest.insert((e.entry.record.to_string(), e.entry.action.to_string()), e);
    }
    let mut records: Vec<AffectedRecord> = latest
        .into_values()
        .map(|e| AffectedRecord {
            record: e.entry.record.to_string(),
            action: e.entry.action.to_string(),
            key_text: e.entry.key_text.to_string(),
            key_digest: e.entry.key_digest.to_string(),
            seq: e.seq,
            run_id: e.entry.run_id,
            at_ms: e.entry.at_ms,
            before: e.entry.before.clone(),
            after: e.entry.after.clone(),
            entry: e,
        })
        .collect();
    records.sort_by_key(|r| r.seq);
    Ok(BlastRadius { records })
}

/// How to revert.
#[derive(Debug, Clone, Default)]
pub struct RevertOptions {
    /// List what would be invoked, changing nothing.
    pub dry_run: bool,
    /// Who reverts (recorded in the log).
    pub by: String,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RevertStatus {
    /// Dry run: this compensating action would be invoked.
    Planned,
    /// The compensating action ran and succeeded.
    Reverted,
    /// Reverted before: the compensation's stored result was replayed, nothing acted.
    AlreadyReverted,
    /// The record changed since the faulty write: the compensating action refused with a conflict, the
    /// call waits in the expert queue, and the record was not overwritten.
    Diverged {
        queue_entry: Option<u64>,
        message: String,
    },
    /// Not reverted, for this reason.
    Failed { message: String },
}

impl RevertStatus {
    fn as_str(&self) -> &'static str {
        match self {
            RevertStatus::Planned => "planned",
            RevertStatus::Reverted => "reverted",
            RevertStatus::AlreadyReverted => "already reverted",
            RevertStatus::Diverged { .. } => "diverged",
            RevertStatus::Failed { .. } => "failed",
        }
    }
}

/// One record of a revert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevertedRecord {
    pub record: String,
    /// The action reversed.
    pub action: String,
    /// The compensating action, if one is declared.
    pub compensate: Option<String>,
    /// The compensation's key: `revert:{reversed key}`.
    pub key_text: String,
    /// The log entry reversed.
    pub seq: u64,
    #[serde(flatten)]
    pub status: RevertStatus,
}

/// What a revert did, per record, with counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RevertReport {
    pub dry_run: bool,
    /// The run the compensations ran in (none for a dry run).
    pub run_id: Option<Uuid>,
    pub records: Vec<RevertedRecord>,
}

impl RevertReport {
    fn count(&self, f: impl Fn(&RevertStatus) -> bool) -> usize {
        self.records.iter().filter(|r| f(&r.status)).count()
    }

    /// Records the compensating action reverted now.
    pub fn reverted(&self) -> usize {
        self.count(|s| matches!(s, RevertStatus::Reverted))
    }

    /// Records reverted before (nothing acted).
    pub fn already_reverted(&self) -> usize {
        self.count(|s| matches!(s, RevertStatus::AlreadyReverted))
    }

    /// Records that changed since the faulty write (left as they are, in the expert queue).
    pub fn diverged(&self) -> usize {
        self.count(|s| matches!(s, RevertStatus::Diverged { .. }))
    }

    /// Records that could not be reverted.
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, RevertStatus::Failed { .. }))
    }

    /// Records a dry run would revert.
    pub fn planned(&self) -> usize {
        self.count(|s| matches!(s, RevertStatus::Planned))
    }
}

impl fmt::Display for RevertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.records {
            write!(
                f,
                "{:<16} {:<24} entry {:<6} {} ",
                r.status.as_str(),
                r.record,
                r.seq,
                r.action,
            )?;
            match &r.compensate {
                Some(c) => write!(f, "-> {c} [{}]", r.key_text)?,
                None => write!(f, "(no compensate)")?,
            }
            match &r.status {
                RevertStatus::Diverged {
                    queue_entry,
                    message,
                } => {
                    write!(f, ": {message}")?;
                    if let Some(id) = queue_entry {
                        write!(f, " (queue entry {id})")?;
                    }
                }
                RevertStatus::Failed { message } => write!(f, ": {message}")?,
                _ => {}
            }
            writeln!(f)?;
        }
        if self.dry_run {
            write!(
                f,
                "dry run: {} to revert, {} cannot be reverted; nothing changed",
                self.planned(),
                self.failed()
            )
        } else {
            write!(
                f,
                "{} reverted, {} already reverted, {} diverged, {} failed",
                self.reverted(),
                self.already_reverted(),
                self.diverged(),
                self.failed()
            )
        }
    }
}

/// Runs the declared `compensate` action for exactly the records of `radius` (see the module docs
/// for the conventions), each a guarded, logged call under the key `revert:{reversed key}`, in one new
/// run. With `dry_run`, lists what would be invoked and changes nothing.
pub async fn revert(
    agent: &Agent,
    radius: &BlastRadius,
    options: &RevertOptions,
) -> Result<RevertReport, OpsError> {
    let store = agent.store().as_ref();
    let run = agent.start_run();
    let mut report = RevertReport {
        dry_run: options.dry_run,
        run_id: (!options.dry_run).then(|| run.id()),
        records: Vec::new(),
    };
    if !options.dry_run && !radius.is_empty() {
        let first = &radius.records[0];
        store
            .append_log(&NewLogEntry {
                at_ms: now(agent),
                run_id: run.id(),
                action: first.action.as_str().into(),
                record: Default::default(),
                key_text: Default::default(),
                key_digest: Default::default(),
                attempt: 0,
                retry: false,
                outcome: Outcome::Operator,
                failure_kind: None,
                route: None,
                message: Some(format!(
                    "revert of {} records (log entries {}) requested by {}",
                    radius.len(),
                    radius
                        .records
                        .iter()
                        .map(|r| r.seq.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    options.by
                )),
                queue_entry: None,
                before: None,
                after: None,
                fencing_token: None,
                duration_ms: 0,
            })
            .await?;
    }
    for affected in &radius.records {
        let key_text = format!("revert:{}", affected.key_text);
        let (compensate, status) = revert_one(agent, &run, affected, &key_text, options).await?;
        report.records.push(RevertedRecord {
            record: affected.record.clone(),
            action: affected.action.clone(),
            compensate,
            key_text,
            seq: affected.seq,
            status,
        });
    }
    Ok(report)
}

async fn revert_one(
    agent: &Agent,
    run: &crate::Run,
    affected: &AffectedRecord,
    key_text: &str,
    options: &RevertOptions,
) -> Result<(Option<String>, RevertStatus), OpsError> {
    let store = agent.store().as_ref();
    let failed = |message: String| RevertStatus::Failed { message };
    let Some(spec) = registry().into_iter().find(|s| s.name == affected.action) else {
        return Ok((
            None,
            failed(format!(
                "no action named `{}` is registered in this program",
                affected.action
            )),
        ));
    };
    let Some(target) = spec.compensate else {
        return Ok((
            None,
            failed(format!(
                "`{}` declares no `compensate` action",
                affected.action
            )),
        ));
    };
    let compensate = Some(target.to_owned());
    let Some(target_spec) = registry().into_iter().find(|s| s.name == target) else {
        return Ok((
            compensate,
            failed(format!(
                "the compensating action `{target}` is not registered"
            )),
        ));
    };
    if crate::audit::payload_shape(target_spec) != crate::audit::payload_shape(spec) {
        return Ok((
            compensate,
            failed(format!(
                "`{target}` does not take the payload parameters of `{}` \
                 (audit: compensate_signature_mismatch)",
                spec.name
            )),
        ));
    }
    let Some(invoke) = target_spec.invoke else {
        return Ok((
            compensate,
            failed(format!(
                "`{target}` cannot be invoked from a stored payload (a method or generic function)"
            )),
        ));
    };
    let Some(state) = store.key_state(&affected.key_digest).await? else {
        return Ok((
            compensate,
            failed(format!(
                "the store holds no payload for key `{}`",
                affected.key_text
            )),
        ));
    };
    let revert_digest = KeyBuilder::new(target).literal(key_text).finish().digest;
    let before = store.key_state(&revert_digest).await?;
    let done_before = before
        .as_ref()
        .is_some_and(|k| k.status == KeyStatus::Completed);
    if options.dry_run {
        let status = if done_before {
            RevertStatus::AlreadyReverted
        } else {
            RevertStatus::Planned
        };
        return Ok((compensate, status));
    }
    let run = run.with_invocation(Invocation {
        key_override: Some(key_text.to_owned()),
        reverting: Some(affected.entry.clone()),
        ..Invocation::default()
    });
    let status = match invoke(&run, state.payload).await {
        Ok(_) if done_before => RevertStatus::AlreadyReverted,
        Ok(_) => RevertStatus::Reverted,
        Err(InvokeError::Action {
            failure_kind: Some(FailureKind::Conflict),
            queue_entry,
            message,
            ..
        }) => RevertStatus::Diverged {
            queue_entry,
            message,
        },
        Err(InvokeError::Action {
            kind: "previously_failed",
            queue_entry: Some(id),
            message,
            ..
        }) => match store.queue_entry(id).await? {
            Some(q) if q.failure_kind == FailureKind::Conflict => RevertStatus::Diverged {
                queue_entry: Some(id),
                message: q.message,
            },
            _ => failed(message),
        },
        Err(e) => failed(e.to_string()),
    };
    Ok((compensate, status))
}
