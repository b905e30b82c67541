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
//! [`blast_radius`] folds the selected writes of each (record, action) into one change: from the
//! state **before the first write** to the state **after the last**, with how many writes there
//! were. A bad run that wrote a record three times (`s0 → s1 → s2 → s3`) shows `s0 → s3`, 3 writes.
//!
//! [`revert`] runs, for each affected record, the `compensate` action declared by the action that
//! wrote it, once per record however many writes there were, to restore the state before the first.
//! Conventions:
//!
//! - A compensating action takes **the same payload parameters** (names and types; `#[dep]`s may
//!   differ) as the action it reverses: it is called with the stored payload of the record's **last**
//!   write. The audit checks it (`compensate_signature_mismatch`).
//! - Its idempotency key is replaced by `revert:{key of the last write}`: stable per reversed key, so
//!   a second revert of the same selection replays the stored result instead of acting again
//!   ("already reverted").
//! - Inside its body, [`Attempt::reverting`](crate::Attempt::reverting) is the change being reversed,
//!   as one log entry: `before` is the state to restore (before the **first** write), `after` the
//!   state the faulty action left (after the **last** write). It is the last write's entry (its
//!   `seq`, key, run, hash) with the first write's `before`: a view built by
//!   [`AffectedRecord::reverting`], not an entry as stored; the compensation's log entry says it
//!   reverts that last entry, and the revert's operator entry lists every write reverted. For a record
//!   written once it is exactly the stored entry.
//! - A body that finds the record's current state differs from `after` should return an error
//!   classified as a conflict instead of overwriting a later change: the call then goes to the expert
//!   queue and the record is reported as **diverged**.

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
    KeyStatus, Millis, QueueEntry, QueueKind, QueueOp, QueueQuery, QueueUpdate, Store, StoreError,
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
    /// An approval request is settled by approving or rejecting it, not by resolving, discarding or
    /// replaying it.
    #[error(
        "queue entry {0} is an approval request: approve it (`actguard queue approve {0} --by NAME`) or reject it (`actguard queue reject {0} --by NAME --note ...`)"
    )]
    ApprovalRequest(u64),
    /// Only an approval request can be approved or rejected.
    #[error(
        "queue entry {0} is not an approval request: only entries of the approval queue are approved or rejected"
    )]
    NotApprovalRequest(u64),
}

/// How an operator's queue operation treats approval requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Claim, resolve or discard: not a decision on an approval request.
    Plain,
    /// Approve an approval request.
    Approve,
    /// Reject an approval request.
    Reject,
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
        .ok_or_else(|| OpsError::Store(StoreError::NotFound(format!("queue entry {id}").into())))
}

/// Queue entries matching `query` (queue kind and name, action, status, run, age), oldest first.
pub async fn queue_list(
    store: &dyn Store,
    query: &QueueQuery,
) -> Result<Vec<QueueEntry>, OpsError> {
    Ok(store.queue_entries(query).await?)
}

async fn update(agent: &Agent, id: u64, op: QueueOp) -> Result<QueueEntry, OpsError> {
    decide(agent, id, op, Decision::Plain).await
}

async fn decide(
    agent: &Agent,
    id: u64,
    op: QueueOp,
    decision: Decision,
) -> Result<QueueEntry, OpsError> {
    let store = agent.store().as_ref();
    let entry = load(store, id).await?;
    let approval = entry.kind == QueueKind::Approval;
    match decision {
        Decision::Plain if approval && !matches!(op, QueueOp::Claim { .. }) => {
            return Err(OpsError::ApprovalRequest(id));
        }
        Decision::Approve | Decision::Reject if !approval => {
            return Err(OpsError::NotApprovalRequest(id));
        }
        _ => {}
    }
    let now_ms = now(agent);
    let message = match (&op, decision) {
        (QueueOp::Resolve { by, .. }, Decision::Approve) => {
            format!("approval request {id} approved by {by}")
        }
        (QueueOp::Discard { by, note }, Decision::Reject) => {
            format!("approval request {id} rejected by {by}: {note}")
        }
        (op, _) => plain_message(id, op),
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

fn plain_message(id: u64, op: &QueueOp) -> String {
    match op {
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
    }
}

/// Approves an approval request (open or claimed → resolved), logged with who approved: the same
/// key with the same payload then acts, once, if called before the action's `approval_expires`.
pub async fn queue_approve(agent: &Agent, id: u64, by: &str) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: "approved".to_owned(),
        release: true,
    };
    decide(agent, id, op, Decision::Approve).await
}

