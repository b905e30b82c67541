//! The store's rules as SQL, one function per operation. Writes run inside the writer's transaction
//! (each in its own savepoint); reads run on any connection.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::schema::Location;
use crate::log::{GENESIS_HASH, LogEntry, LogQuery, NewLogEntry};
use crate::store::{
    Begin, BeginRequest, Claim, Completion, Failure, KeyState, KeyStatus, Millis, NewQueueEntry,
    QueueEntry, QueueKind, QueueQuery, QueueRef, QueueStatus, QueueUpdate, RunState, StoreError,
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

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("cannot serialize: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(
    at: &Location,
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(at, what, e))
}

fn queue_kind(s: &str) -> Option<QueueKind> {
    [QueueKind::Owner, QueueKind::Expert, QueueKind::DeadLetter]
        .into_iter()
        .find(|k| k.as_str() == s)
}

fn status_str(s: QueueStatus) -> &'static str {
    s.as_str()
}

fn status_of(s: &str) -> Option<QueueStatus> {
    [
        QueueStatus::Open,
        QueueStatus::Claimed,
        QueueStatus::Resolved,
        QueueStatus::Discarded,
        QueueStatus::Replayed,
    ]
    .into_iter()
    .find(|k| status_str(*k) == s)
}

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

/// Step 3 of the guarded call, in the documented order.
/// `payload`: the JSON of `r.payload`.
pub(crate) fn begin(
    c: &Connection,
    at: &Location,
    r: &BeginRequest,
    payload: &str,
) -> Result<Begin, StoreError> {
    let run = r.run_id.to_string();
    let halted = c
        .prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1")
        .at(at)?
        .exists(params![run])
        .at(at)?;
    if halted {
        return Ok(Begin::Halted);
    }

    let key = c
        .prepare_cached(
            "SELECT state, fingerprint, lease_until_ms, result, completed_at_ms, queue_id, attempts
             FROM keys WHERE key_digest = ?1",
        )
        .at(at)?
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

    let mut takeover = false;
    let mut replay = false;
    if let Some(k) = &key {
        if k.fingerprint != r.fingerprint {
            return Ok(Begin::KeyReused {
                stored_fingerprint: k.fingerprint.clone(),
            });
        }
        if k.state == "completed" {
            let result = from_json(at, "stored result", k.result.as_deref().unwrap_or("null"))?;
            return Ok(Begin::Completed {
                result,
                completed_at_ms: k.completed_at_ms.unwrap_or_default(),
            });
        }
        if k.state == "failed" {
            let id = k
                .queue_id
                .ok_or_else(|| corrupt(at, "failed key", "it names no queue entry"))?;
            replay = r.replay_of == Some(id as u64) && replayable(c, at, id)?;
            if !replay {
                let entry = queue_ref(c, at, id)?;
                return Ok(Begin::Failed { entry });
            }
        }
        if k.state == "claimed" {
            let until = k.lease_until_ms.unwrap_or(Millis::MIN);
            if r.now_ms < until {
                return Ok(Begin::InProgress {
                    lease_until_ms: until,
                });
            }
            takeover = true;
        }
    }

    let record = c
        .prepare_cached(
            "SELECT last_token, holder_digest, holder_key, lease_until_ms FROM records
             WHERE record = ?1 AND kind = 0 AND action = ''",
        )
        .at(at)?
        .query_row(params![r.record], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<Millis>>(3)?,
            ))
        })
        .optional()
        .at(at)?;
    if let Some((_, Some(holder), holder_key, Some(until))) = &record
        && holder != &r.key_digest
        && r.now_ms < *until
    {
        return Ok(Begin::RecordBusy {
            holder_key: holder_key.clone().unwrap_or_default(),
            lease_until_ms: *until,
        });
    }

    if let Some(window) = r.dedup_ms {
        let acted = c
            .prepare_cached(
                "SELECT key_text, key_digest, acted_at_ms FROM records
                 WHERE record = ?1 AND kind = 1 AND action = ?2",
            )
            .at(at)?
            .query_row(params![r.record, r.action], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Millis>(2)?,
                ))
            })
            .optional()
            .at(at)?;
        if let Some((previous_key, digest, acted_at_ms)) = acted
            && digest != r.key_digest
            && r.now_ms < acted_at_ms.saturating_add(window)
        {
            return Ok(Begin::Skipped {
                previous_key,
                acted_at_ms,
            });
        }
    }

    // A replay is a new call under the same key: its attempts count afresh.
    let previous_attempts = if replay {
        0
    } else {
        key.as_ref().map_or(0, |k| k.attempts)
    };
    let token = record.as_ref().map_or(0, |rec| rec.0) + 1;
    let lease_until = r.now_ms.saturating_add(r.lease_ms);
    c.prepare_cached(
        "INSERT INTO records (record, kind, action, last_token, holder_digest, holder_key,
             lease_until_ms)
         VALUES (?1, 0, '', ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET last_token = excluded.last_token,
             holder_digest = excluded.holder_digest, holder_key = excluded.holder_key,
             lease_until_ms = excluded.lease_until_ms",
    )
    .at(at)?
    .execute(params![
        r.record,
        token,
        r.key_digest,
        r.key_text,
        lease_until
    ])
    .at(at)?;
    c.prepare_cached(
        "INSERT INTO keys (key_digest, key_text, action, record, run_id, fingerprint, payload, state,
             claim_id, lease_until_ms, fencing_token, result, completed_at_ms, queue_id, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'claimed', ?8, ?9, ?10, NULL, NULL, NULL, ?11)
         ON CONFLICT (key_digest) DO UPDATE SET key_text = excluded.key_text,
             action = excluded.action, record = excluded.record, run_id = excluded.run_id,
             payload = excluded.payload, state = 'claimed', claim_id = excluded.claim_id,
             lease_until_ms = excluded.lease_until_ms, fencing_token = excluded.fencing_token,
             updated_ms = excluded.updated_ms",
    )
    .at(at)?
    .execute(params![
        r.key_digest,
        r.key_text,
        r.action,
        r.record,
        run,
        r.fingerprint,
        payload,
        r.claim_id.to_string(),
        lease_until,
        token,
        r.now_ms,
    ])
    .at(at)?;
    Ok(Begin::Claimed(Claim {
        fencing_token: token as u64,
        takeover,
        previous_attempts: u32::try_from(previous_attempts).unwrap_or(u32::MAX),
    }))
}

