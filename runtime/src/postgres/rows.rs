//! Decoding rows into the store's and the rules' types: columns read with the error a changed
//! schema deserves, stored JSON, key states, queue entries and log entries.

use tokio_postgres::Row;

use super::statements::Db;
use crate::log::{Column, LogEntry, NewLogEntry, column_mismatch};
use crate::store::{KeyStatus, Millis, NewQueueEntry, QueueEntry, QueueStatus, StoreError};

impl Db<'_> {
    pub(super) fn corrupt(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(
            format!(
                "schema `{}` on {} holds an unreadable {what} ({e}): restore it from a backup",
                self.schema, self.server
            )
            .into(),
        )
    }

    /// Column `i` of `row`: a value of an unexpected type means the schema was altered.
    pub(super) fn col<'r, T: tokio_postgres::types::FromSql<'r>>(
        &self,
        row: &'r Row,
        i: usize,
    ) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| self.corrupt("row", e))
    }

    /// A log row that disagrees with what was hashed: edited outside the store.
    pub(super) fn tampered(&self, m: String) -> StoreError {
        StoreError::Corrupt(format!("schema `{}` on {}: {m}", self.schema, self.server).into())
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        s: &str,
    ) -> Result<T, StoreError> {
        crate::store::from_json(s, |e| self.corrupt(what, e))
    }

    /// A key's stored state, spelled as in the `state` column.
    pub(super) fn key_status(&self, state: &str) -> Result<KeyStatus, StoreError> {
        KeyStatus::parse(state).ok_or_else(|| self.corrupt("key", format!("state `{state}`")))
    }
}

pub(super) const QUEUE_COLUMNS: &str =
    "SELECT id, status, created_ms, entry, claimed_by, note, closed_ms FROM @.queue";

pub(super) fn queue_row(db: Db<'_>, row: &Row) -> Result<QueueEntry, StoreError> {
    let id: i64 = db.col(row, 0)?;
    let status: String = db.col(row, 1)?;
    let created_ms: Millis = db.col(row, 2)?;
    let entry: String = db.col(row, 3)?;
    let q: NewQueueEntry = db.json("queue entry", &entry)?;
    let status = QueueStatus::parse(&status)
        .ok_or_else(|| db.corrupt("queue entry", format!("status `{status}`")))?;
    let id = u64::try_from(id).map_err(|e| db.corrupt("queue id", e))?;
    Ok(QueueEntry {
        status,
        claimed_by: db.col(row, 4)?,
        note: db.col(row, 5)?,
        closed_ms: db.col(row, 6)?,
        ..QueueEntry::open(id, q, created_ms)
    })
}

/// A log row as its entry, refused unless its queryable columns agree with the entry.
pub(super) fn log_row(db: Db<'_>, row: &Row) -> Result<LogEntry, StoreError> {
    let seq: i64 = db.col(row, 0)?;
    let seq = u64::try_from(seq).map_err(|e| db.corrupt("log entry", e))?;
    let entry: NewLogEntry = db.json(&format!("log entry {seq}"), db.col(row, 1)?)?;
    let stored: [Column<'_>; 7] = std::array::from_fn(|i| match i {
        // `attempt` and `at_ms` are BIGINT, the others TEXT.
        4 | 6 => row.try_get::<_, i64>(4 + i).map_or_else(
            |e| Column::Other(format!("an unreadable value ({e})")),
            Column::Int,
        ),
        _ => row.try_get::<_, &str>(4 + i).map_or_else(
            |e| Column::Other(format!("an unreadable value ({e})")),
            |t| Column::Text(t.into()),
        ),
    });
    let prev_hash: &str = db.col(row, 2)?;
    let hash: &str = db.col(row, 3)?;
    if let Some(m) = column_mismatch(seq, &entry, prev_hash, hash, &stored) {
        return Err(db.tampered(m));
    }
    Ok(LogEntry {
        seq,
        entry,
        prev_hash: prev_hash.into(),
        hash: hash.into(),
    })
}
