//! The reads, on any connection (the reader's, or the writer's for a store in memory): the log and
//! its head, a key's state, a run's state, a record's fencing token, the review queue, and the check
//! of the log index against the log.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::rows::{
    Ctx, QUEUE_COLUMNS, column, corrupt, from_json, get_queue_row, key_status, queue_row, tampered,
};
use super::schema::Location;
use crate::log::{Column, LogEntry, LogHead, LogQuery, NewLogEntry, column_mismatch};
use crate::store::{KeyState, KeyStatus, Millis, QueueEntry, QueueQuery, RunState, StoreError};

/// The stored state of one key.
pub(crate) fn key_state(
    c: &Connection,
    at: &Location,
    key_digest: &str,
) -> Result<Option<KeyState>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT action, key_text, record, fingerprint, payload, state, result, queue_id
             FROM keys WHERE key_digest = ?1",
        )
        .at(at)?
        .query_row(params![key_digest], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<i64>>(7)?,
            ))
        })
        .optional()
        .at(at)?;
    let Some((action, key_text, record, fingerprint, payload, state, result, queue_id)) = row
    else {
        return Ok(None);
    };
    let status = key_status(at, &state)?;
    let result = match (status, result) {
        (KeyStatus::Completed, Some(r)) => Some(from_json(at, "stored result", &r)?),
        _ => None,
    };
    Ok(Some(KeyState {
        action,
        key_text,
        record,
        fingerprint,
        payload: from_json(at, "payload", &payload)?,
        status,
        result,
        queue_entry: match status {
            KeyStatus::Failed => queue_id.map(|id| id as u64),
            _ => None,
        },
    }))
}

pub(crate) fn run_state(
    c: &Connection,
    at: &Location,
    run_id: Uuid,
) -> Result<RunState, StoreError> {
    let row = c
        .prepare_cached("SELECT reason, halted_at_ms FROM runs WHERE run_id = ?1")
        .at(at)?
        .query_row(params![run_id.to_string()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Millis>(1)?))
        })
        .optional()
        .at(at)?;
    Ok(match row {
        Some((reason, at_ms)) => RunState::Halted { reason, at_ms },
        None => RunState::Active,
    })
}

pub(crate) fn fencing_token(
    c: &Connection,
    at: &Location,
    record: &str,
) -> Result<Option<u64>, StoreError> {
    let token: Option<i64> = c
        .prepare_cached(
            "SELECT last_token FROM records WHERE record = ?1 AND kind = 0 AND action = ''",
        )
        .at(at)?
        .query_row(params![record], |row| row.get(0))
        .optional()
        .at(at)?;
    Ok(token.map(|t| t as u64))
}

pub(crate) fn log(
    c: &Connection,
    at: &Location,
    q: &LogQuery,
) -> Result<Vec<LogEntry>, StoreError> {
    use rusqlite::types::Value as V;
    // The filters, on the columns of `log`.
    let mut filters = String::new();
    let mut args: Vec<V> = Vec::new();
    // The `log_index` lookup of one filter (kind, condition on `value`), the most selective one.
    let mut lookup: Option<(u8, String)> = None;
    let mut filter = |clause: &str, v: V| -> usize {
        args.push(v);
        filters.push_str(&format!(" AND {clause} ?{}", args.len()));
        args.len()
    };
    let mut time = String::new();
    if let Some(t) = q.from_ms {
        let n = filter("at_ms >=", V::Integer(t));
        time.push_str(&format!(" AND value >= ?{n}"));
    }
    if let Some(t) = q.to_ms {
        let n = filter("at_ms <", V::Integer(t));
        time.push_str(&format!(" AND value < ?{n}"));
    }
    if !time.is_empty() {
        lookup = Some((3, time));
    }
    if let Some(a) = &q.action {
        let n = filter("action =", V::Text(a.clone()));
        lookup = Some((1, format!(" AND value = ?{n}")));
    }
    if let Some(r) = q.run_id {
        let n = filter("run_id =", V::Text(r.to_string()));
        lookup = Some((0, format!(" AND value = ?{n}")));
    }
    if let Some(r) = &q.record {
        let n = filter("record =", V::Text(r.clone()));
        lookup = Some((2, format!(" AND value = ?{n}")));
    }
    if let Some(o) = q.outcome {
        filter("outcome =", V::Text(o.as_str().to_owned()));
    }
    let mut after = String::new();
    if let Some(s) = q.after_seq {
        let n = filter("seq >", V::Integer(i64::try_from(s).unwrap_or(i64::MAX)));
        after = format!(" AND seq > ?{n}");
    }
    // The queryable columns come back too: a row is returned only if they agree with its entry.
    const COLUMNS: &str = "SELECT seq, entry, prev_hash, hash, run_id, action, record, key_digest, \
                           attempt, outcome, at_ms FROM log";
    let mut sql = match lookup {
        None => format!("{COLUMNS} WHERE 1 = 1{filters}"),
        // The indexed entries through `log_index`, the later ones directly (see schema version 4).
        Some((kind, condition)) => format!(
            "SELECT * FROM (
                 {COLUMNS} WHERE seq IN (
                     SELECT seq FROM log_index WHERE kind = {kind}{condition}{after}
                         AND seq <= (SELECT upto FROM log_indexed)){filters}
                 UNION ALL
                 {COLUMNS} WHERE seq > (SELECT upto FROM log_indexed){filters})"
        ),
    };
    sql.push_str(" ORDER BY seq");
    if let Some(limit) = q.limit {
        sql.push_str(&format!(
            " LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
    }
    let mut stmt = c.prepare_cached(&sql).at(at)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).at(at)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().at(at)? {
        let seq = row.get::<_, i64>(0).at(at)? as u64;
        let what = || format!("log entry {seq}");
        let entry: NewLogEntry = from_json(
            at,
            &what(),
            row.get_ref(1)
                .at(at)?
                .as_str()
                .map_err(|e| corrupt(at, &what(), e))?,
        )?;
        let prev_hash: String = row.get(2).at(at)?;
        let hash: String = row.get(3).at(at)?;
        let stored: [Column<'_>; 7] = std::array::from_fn(|i| column(row.get_ref(4 + i)));
        if let Some(m) = column_mismatch(seq, &entry, &prev_hash, &hash, &stored) {
            return Err(tampered(at, m));
        }
        out.push(LogEntry {
            seq,
            entry,
            prev_hash: prev_hash.into(),
            hash: hash.into(),
        });
    }
    Ok(out)
}

/// The last log row's sequence number and hash.
pub(crate) fn log_head(c: &Connection, at: &Location) -> Result<Option<LogHead>, StoreError> {
    c.prepare_cached("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| {
            st.query_row([], |r| {
                Ok(LogHead {
                    seq: r.get::<_, i64>(0)? as u64,
                    hash: r.get(1)?,
                })
            })
            .optional()
        })
        .at(at)
}

