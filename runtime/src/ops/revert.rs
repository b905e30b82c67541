//! Revert: running the declared `compensate` action for each record of a blast radius.

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

use crate::agent::Agent;
use crate::invoke::InvokeError;
use crate::key::KeyBuilder;
use crate::log::{NewLogEntry, Outcome};
use crate::policy::FailureKind;
use crate::registry::registry;
use crate::run::Invocation;
use crate::store::KeyStatus;

use super::blast::{AffectedRecord, BlastRadius};
use super::{OpsError, now};

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
