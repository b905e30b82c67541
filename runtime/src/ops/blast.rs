//! Blast radius: the records a selection of the log wrote, one change per (record, action).

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::log::{LogEntry, LogQuery, Outcome};
use crate::store::{Millis, Store};

use super::OpsError;

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
