//! What the writer keeps in memory between requests ([`Hot`]: the head of the log chain, the halted
//! runs, the end of the log index), and the indexing of the log that the writer runs every
//! [`LOG_INDEX_EVERY`] entries.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::rows::{Ctx, corrupt};
use super::schema::Location;
use crate::store::StoreError;

/// What the writer keeps in memory instead of reading it for every request: the head of the log
/// chain and the halted runs. It mirrors the database as this connection last wrote it, so the writer
/// loads it again whenever another connection may have committed (`PRAGMA data_version` changed) and
/// after a batch that was rolled back. It changes only right after a statement that changed a row, so
/// a request that fails without changing anything leaves it as it was.
pub(crate) struct Hot {
    /// Sequence number and hash of the last log entry; `None` while the log is empty.
    pub(crate) head: Option<(u64, String)>,
    /// The halted runs (table `runs`).
    pub(crate) halted: HashSet<Uuid>,
    /// `log_indexed.upto`: the entries up to this one are in `log_index`.
    pub(crate) indexed_upto: u64,
}

impl Hot {
    pub(crate) fn load(c: &Connection, at: &Location) -> Result<Hot, StoreError> {
        let head = c
            .prepare_cached("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
            .at(at)?
            .query_row([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
            .optional()
            .at(at)?;
        let mut halted = HashSet::new();
        let mut stmt = c.prepare_cached("SELECT run_id FROM runs").at(at)?;
        let mut rows = stmt.query([]).at(at)?;
        while let Some(row) = rows.next().at(at)? {
            let id: String = row.get(0).at(at)?;
            halted.insert(Uuid::parse_str(&id).map_err(|e| corrupt(at, "halted run", e))?);
        }
        let indexed_upto = c
            .prepare_cached("SELECT upto FROM log_indexed")
            .at(at)?
            .query_row([], |row| row.get::<_, i64>(0))
            .optional()
            .at(at)?
            .ok_or_else(|| corrupt(at, "log index", "`log_indexed` has no row"))?;
        Ok(Hot {
            head,
            halted,
            indexed_upto: indexed_upto as u64,
        })
    }

    /// Whether the log has [`LOG_INDEX_EVERY`] entries or more that are not in `log_index` yet.
    pub(crate) fn index_due(&self) -> bool {
        let head = self.head.as_ref().map_or(0, |h| h.0);
        head >= self.indexed_upto + LOG_INDEX_EVERY
    }
}

/// How many log entries the writer lets accumulate before it adds them to `log_index` together (in
/// the transaction of the batch that reaches the count): a query reads at most this many entries
/// (plus one batch) without the index.
pub(crate) const LOG_INDEX_EVERY: u64 = 256;

/// Adds the log entries after `log_indexed.upto` to `log_index` (run, action, record and time of
/// each), inside the current transaction.
pub(crate) fn index_log(c: &Connection, at: &Location, hot: &mut Hot) -> Result<(), StoreError> {
    let Some((head, _)) = hot.head else {
        return Ok(());
    };
    let from = hot.indexed_upto as i64;
    c.prepare_cached(
        "INSERT INTO log_index (kind, value, seq)
             SELECT 0, run_id, seq FROM log WHERE seq > ?1 AND seq <= ?2
             UNION ALL SELECT 1, action, seq FROM log WHERE seq > ?1 AND seq <= ?2
             UNION ALL SELECT 2, record, seq FROM log WHERE seq > ?1 AND seq <= ?2
             UNION ALL SELECT 3, at_ms, seq FROM log WHERE seq > ?1 AND seq <= ?2",
    )
    .at(at)?
    .execute(params![from, head as i64])
    .at(at)?;
    c.prepare_cached("UPDATE log_indexed SET upto = ?1")
        .at(at)?
        .execute(params![head as i64])
        .at(at)?;
    hot.indexed_upto = head;
    Ok(())
}