/// Rejects an approval request (open or claimed → discarded) with a note, logged with who rejected:
/// every later call of the key answers `rejected`, and nothing acts.
pub async fn queue_reject(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Discard {
        by: by.to_owned(),
        note: note.to_owned(),
    };
    decide(agent, id, op, Decision::Reject).await
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
    if entry.kind == QueueKind::Approval {
        return Err(OpsError::ApprovalRequest(id));
    }
    if entry.status.is_terminal() {
        return Err(StoreError::Conflict(
            format!(
                "queue entry {id} is {}: it cannot be replayed",
                entry.status.as_str()
            )
            .into(),
        )
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
    let outcome = invoke(&run, entry.payload.clone())
        .await
        .map(|invoked| invoked.value);
    let entry = load(store, id).await?;
    Ok(Replay {
        entry,
        run_id: run.id(),
        outcome,
    })
}

/// One record written by a selected action: every succeeded write of (record, action) in the
/// selection, folded into one change, from the state **before the first write** to the state **after
/// the last**.
///
/// A bad run that writes a record several times (`s0 → s1`, `s1 → s2`, `s2 → s3`) is one affected
/// record with `before = s0`, `after = s3` and `writes = 3`: reverting it restores `s0`, the state
/// the record had before the selection touched it, not the intermediate `s2`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedRecord {
    pub record: String,
    pub action: String,
    /// The last write's key (the compensation is called with its stored payload).
    pub key_text: String,
    pub key_digest: String,
    /// The last write's log entry sequence number: the entry a revert reverses.
    pub seq: u64,
    /// The sequence numbers of every write of (record, action) in the selection, oldest first (the
    /// last is `seq`).
    pub seqs: Vec<u64>,
    /// How many writes: `seqs.len()`.
    pub writes: usize,
    /// The last write's run.
    pub run_id: Uuid,
    /// When the last write ended.
    pub at_ms: Millis,
    /// State before the **first** write, as the action captured it: what a revert restores.
    pub before: Option<serde_json::Value>,
    /// State after the **last** write (default: its result): what a revert expects to find.
    pub after: Option<serde_json::Value>,
    /// The last write's log entry, as stored.
    #[serde(skip)]
    pub entry: LogEntry,
}

impl AffectedRecord {
    /// What the compensating action sees as [`Attempt::reverting`](crate::Attempt::reverting): the
    /// last write's entry ([`entry`](Self::entry)) with `before` replaced by the first write's
    /// `before`. For a record written once it is that entry unchanged.
    ///
    /// It is a view, not a stored entry: its `seq`, key, run, `after` and `hash` are the last
    /// write's, and its `before` is not what that entry stored, so it does not verify against the log
    /// chain (the stored entries are untouched). The other writes are in the log, under
    /// [`seqs`](Self::seqs).
    pub fn reverting(&self) -> LogEntry {
        let mut view = self.entry.clone();
        view.entry.before = self.before.clone();
        view
    }
}

/// The records a selection of the log wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlastRadius {
    /// Ordered by their last write, oldest first.
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

    /// How many writes, over all records.
    pub fn writes(&self) -> usize {
        self.records.iter().map(|r| r.writes).sum()
    }
}

