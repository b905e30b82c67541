//! Reading rows back: stored columns and JSON decoded into the store's and the rules' types, and
//! the errors that name the file an unreadable value came from.

use super::schema::Location;
use crate::log::Column;
use crate::store::{KeyStatus, Millis, NewQueueEntry, QueueEntry, QueueStatus, StoreError};

/// Ties SQLite errors to the file they came from.
pub(crate) trait Ctx<T> {
    fn at(self, at: &Location) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn at(self, at: &Location) -> Result<T, StoreError> {
        self.map_err(|e| at.error(e))
    }
}

/// A stored value that cannot be read back: the message names the file and `what`.
pub(crate) fn corrupt(at: &Location, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(
        format!(
            "`{}` holds an unreadable {what} ({e}): restore the file from a backup",
            at.display
        )
        .into(),
    )
}

pub(crate) use crate::store::to_json;

/// Reads JSON text back; an unreadable text names the file and `what`.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    at: &Location,
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    crate::store::from_json(s, |e| corrupt(at, what, e))
}

/// A record's row, as `begin` needs it: last fencing token, lease holder's digest and key, lease end.
pub(crate) type RecordRow = (i64, Option<String>, Option<String>, Option<Millis>);

/// The key's row, as `begin` needs it.
pub(crate) struct KeyRow {
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) fingerprint: String,
    pub(crate) lease_until_ms: Option<Millis>,
    pub(crate) result: Option<String>,
    pub(crate) completed_at_ms: Option<Millis>,
    pub(crate) queue_id: Option<i64>,
}

/// A key's stored state, spelled as in the `state` column.
pub(crate) fn key_status(at: &Location, state: &str) -> Result<KeyStatus, StoreError> {
    KeyStatus::parse(state).ok_or_else(|| corrupt(at, "key", format!("state `{state}`")))
}

/// A queryable column of `log` as read back.
pub(crate) fn column(v: rusqlite::Result<rusqlite::types::ValueRef<'_>>) -> Column<'_> {
    use rusqlite::types::ValueRef;
    match v {
        Ok(ValueRef::Text(t)) => match std::str::from_utf8(t) {
            Ok(t) => Column::Text(t.into()),
            Err(_) => Column::Other("text that is not UTF-8".to_owned()),
        },
        Ok(ValueRef::Integer(i)) => Column::Int(i),
        Ok(other) => Column::Other(format!("{other:?}")),
        Err(e) => Column::Other(format!("an unreadable value ({e})")),
    }
}

/// A log row that disagrees with what was hashed: edited outside the store.
pub(crate) fn tampered(at: &Location, m: String) -> StoreError {
    StoreError::Corrupt(format!("`{}`: {m}", at.display).into())
}

/// The columns of `queue` that [`get_queue_row`] reads, in its order.
pub(crate) const QUEUE_COLUMNS: &str =
    "SELECT id, status, created_ms, entry, claimed_by, note, closed_ms FROM queue";

/// A row of [`QUEUE_COLUMNS`], as read before [`queue_row`] decodes it.
pub(crate) type QueueRow = (
    i64,
    String,
    Millis,
    String,
    Option<String>,
    Option<String>,
    Option<Millis>,
);

pub(crate) fn queue_row(at: &Location, row: QueueRow) -> Result<QueueEntry, StoreError> {
    let (id, status, created_ms, entry, claimed_by, note, closed_ms) = row;
    let q: NewQueueEntry = from_json(at, "queue entry", &entry)?;
    let status = QueueStatus::parse(&status)
        .ok_or_else(|| corrupt(at, "queue entry", format!("status `{status}`")))?;
    Ok(QueueEntry {
        status,
        claimed_by,
        note,
        closed_ms,
        ..QueueEntry::open(id as u64, q, created_ms)
    })
}

pub(crate) fn get_queue_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}
