//! The store's rules as SQL, one function per operation. Writes run inside the writer's transaction,
//! and each makes all its checks before its first change (the writer relies on it: a request that
//! fails after a change poisons its batch); reads run on any connection.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Statement, params};
use uuid::Uuid;

use super::schema::Location;
use crate::log::{
    Column, GENESIS_HASH, LogEntry, LogHead, LogQuery, NewLogEntry, canonical_json,
    column_mismatch, entry_hash_canonical,
};
use crate::rules::{
    self, ActedView, CompletePlan, FailPlan, Holder, KeyPhase, KeyView, LeaseView, RecordView,
    Refusal,
};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, KeyState, KeyStatus, Millis, NewQueueEntry,
    QueueEntry, QueueKind, QueueQuery, QueueRef, QueueStatus, QueueUpdate, Renewal, RunState,
    StoreError,
};

/// Ties SQLite errors to the file they came from.
pub(crate) trait Ctx<T> {
    fn at(self, at: &Location) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn at(self, at: &Location) -> Result<T, StoreError> {
        self.map_err(|e| at.error(&e))
    }
}

fn corrupt(at: &Location, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "`{}` holds an unreadable {what} ({e}): restore the file from a backup",
        at.display
    ))
}

pub(crate) use crate::store::to_json;

/// Reads JSON text back; an unreadable text names the file and `what`.
fn from_json<T: serde::de::DeserializeOwned>(
    at: &Location,
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    crate::store::from_json(s, |e| corrupt(at, what, e))
}

/// What the writer keeps in memory instead of reading it for every request: the head of the log
/// chain and the halted runs. It mirrors the database as this connection last wrote it, so the writer
/// loads it again whenever another connection may have committed (`PRAGMA data_version` changed) and
/// after a batch that was rolled back. It changes only right after a statement that changed a row, so
/// a request that fails without changing anything leaves it as it was.
pub(crate) struct Hot {
    /// Sequence number and hash of the last log entry; `None` while the log is empty.
    head: Option<(u64, String)>,
    /// The halted runs (table `runs`).
    halted: HashSet<Uuid>,
    /// `log_indexed.upto`: the entries up to this one are in `log_index`.
    indexed_upto: u64,
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

/// The statements of the frequent writes, prepared once for the writer's connection: looking a
/// statement up in rusqlite's cache hashes its whole SQL text, which cost more than running it.
pub(crate) struct Prepared<'c> {
    /// `BEGIN IMMEDIATE`: the batch's transaction.
    pub(crate) begin_tx: Statement<'c>,
    /// `COMMIT`.
    pub(crate) commit: Statement<'c>,
    /// `PRAGMA data_version`: changes when another connection commits.
    pub(crate) data_version: Statement<'c>,
    /// `begin`: the key's row.
    key_row: Statement<'c>,
    /// `begin`: the record's row and the loop-filter mark of the action.
    record_rows: Statement<'c>,
    /// `begin`: the record's new token and lease.
    claim_record: Statement<'c>,
    /// `begin`: the key's claim.
    claim_key: Statement<'c>,
    /// Whether a claim still holds its key.
    held: Statement<'c>,
    /// `complete`: the key's result.
    complete_key: Statement<'c>,
    /// `complete`: the loop-filter mark.
    mark: Statement<'c>,
    /// Releases a record's lease.
    release: Statement<'c>,
    /// Appends to the log.
    log_insert: Statement<'c>,
    /// A key's state and count of attempts, to count a logged attempt.
    key_attempts: Statement<'c>,
    /// Sets a key's count of attempts.
    set_attempts: Statement<'c>,
    /// `renew`: the key's claim ends later.
    renew_key: Statement<'c>,
    /// `renew`: the record's lease ends later.
    renew_record: Statement<'c>,
}