/// The records written by the succeeded entries matching `query` (action, run, record, time range;
/// its `outcome` is ignored: only writes that succeeded touched a record), one per (record, action),
/// each with the state before its first write in the selection and after its last (see
/// [`AffectedRecord`]).
///
/// Only the selected entries count: for a record the selected run wrote twice with a write of another
/// run in between, `before` is the state before the selected run's first write and `after` the state
/// after its last, so a revert restores the state before the run and undoes the other run's write in
/// between too. Select narrower (`record`, time range) to stop short of it.
pub async fn blast_radius(store: &dyn Store, query: &LogQuery) -> Result<BlastRadius, OpsError> {
    let query = LogQuery {
        outcome: Some(Outcome::Succeeded),
        ..query.clone()
    };
    // (first write, every seq, last write) per (record, action).
    let mut written: BTreeMap<(String, String), (LogEntry, Vec<u64>, LogEntry)> = BTreeMap::new();
    let mut entries = store.log(&query).await?;
    entries.sort_by_key(|e| e.seq);
    for e in entries {
        let at = (e.entry.record.to_string(), e.entry.action.to_string());
        match written.get_mut(&at) {
            Some((_, seqs, last)) => {
                seqs.push(e.seq);
                *last = e;
            }
            None => {
                written.insert(at, (e.clone(), vec![e.seq], e));
            }
        }
    }
    let mut records: Vec<AffectedRecord> = written
        .into_values()
        .map(|(first, seqs, last)| AffectedRecord {
            record: last.entry.record.to_string(),
            action: last.entry.action.to_string(),
            key_text: last.entry.key_text.to_string(),
            key_digest: last.entry.key_digest.to_string(),
            seq: last.seq,
            writes: seqs.len(),
            seqs,
            run_id: last.entry.run_id,
            at_ms: last.entry.at_ms,
            before: first.entry.before,
            after: last.entry.after.clone(),
            entry: last,
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
    /// The log entry reversed: the record's last write in the selection.
    pub seq: u64,
    /// Every write of the record the compensation reverses, oldest first (see [`AffectedRecord`]).
    pub seqs: Vec<u64>,
    /// How many writes: `seqs.len()`.
    pub writes: usize,
    /// The state to restore: before the first write.
    pub before: Option<serde_json::Value>,
    /// The state the last write left.
    pub after: Option<serde_json::Value>,
    #[serde(flatten)]
    pub status: RevertStatus,
}

/// `entry 46`, or `entries 12…46 (3 writes)`.
fn entries_text(seqs: &[u64]) -> String {
    match seqs {
        [] => "no entry".to_owned(),
        [seq] => format!("entry {seq:<6}"),
        [first, .., last] => format!("entries {first}…{last} ({} writes)", seqs.len()),
    }
}

/// A state as compact JSON (`none` if not captured), cut to 40 characters.
fn state_text(v: Option<&serde_json::Value>) -> String {
    let text = v.map_or("none".to_owned(), |v| v.to_string());
    if text.chars().count() <= 40 {
        return text;
    }
    let mut cut: String = text.chars().take(39).collect();
    cut.push('…');
    cut
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
                "{:<16} {:<24} {} {} ",
                r.status.as_str(),
                r.record,
                entries_text(&r.seqs),
                r.action,
            )?;
            match &r.compensate {
                Some(c) => write!(f, "-> {c} [{}]", r.key_text)?,
                None => write!(f, "(no compensate)")?,
            }
            write!(
                f,
                "  {} → {}",
                state_text(r.before.as_ref()),
                state_text(r.after.as_ref())
            )?;
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
/// for the conventions), once per record, each a guarded, logged call under the key
/// `revert:{key of the record's last write}`, in one new run. The compensating action sees
/// [`AffectedRecord::reverting`]: the state before the record's first write to restore, the state
/// after its last to expect. With `dry_run`, lists what would be invoked and changes nothing; both
/// reports show each record's first `before`, last `after` and writes.
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
        // Every write the revert covers, not only the last of each record.
        let mut reverted: Vec<u64> = radius.records.iter().flat_map(|r| r.seqs.clone()).collect();
        reverted.sort_unstable();
        let reverted: Vec<String> = reverted.iter().map(u64::to_string).collect();
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
                    reverted.join(", "),
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
            seqs: affected.seqs.clone(),
            writes: affected.writes,
            before: affected.before.clone(),
            after: affected.after.clone(),
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
        reverting: Some(affected.reverting()),
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