/// Checks that `claim_id` still holds the key; returns the key's record and readable text.
fn held(
    c: &Connection,
    at: &Location,
    key_digest: &str,
    claim_id: Uuid,
    key_text: &str,
) -> Result<(String, String), StoreError> {
    let row = c
        .prepare_cached("SELECT state, claim_id, record, key_text FROM keys WHERE key_digest = ?1")
        .at(at)?
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
    match row {
        Some((state, Some(holder), record, text))
            if state == "claimed" && holder == claim_id.to_string() =>
        {
            Ok((record, text))
        }
        Some((_, _, _, text)) => Err(StoreError::ClaimLost { key: text }),
        None => Err(StoreError::ClaimLost {
            key: key_text.to_owned(),
        }),
    }
}

fn release_record(
    c: &Connection,
    at: &Location,
    record: &str,
    key_digest: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE records SET holder_digest = NULL, holder_key = NULL, lease_until_ms = NULL
         WHERE record = ?1 AND kind = 0 AND action = '' AND holder_digest = ?2",
    )
    .at(at)?
    .execute(params![record, key_digest])
    .at(at)?;
    Ok(())
}

/// Success of a claimed call; `result` and `entry`: the JSON of `d.result` and `d.entry`.
pub(crate) fn complete(
    c: &Connection,
    at: &Location,
    d: &Completion,
    result: &str,
    entry: &str,
) -> Result<LogEntry, StoreError> {
    // One statement checks the claim, stores the result and counts the attempt; the row it returns
    // is the claim that was held. No row: the claim is lost, and `held` says under which key text.
    let bump = i64::from(d.entry.attempt > 0 && d.entry.key_digest == d.key_digest);
    let claim = d.claim_id.to_string();
    let row = c
        .prepare_cached(
            "UPDATE keys SET state = 'completed', result = ?2, completed_at_ms = ?3, claim_id = NULL,
                 lease_until_ms = NULL, updated_ms = ?3, attempts = attempts + ?5
             WHERE key_digest = ?1 AND state = 'claimed' AND claim_id = ?4
             RETURNING record, key_text",
        )
        .at(at)?
        .query_row(
            params![d.key_digest, result, d.now_ms, claim, bump],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()
        .at(at)?;
    let (record, key_text) = match row {
        Some(r) => r,
        None => {
            held(c, at, &d.key_digest, d.claim_id, &d.entry.key_text)?;
            return Err(StoreError::ClaimLost {
                key: d.entry.key_text.to_string(),
            });
        }
    };
    c.prepare_cached(
        "INSERT INTO records (record, kind, action, key_text, key_digest, acted_at_ms)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET key_text = excluded.key_text,
             key_digest = excluded.key_digest, acted_at_ms = excluded.acted_at_ms",
    )
    .at(at)?
    .execute(params![
        d.record,
        d.action,
        key_text,
        d.key_digest,
        d.now_ms
    ])
    .at(at)?;
    if let Some(id) = d.replay_of {
        c.prepare_cached(
            "UPDATE queue SET status = 'replayed', closed_ms = ?2 WHERE id = ?1 AND status IN ('open', 'claimed')",
        )
        .at(at)?
        .execute(params![id as i64, d.now_ms])
        .at(at)?;
    }
    release_record(c, at, &record, &d.key_digest)?;
    append_entry(c, at, d.entry.clone(), bump == 0, Some(entry))
}

/// Whether queue entry `id` is still open or claimed (so its key may be replayed).
fn replayable(c: &Connection, at: &Location, id: i64) -> Result<bool, StoreError> {
    c.prepare_cached("SELECT 1 FROM queue WHERE id = ?1 AND status IN ('open', 'claimed')")
        .at(at)?
        .exists(params![id])
        .at(at)
}

/// A replay that failed again: the same entry takes the new failure and opens again.
fn refail_queue(
    c: &Connection,
    at: &Location,
    id: i64,
    q: &NewQueueEntry,
) -> Result<(), StoreError> {
    let stored: String = c
        .prepare_cached("SELECT entry FROM queue WHERE id = ?1")
        .at(at)?
        .query_row(params![id], |row| row.get(0))
        .at(at)?;
    let mut e: NewQueueEntry = from_json(at, "queue entry", &stored)?;
    e.kind = q.kind;
    e.name = q.name.clone();
    e.failure_kind = q.failure_kind;
    e.message = q.message.clone();
    e.attempts = e.attempts.saturating_add(q.attempts);
    e.last_failure_ms = q.last_failure_ms;
    c.prepare_cached(
        "UPDATE queue SET kind = ?2, name = ?3, status = 'open', closed_ms = NULL, entry = ?4 WHERE id = ?1",
    )
    .at(at)?
    .execute(params![id, e.kind.as_str(), e.name, to_json(&e)?])
    .at(at)?;
    Ok(())
}

/// An operator's change to a queue entry, with its log entry.
pub(crate) fn queue_update(
    c: &Connection,
    at: &Location,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let mut e = queue_entry(c, at, u.id)?
        .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", u.id)))?;
    u.op.check(&e)?;
    u.op.apply(&mut e, u.now_ms);
    c.prepare_cached(
        "UPDATE queue SET status = ?2, claimed_by = ?3, note = ?4, closed_ms = ?5 WHERE id = ?1",
    )
    .at(at)?
    .execute(params![
        e.id as i64,
        status_str(e.status),
        e.claimed_by,
        e.note,
        e.closed_ms
    ])
    .at(at)?;
    let mut entry = u.entry.clone();
    entry.queue_entry = Some(u.id);
    append(c, at, entry)?;
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
    let status = match state.as_str() {
        "claimed" => KeyStatus::Claimed,
        "completed" => KeyStatus::Completed,
        "failed" => KeyStatus::Failed,
        "released" => KeyStatus::Released,
        other => return Err(corrupt(at, "key", format!("state `{other}`"))),
    };
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

/// Terminal failure of a claimed call.
pub(crate) fn fail(c: &Connection, at: &Location, f: &Failure) -> Result<LogEntry, StoreError> {
    let (record, _) = held(c, at, &f.key_digest, f.claim_id, &f.entry.key_text)?;
    let mut entry = f.entry.clone();
    let bump = i64::from(entry.attempt > 0 && entry.key_digest == f.key_digest);
    let replayed = match f.replay_of {
        Some(id) => c
            .prepare_cached("SELECT 1 FROM queue WHERE id = ?1")
            .at(at)?
            .exists(params![id as i64])
            .at(at)?
            .then_some(id as i64),
        None => None,
    };
    let queue = match (&f.queue_entry, replayed) {
        (Some(q), Some(id)) => {
            refail_queue(c, at, id, q)?;
            Some(id)
        }
        (None, Some(id)) => Some(id),
        (Some(q), None) => Some(insert_queue(c, at, q, f.now_ms)?),
        (None, None) => None,
    };
    match queue {
        Some(id) => {
            c.prepare_cached(
                "UPDATE keys SET state = 'failed', queue_id = ?2, claim_id = NULL, lease_until_ms = NULL,
                     updated_ms = ?3, attempts = attempts + ?4
                 WHERE key_digest = ?1",
            )
            .at(at)?
            .execute(params![f.key_digest, id, f.now_ms, bump])
            .at(at)?;
            if f.queue_entry.is_some() {
                entry.queue_entry = Some(id as u64);
            }
        }
        None => {
            c.prepare_cached(
                "UPDATE keys SET state = 'released', claim_id = NULL, lease_until_ms = NULL,
                     updated_ms = ?2, attempts = attempts + ?3
                 WHERE key_digest = ?1",
            )
            .at(at)?
            .execute(params![f.key_digest, f.now_ms, bump])
            .at(at)?;
        }
    }
    release_record(c, at, &record, &f.key_digest)?;
    append_entry(c, at, entry, bump == 0, None)
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
    c: &Connection,
    at: &Location,
    entry: NewLogEntry,
) -> Result<LogEntry, StoreError> {
    append_entry(c, at, entry, true, None)
}

/// Appends one entry; `count_attempt`: whether an attempt (`attempt > 0`) still has to be counted on
/// its key (the completion and failure count it in their own update of the key); `json`: the entry's
/// JSON, if the caller has it already.
fn append_entry(
    c: &Connection,
    at: &Location,
    entry: NewLogEntry,
    count_attempt: bool,
    json: Option<&str>,
) -> Result<LogEntry, StoreError> {
    let head: Option<(i64, String)> = c
        .prepare_cached("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
        .at(at)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .at(at)?;
    let (seq, prev_hash) = match head {
        Some((seq, hash)) => (seq as u64 + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let e = LogEntry::chain_after(seq, prev_hash, entry);
    let json = match json {
        Some(j) => std::borrow::Cow::Borrowed(j),
        None => std::borrow::Cow::Owned(to_json(&e.entry)?),
    };
    c.prepare_cached(
        "INSERT INTO log (seq, at_ms, run_id, action, record, key_digest, attempt, outcome, entry,
             prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .at(at)?
    .execute(params![
        e.seq as i64,
        e.entry.at_ms,
        e.entry.run_id.to_string(),
        e.entry.action,
        e.entry.record,
        e.entry.key_digest,
        e.entry.attempt,
        e.entry.outcome.as_str(),
        json.as_ref(),
        e.prev_hash,
        e.hash,
    ])
    .at(at)?;
    if count_attempt && e.entry.attempt > 0 {
        // Kept on the key so that a takeover knows how many attempts the previous worker made.
        c.prepare_cached("UPDATE keys SET attempts = attempts + 1 WHERE key_digest = ?1")
            .at(at)?
            .execute(params![e.entry.key_digest])
            .at(at)?;
    }
    Ok(e)
}

/// Halts a run; `true` the first time.
pub(crate) fn halt(
    c: &Connection,
    at: &Location,
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
    let mut sql = String::from("SELECT seq, entry, prev_hash, hash FROM log WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut filter = |clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    use rusqlite::types::Value as V;
    if let Some(r) = q.run_id {
        filter("run_id =", V::Text(r.to_string()));
    }
    if let Some(a) = &q.action {
        filter("action =", V::Text(a.clone()));
    }
    if let Some(r) = &q.record {
        filter("record =", V::Text(r.clone()));
    }
    if let Some(o) = q.outcome {
        filter("outcome =", V::Text(o.as_str().to_owned()));
    }
    if let Some(t) = q.from_ms {
        filter("at_ms >=", V::Integer(t));
    }
    if let Some(t) = q.to_ms {
        filter("at_ms <", V::Integer(t));
    }
    if let Some(s) = q.after_seq {
        filter("seq >", V::Integer(i64::try_from(s).unwrap_or(i64::MAX)));
    }
    sql.push_str(" ORDER BY seq");
    if let Some(limit) = q.limit {
        sql.push_str(&format!(
            " LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
    }
    let mut stmt = c.prepare_cached(&sql).at(at)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .at(at)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, entry, prev_hash, hash) = row.at(at)?;
        out.push(LogEntry {
            seq: seq as u64,
            entry: from_json(at, "log entry", &entry)?,
            prev_hash: prev_hash.into(),
            hash: hash.into(),
        });
    }
    Ok(out)
}

fn queue_ref(c: &Connection, at: &Location, id: i64) -> Result<QueueRef, StoreError> {
    let (kind, name): (String, String) = c
        .prepare_cached("SELECT kind, name FROM queue WHERE id = ?1")
        .at(at)?
        .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .at(at)?
        .ok_or_else(|| corrupt(at, "failed key", format!("queue entry {id} is missing")))?;
    let kind =
        queue_kind(&kind).ok_or_else(|| corrupt(at, "queue entry", format!("kind `{kind}`")))?;
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
    let status = status_of(&status)
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
        filter("status", "=", status_str(s).to_owned().into());
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