impl<'c> Prepared<'c> {
    pub(crate) fn new(c: &'c Connection, at: &Location) -> Result<Prepared<'c>, StoreError> {
        Ok(Prepared {
            begin_tx: c.prepare("BEGIN IMMEDIATE").at(at)?,
            commit: c.prepare("COMMIT").at(at)?,
            data_version: c.prepare("PRAGMA data_version").at(at)?,
            key_row: c
                .prepare(
                    "SELECT state, fingerprint, lease_until_ms, result, completed_at_ms, queue_id, attempts
             FROM keys WHERE key_digest = ?1",
                )
                .at(at)?,
            record_rows: c
                .prepare(
                    "SELECT kind, last_token, holder_digest, holder_key, lease_until_ms
                 FROM records WHERE record = ?1 AND kind = 0 AND action = ''
                 UNION ALL
                 SELECT kind, NULL, key_digest, key_text, acted_at_ms
                 FROM records WHERE record = ?1 AND kind = 1 AND action = ?2",
                )
                .at(at)?,
            claim_record: c
                .prepare(
                    "INSERT INTO records (record, kind, action, last_token, holder_digest, holder_key,
             lease_until_ms)
         VALUES (?1, 0, '', ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET last_token = excluded.last_token,
             holder_digest = excluded.holder_digest, holder_key = excluded.holder_key,
             lease_until_ms = excluded.lease_until_ms",
                )
                .at(at)?,
            claim_key: c
                .prepare(
                    "INSERT INTO keys (key_digest, key_text, action, record, run_id, fingerprint, payload, state,
             claim_id, lease_until_ms, fencing_token, result, completed_at_ms, queue_id, attempts, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'claimed', ?8, ?9, ?10, NULL, NULL, NULL, ?12, ?11)
         ON CONFLICT (key_digest) DO UPDATE SET key_text = excluded.key_text,
             action = excluded.action, record = excluded.record, run_id = excluded.run_id,
             fingerprint = excluded.fingerprint, payload = excluded.payload, state = 'claimed',
             claim_id = excluded.claim_id, lease_until_ms = excluded.lease_until_ms,
             fencing_token = excluded.fencing_token, attempts = excluded.attempts,
             updated_ms = excluded.updated_ms",
                )
                .at(at)?,
            held: c
                .prepare(
                    "SELECT state, claim_id, record, key_text FROM keys WHERE key_digest = ?1",
                )
                .at(at)?,
            complete_key: c
                .prepare(
                    "UPDATE keys SET state = 'completed', result = ?2, completed_at_ms = ?3,
             lease_until_ms = NULL, updated_ms = ?3
         WHERE key_digest = ?1",
                )
                .at(at)?,
            mark: c
                .prepare(
                    "INSERT INTO records (record, kind, action, key_text, key_digest, acted_at_ms)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET key_text = excluded.key_text,
             key_digest = excluded.key_digest, acted_at_ms = excluded.acted_at_ms",
                )
                .at(at)?,
            release: c
                .prepare(
                    "UPDATE records SET holder_digest = NULL, holder_key = NULL, lease_until_ms = NULL
         WHERE record = ?1 AND kind = 0 AND action = '' AND holder_digest = ?2",
                )
                .at(at)?,
            log_insert: c
                .prepare(
                    "INSERT INTO log (seq, at_ms, run_id, action, record, key_digest, attempt, outcome, entry,
             prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .at(at)?,
            key_attempts: c
                .prepare("SELECT state, attempts FROM keys WHERE key_digest = ?1")
                .at(at)?,
            set_attempts: c
                .prepare("UPDATE keys SET attempts = ?2 WHERE key_digest = ?1")
                .at(at)?,
            renew_key: c
                .prepare("UPDATE keys SET lease_until_ms = ?2, updated_ms = ?3 WHERE key_digest = ?1")
                .at(at)?,
            renew_record: c
                .prepare(
                    "UPDATE records SET lease_until_ms = ?3
                     WHERE record = ?1 AND kind = 0 AND action = '' AND holder_digest = ?2",
                )
                .at(at)?,
        })
    }
}

/// A record's row, as `begin` needs it: last fencing token, lease holder's digest and key, lease end.
type RecordRow = (i64, Option<String>, Option<String>, Option<Millis>);

/// The key's row, as `begin` needs it.
struct KeyRow {
    state: String,
    attempts: i64,
    fingerprint: String,
    lease_until_ms: Option<Millis>,
    result: Option<String>,
    completed_at_ms: Option<Millis>,
    queue_id: Option<i64>,
}

/// A key's stored state, spelled as in the `state` column.
fn key_status(at: &Location, state: &str) -> Result<KeyStatus, StoreError> {
    KeyStatus::parse(state).ok_or_else(|| corrupt(at, "key", format!("state `{state}`")))
}

/// Step 3 of the guarded call: loads what [`rules::begin_key`] and [`rules::begin_record`] ask for,
/// and applies their decision. `payload`: the JSON of `r.payload`.
pub(crate) fn begin(
    c: &Connection,
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &Hot,
    r: &BeginRequest,
    payload: &str,
) -> Result<Begin, StoreError> {
    let key = s
        .key_row
        .query_row(params![r.key_digest], |row| {
            Ok(KeyRow {
                state: row.get(0)?,
                fingerprint: row.get(1)?,
                lease_until_ms: row.get(2)?,
                result: row.get(3)?,
                completed_at_ms: row.get(4)?,
                queue_id: row.get(5)?,
                attempts: row.get(6)?,
            })
        })
        .optional()
        .at(at)?;
    let view = match &key {
        Some(k) => Some(KeyView {
            fingerprint: rules::stored_fingerprint(&k.fingerprint),
            phase: match key_status(at, &k.state)? {
                KeyStatus::Claimed => KeyPhase::Claimed {
                    lease_until_ms: k.lease_until_ms.unwrap_or(Millis::MIN),
                },
                KeyStatus::Completed => KeyPhase::Completed,
                KeyStatus::Failed => {
                    let id = k
                        .queue_id
                        .ok_or_else(|| corrupt(at, "failed key", "it names no queue entry"))?;
                    KeyPhase::Failed {
                        entry: id as u64,
                        entry_replayable: rules::replays(r, id as u64)
                            && queue_status(c, at, id)?.is_some_and(rules::replayable),
                    }
                }
                KeyStatus::Released => KeyPhase::Released,
            },
            attempts: u32::try_from(k.attempts).unwrap_or(u32::MAX),
        }),
        None => None,
    };
    let grant = match rules::begin_key(r, hot.halted.contains(&r.run_id), view) {
        Ok(grant) => grant,
        Err(Refusal::Completed) => {
            let k = key.as_ref().expect("a completed key is stored");
            let result = from_json(at, "stored result", k.result.as_deref().unwrap_or("null"))?;
            return Ok(Begin::Completed {
                result,
                completed_at_ms: k.completed_at_ms.unwrap_or_default(),
            });
        }
        Err(Refusal::Failed { entry }) => {
            return Ok(Begin::Failed {
                entry: queue_ref(c, at, entry as i64)?,
            });
        }
        Err(refusal) => return Ok(refusal.answer().expect("a refusal without stored data")),
    };

    // The record's row (kind 0) and the loop-filter mark of this action on it (kind 1), in one
    // statement: two seeks of the same B-tree, usually the same page.
    let mut record: Option<RecordRow> = None;
    let mut acted: Option<(String, String, Millis)> = None;
    {
        let stmt = &mut s.record_rows;
        let mut rows = stmt.query(params![r.record, r.action]).at(at)?;
        while let Some(row) = rows.next().at(at)? {
            let kind: i64 = row.get(0).at(at)?;
            if kind == 0 {
                record = Some((
                    row.get(1).at(at)?,
                    row.get(2).at(at)?,
                    row.get(3).at(at)?,
                    row.get(4).at(at)?,
                ));
            } else {
                acted = Some((row.get(3).at(at)?, row.get(2).at(at)?, row.get(4).at(at)?));
            }
        }
    }
    let record_view = record
        .as_ref()
        .map(|(token, holder, holder_key, until)| RecordView {
            last_token: *token as u64,
            lease: match (holder, until) {
                (Some(holder), Some(until)) => Some(LeaseView {
                    holder_digest: holder,
                    holder_key: holder_key.as_deref().unwrap_or_default(),
                    until_ms: *until,
                }),
                _ => None,
            },
        });
    let acted_view = acted.as_ref().map(|(key_text, digest, at_ms)| ActedView {
        key_digest: digest,
        key_text,
        at_ms: *at_ms,
    });
    let plan = match rules::begin_record(r, grant, record_view, acted_view) {
        Ok(plan) => plan,
        Err(refusal) => return Ok(refusal.answer().expect("a record refusal")),
    };

    s.claim_record
        .execute(params![
            r.record,
            plan.fencing_token as i64,
            r.key_digest,
            r.key_text,
            plan.lease_until_ms
        ])
        .at(at)?;
    let (mut run, mut claim) = (Uuid::encode_buffer(), Uuid::encode_buffer());
    let run: &str = r.run_id.as_hyphenated().encode_lower(&mut run);
    let claim: &str = r.claim_id.as_hyphenated().encode_lower(&mut claim);
    s.claim_key
        .execute(params![
            r.key_digest,
            r.key_text,
            r.action,
            r.record,
            run,
            r.fingerprint,
            payload,
            claim,
            plan.lease_until_ms,
            plan.fencing_token as i64,
            r.now_ms,
            plan.attempts,
        ])
        .at(at)?;
    Ok(Begin::Claimed(plan.claim))
}

/// Checks by [`rules::check_claim`] that `claim_id` still holds the key; returns the key's record.
fn held(
    at: &Location,
    s: &mut Prepared<'_>,
    key_digest: &str,
    claim_id: Uuid,
    key_text: &str,
) -> Result<String, StoreError> {
    let row = s
        .held
        .query_row(params![key_digest], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .optional()
        .at(at)?;
    let (claimed_by, record, text) = match row {
        Some((state, holder, record, text)) => {
            let claimed_by = match (key_status(at, &state)?, holder) {
                (KeyStatus::Claimed, Some(h)) => {
                    Some(Uuid::parse_str(&h).map_err(|e| corrupt(at, "key claim", e))?)
                }
                _ => None,
            };
            (claimed_by, record, text)
        }
        None => (None, String::new(), key_text.to_owned()),
    };
    rules::check_claim(claimed_by, claim_id, &text)?;
    Ok(record)
}

/// A live call's renewal ([`rules::renew`]): the key's claim and the record's lease end later.
pub(crate) fn renew(
    at: &Location,
    s: &mut Prepared<'_>,
    r: &Renewal,
) -> Result<Millis, StoreError> {
    let row = s
        .held
        .query_row(params![r.key_digest], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
        })
        .optional()
        .at(at)?;
    let claimed_by = match row {
        Some((state, Some(holder))) if key_status(at, &state)? == KeyStatus::Claimed => {
            Some(Uuid::parse_str(&holder).map_err(|e| corrupt(at, "key claim", e))?)
        }
        _ => None,
    };
    let until = rules::renew(claimed_by, r.claim_id, &r.key_text, r.now_ms, r.lease_ms)?;
    s.renew_key
        .execute(params![r.key_digest, until, r.now_ms])
        .at(at)?;
    s.renew_record
        .execute(params![r.record, r.key_digest, until])
        .at(at)?;
    Ok(until)
}

/// The status of queue entry `id`, if it exists.
fn queue_status(c: &Connection, at: &Location, id: i64) -> Result<Option<QueueStatus>, StoreError> {
    let status: Option<String> = c
        .prepare_cached("SELECT status FROM queue WHERE id = ?1")
        .at(at)?
        .query_row(params![id], |row| row.get(0))
        .optional()
        .at(at)?;
    status
        .map(|st| {
            QueueStatus::parse(&st)
                .ok_or_else(|| corrupt(at, "queue entry", format!("status `{st}`")))
        })
        .transpose()
}

fn release_record(
    at: &Location,
    s: &mut Prepared<'_>,
    record: &str,
    key_digest: &str,
) -> Result<(), StoreError> {
    s.release.execute(params![record, key_digest]).at(at)?;
    Ok(())
}

/// Success of a claimed call; `result`: the JSON of `d.result`; `entry`: the canonical JSON of
/// `d.entry` ([`canonical_json`]).
pub(crate) fn complete(
    c: &Connection,
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    d: Completion,
    result: &str,
    entry: String,
) -> Result<LogEntry, StoreError> {
    // The key as `complete` sees it; a completed key keeps the id of the claim that completed it.
    let row = c
        .prepare_cached(
            "SELECT state, claim_id, CASE WHEN state = 'completed' THEN result END, key_text
             FROM keys WHERE key_digest = ?1",
        )
        .at(at)?
        .query_row(params![d.key_digest], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .optional()
        .at(at)?;
    let (holder, key_text) = match row {
        Some((state, claim, stored, text)) => {
            let claim = claim
                .map(|c| Uuid::parse_str(&c).map_err(|e| corrupt(at, "key claim", e)))
                .transpose()?;
            let holder = match (key_status(at, &state)?, claim) {
                (KeyStatus::Claimed, Some(c)) => Holder::Claimed(c),
                (KeyStatus::Completed, by) => {
                    Holder::Completed(by, stored.as_deref() == Some(result))
                }
                _ => Holder::Other,
            };
            (holder, text)
        }
        None => (Holder::Other, d.entry.key_text.to_string()),
    };
    if rules::complete(holder, d.claim_id, &key_text)? == CompletePlan::AlreadyDone {
        return completed_entry(c, at, &d.key_digest, &key_text);
    }
    s.complete_key
        .execute(params![d.key_digest, result, d.now_ms])
        .at(at)?;
    let key_text = if d.entry.key_digest == d.key_digest {
        std::borrow::Cow::Borrowed(d.entry.key_text.as_str())
    } else {
        // An entry about another key: the mark names the completed key.
        let text: String = c
            .prepare_cached("SELECT key_text FROM keys WHERE key_digest = ?1")
            .at(at)?
            .query_row(params![d.key_digest], |row| row.get(0))
            .at(at)?;
        std::borrow::Cow::Owned(text)
    };
    s.mark
        .execute(params![
            d.record,
            d.action,
            key_text.as_ref(),
            d.key_digest,
            d.now_ms
        ])
        .at(at)?;
    if let Some(id) = d.replay_of.and_then(|id| i64::try_from(id).ok())
        && queue_status(c, at, id)?.is_some_and(rules::replayable)
    {
        c.prepare_cached("UPDATE queue SET status = ?2, closed_ms = ?3 WHERE id = ?1")
            .at(at)?
            .execute(params![id, QueueStatus::Replayed.as_str(), d.now_ms])
            .at(at)?;
    }
    release_record(at, s, &d.record, &d.key_digest)?;
    append_entry(at, s, hot, d.entry, false, Some(entry))
}

/// The log entry of a key's completion (the last success logged under it).
fn completed_entry(
    c: &Connection,
    at: &Location,
    key_digest: &str,
    key_text: &str,
) -> Result<LogEntry, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT seq, entry, prev_hash, hash FROM log
             WHERE key_digest = ?1 AND outcome IN ('succeeded', 'compensated')
             ORDER BY seq DESC LIMIT 1",
        )
        .at(at)?
        .query_row(params![key_digest], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .optional()
        .at(at)?;
    let (seq, entry, prev_hash, hash) = row.ok_or_else(|| {
        corrupt(
            at,
            "log",
            format!("key `{key_text}` completed without a log entry"),
        )
    })?;
    Ok(LogEntry {
        seq: seq as u64,
        entry: from_json(at, &format!("log entry {seq}"), &entry)?,
        prev_hash: prev_hash.into(),
        hash: hash.into(),
    })
}

/// A replay that failed again: entry `id` takes the failure ([`rules::refail`]).
fn refail_queue(
    c: &Connection,
    at: &Location,
    id: i64,
    q: &NewQueueEntry,
) -> Result<(), StoreError> {
    let mut e = queue_entry(c, at, id as u64)?
        .ok_or_else(|| corrupt(at, "failed key", format!("queue entry {id} is missing")))?;
    rules::refail(&mut e, q);
    write_queue_entry(c, at, &e)
}

/// Writes back every column of a changed queue entry.
fn write_queue_entry(c: &Connection, at: &Location, e: &QueueEntry) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE queue SET kind = ?2, name = ?3, status = ?4, claimed_by = ?5, note = ?6, closed_ms = ?7,
             entry = ?8
         WHERE id = ?1",
    )
    .at(at)?
    .execute(params![
        e.id as i64,
        e.kind.as_str(),
        e.name,
        e.status.as_str(),
        e.claimed_by,
        e.note,
        e.closed_ms,
        to_json(&e.failure())?
    ])
    .at(at)?;
    Ok(())
}