/// Checks `log_index` against `log`: every entry up to `log_indexed.upto` has exactly its four
/// copies there (run, action, record, time, as in its `log` row), there is nothing else, and `upto`
/// is not past the end of the log. Queries read the indexed entries through `log_index`: an index
/// row that disagrees with its entry makes them drop or mis-select it.
pub(crate) fn check_log_index(c: &Connection, at: &Location) -> Result<(), StoreError> {
    // One statement: one snapshot of both tables, whatever the writer commits meanwhile.
    let row: Option<(String, i64, i64, bool, i64)> = c
        .prepare_cached(
            "WITH upto(n) AS (SELECT upto FROM log_indexed),
             copies(kind, value, seq) AS (
                 SELECT 0, run_id, seq FROM log WHERE seq <= (SELECT n FROM upto)
                 UNION ALL SELECT 1, action, seq FROM log WHERE seq <= (SELECT n FROM upto)
                 UNION ALL SELECT 2, record, seq FROM log WHERE seq <= (SELECT n FROM upto)
                 UNION ALL SELECT 3, at_ms, seq FROM log WHERE seq <= (SELECT n FROM upto)),
             bad(what, kind, seq) AS (
                 SELECT 'extra', kind, seq FROM (
                     SELECT kind, value, seq FROM log_index
                     EXCEPT SELECT kind, value, seq FROM copies)
                 UNION ALL
                 SELECT 'missing', kind, seq FROM (
                     SELECT kind, value, seq FROM copies
                     EXCEPT SELECT kind, value, seq FROM log_index))
             SELECT what, kind, seq, EXISTS (SELECT 1 FROM log WHERE log.seq = bad.seq),
                 (SELECT n FROM upto)
             FROM bad ORDER BY seq, kind LIMIT 1",
        )
        .at(at)?
        .query_row([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .at(at)?;
    if let Some((what, kind, seq, in_log, upto)) = row {
        let column = ["run_id", "action", "record", "at_ms"]
            .get(kind as usize)
            .copied()
            .unwrap_or("unknown");
        let m = match (what.as_str(), in_log) {
            (_, false) => format!(
                "the log index holds entry {seq}, which is not in the log: entries were deleted"
            ),
            ("extra", true) if seq > upto => format!(
                "the log index holds entry {seq}, past its high-water mark {upto}: it was edited"
            ),
            ("extra", true) => format!(
                "log entry {seq} was tampered with: its `{column}` copy in the log index disagrees \
                 with its log row"
            ),
            _ => format!(
                "log entry {seq} was tampered with: its `{column}` copy is missing from the log \
                 index (which covers entries up to {upto})"
            ),
        };
        return Err(tampered(at, m));
    }
    let (upto, last): (i64, Option<i64>) = c
        .prepare_cached("SELECT (SELECT upto FROM log_indexed), (SELECT max(seq) FROM log)")
        .at(at)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .at(at)?;
    let last = last.unwrap_or(0);
    if upto > last {
        return Err(tampered(
            at,
            format!(
                "the log index covers entries up to {upto} but the log ends at entry {last}: \
                 entries were deleted from its end"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn queue_entries(
    c: &Connection,
    at: &Location,
    q: &QueueQuery,
) -> Result<Vec<QueueEntry>, StoreError> {
    let mut sql = format!("{QUEUE_COLUMNS} WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut filter = |column: &str, op: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
    };
    if let Some(k) = q.kind {
        filter("kind", "=", k.as_str().to_owned().into());
    }
    if let Some(n) = &q.name {
        filter("name", "=", n.clone().into());
    }
    if let Some(a) = &q.action {
        filter("action", "=", a.clone().into());
    }
    if let Some(s) = q.status {
        filter("status", "=", s.as_str().to_owned().into());
    }
    if let Some(r) = q.run_id {
        filter("run_id", "=", r.to_string().into());
    }
    if let Some(t) = q.older_than_ms {
        filter("created_ms", "<=", t.into());
    }
    if let Some(t) = q.newer_than_ms {
        filter("created_ms", ">=", t.into());
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = c.prepare_cached(&sql).at(at)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), get_queue_row)
        .at(at)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(queue_row(at, row.at(at)?)?);
    }
    Ok(out)
}

pub(crate) fn queue_entry(
    c: &Connection,
    at: &Location,
    id: u64,
) -> Result<Option<QueueEntry>, StoreError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let row = c
        .prepare_cached(&format!("{QUEUE_COLUMNS} WHERE id = ?1"))
        .at(at)?
        .query_row(params![id], get_queue_row)
        .optional()
        .at(at)?;
    row.map(|r| queue_row(at, r)).transpose()
}