/// An operator's change to a queue entry, with its log entry.
pub(crate) fn queue_update(
    c: &Connection,
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let mut e = queue_entry(c, at, u.id)?
        .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", u.id)))?;
    u.op.check(&e)?;
    u.op.apply(&mut e, u.now_ms);
    let key = c
        .prepare_cached("SELECT state, queue_id FROM keys WHERE key_digest = ?1")
        .at(at)?
        .query_row(params![e.key_digest], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .optional()
        .at(at)?;
    let key = match key {
        Some((state, queue_id)) => Some((key_status(at, &state)?, queue_id.map(|id| id as u64))),
        None => None,
    };
    if rules::releases_key(&u.op, key, u.id) {
        c.prepare_cached(
            "UPDATE keys SET state = 'released', fingerprint = ?2, claim_id = NULL,
                 lease_until_ms = NULL, updated_ms = ?3
             WHERE key_digest = ?1",
        )
        .at(at)?
        .execute(params![e.key_digest, rules::RELEASED_FINGERPRINT, u.now_ms])
        .at(at)?;
    }
    c.prepare_cached(
        "UPDATE queue SET status = ?2, claimed_by = ?3, note = ?4, closed_ms = ?5 WHERE id = ?1",
    )
    .at(at)?
    .execute(params![
        e.id as i64,
        e.status.as_str(),
        e.claimed_by,
        e.note,
        e.closed_ms
    ])
    .at(at)?;
    let mut entry = u.entry.clone();
    entry.queue_entry = Some(u.id);
    append(at, s, hot, entry)?;
    Ok(e)
}

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

/// Terminal failure of a claimed call: applies [`rules::fail`]'s plan.
pub(crate) fn fail(
    c: &Connection,
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    f: Failure,
) -> Result<LogEntry, StoreError> {
    let record = held(at, s, &f.key_digest, f.claim_id, &f.entry.key_text)?;
    let mut entry = f.entry;
    let replayed = match f.replay_of.and_then(|id| i64::try_from(id).ok()) {
        Some(id) => queue_status(c, at, id)?.map(|_| id as u64),
        None => None,
    };
    let queue = match rules::fail(f.queue_entry.is_some(), replayed) {
        FailPlan::Refail { entry: id } => {
            let q = f.queue_entry.as_ref().expect("a queued failure");
            refail_queue(c, at, id as i64, q)?;
            entry.queue_entry = Some(id);
            Some(id as i64)
        }
        FailPlan::Return { entry: id } => Some(id as i64),
        FailPlan::Open => {
            let q = f.queue_entry.as_ref().expect("a queued failure");
            let id = insert_queue(c, at, q, f.now_ms)?;
            entry.queue_entry = Some(id as u64);
            Some(id)
        }
        FailPlan::Release => None,
    };
    match queue {
        Some(id) => {
            c.prepare_cached(
                "UPDATE keys SET state = 'failed', queue_id = ?2, claim_id = NULL, lease_until_ms = NULL,
                     updated_ms = ?3
                 WHERE key_digest = ?1",
            )
            .at(at)?
            .execute(params![f.key_digest, id, f.now_ms])
            .at(at)?;
        }
        None => {
            c.prepare_cached(
                "UPDATE keys SET state = 'released', claim_id = NULL, lease_until_ms = NULL,
                     updated_ms = ?2
                 WHERE key_digest = ?1",
            )
            .at(at)?
            .execute(params![f.key_digest, f.now_ms])
            .at(at)?;
        }
    }
    release_record(at, s, &record, &f.key_digest)?;
    append_entry(at, s, hot, entry, false, None)
}

fn insert_queue(
    c: &Connection,
    at: &Location,
    q: &NewQueueEntry,
    now_ms: Millis,
) -> Result<i64, StoreError> {
    c.prepare_cached(
        "INSERT INTO queue (kind, name, action, run_id, status, created_ms, entry)
         VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6)",
    )
    .at(at)?
    .execute(params![
        q.kind.as_str(),
        q.name,
        q.action,
        q.run_id.to_string(),
        now_ms,
        to_json(q)?,
    ])
    .at(at)?;
    Ok(c.last_insert_rowid())
}

/// Appends one entry after the current head of the chain.
pub(crate) fn append(
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    entry: NewLogEntry,
) -> Result<LogEntry, StoreError> {
    append_entry(at, s, hot, entry, true, None)
}

/// Appends one entry after the head of the chain (kept in `hot`), counting its attempt on its key
/// ([`rules::attempts_after_log`]) unless `count_attempt` is false (a completion or failure ends the
/// claim in the same transaction, so the count no longer matters); `canonical`: the entry's [`canonical_json`], if the caller built it
/// already. The `entry` column holds the canonical JSON: exactly the bytes hashed.
fn append_entry(
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    entry: NewLogEntry,
    count_attempt: bool,
    canonical: Option<String>,
) -> Result<LogEntry, StoreError> {
    let (seq, prev_hash) = match &hot.head {
        Some((seq, hash)) => (seq + 1, hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let json = canonical.unwrap_or_else(|| canonical_json(&entry));
    let hash = entry_hash_canonical(seq, &prev_hash, json.as_bytes());
    let mut run = Uuid::encode_buffer();
    let run: &str = entry.run_id.as_hyphenated().encode_lower(&mut run);
    s.log_insert
        .execute(params![
            seq as i64,
            entry.at_ms,
            run,
            entry.action,
            entry.record,
            entry.key_digest,
            entry.attempt,
            entry.outcome.as_str(),
            json,
            prev_hash,
            hash,
        ])
        .at(at)?;
    hot.head = Some((seq, hash.clone()));
    if count_attempt && entry.attempt > 0 {
        // Kept on the key so that a takeover knows how many attempts the previous worker made.
        let key = s
            .key_attempts
            .query_row(params![entry.key_digest], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .optional()
            .at(at)?;
        if let Some((state, stored)) = key {
            let claimed = key_status(at, &state)? == KeyStatus::Claimed;
            let stored = u32::try_from(stored).unwrap_or(u32::MAX);
            if let Some(n) = rules::attempts_after_log(claimed, stored, entry.attempt) {
                s.set_attempts
                    .execute(params![entry.key_digest, n])
                    .at(at)?;
            }
        }
    }
    Ok(LogEntry {
        seq,
        entry,
        prev_hash: prev_hash.into(),
        hash: hash.into(),
    })
}

/// Halts a run; `true` the first time.
pub(crate) fn halt(
    c: &Connection,
    at: &Location,
    hot: &mut Hot,
    run_id: Uuid,
    reason: &str,
    now_ms: Millis,
) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "INSERT INTO runs (run_id, reason, halted_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO NOTHING",
        )
        .at(at)?
        .execute(params![run_id.to_string(), reason, now_ms])
        .at(at)?;
    if n == 1 {
        hot.halted.insert(run_id);
    }
    Ok(n == 1)
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

/// A queryable column of `log` as read back.
fn column(v: rusqlite::Result<rusqlite::types::ValueRef<'_>>) -> Column<'_> {
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
fn tampered(at: &Location, m: String) -> StoreError {
    StoreError::Corrupt(format!("`{}`: {m}", at.display))
}

/// Checks `log_index` against `log`: every entry up to `log_indexed.upto` has exactly its four
/// copies there (run, action, record, time, as in its `log` row), there is nothing else, and `upto`
/// is not past the end of the log. Queries read the indexed entries through `log_index`: an index
/// row that disagrees with its entry makes them drop or mis-select it.
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

fn queue_ref(c: &Connection, at: &Location, id: i64) -> Result<QueueRef, StoreError> {
    let (kind, name): (String, String) = c
        .prepare_cached("SELECT kind, name FROM queue WHERE id = ?1")
        .at(at)?
        .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .at(at)?
        .ok_or_else(|| corrupt(at, "failed key", format!("queue entry {id} is missing")))?;
    let kind = QueueKind::parse(&kind)
        .ok_or_else(|| corrupt(at, "queue entry", format!("kind `{kind}`")))?;
    Ok(QueueRef {
        id: id as u64,
        kind,
        name,
    })
}

const QUEUE_COLUMNS: &str =
    "SELECT id, status, created_ms, entry, claimed_by, note, closed_ms FROM queue";

type QueueRow = (
    i64,
    String,
    Millis,
    String,
    Option<String>,
    Option<String>,
    Option<Millis>,
);

fn queue_row(at: &Location, row: QueueRow) -> Result<QueueEntry, StoreError> {
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

fn get_queue_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
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
