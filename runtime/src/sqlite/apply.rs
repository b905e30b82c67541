//! The writes, one function per operation: each loads the views the rulebook ([`rules`]) asks for,
//! asks it, and applies its plan. Writes run inside the writer's transaction, and each makes all its
//! checks before its first change (the writer relies on it: a request that fails after a change
//! poisons its batch).

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::hot::Hot;
use super::reads::queue_entry;
use super::rows::{Ctx, KeyRow, RecordRow, corrupt, from_json, key_status, to_json};
use super::schema::Location;
use super::statements::Prepared;
use crate::log::{GENESIS_HASH, LogEntry, NewLogEntry, canonical_json, entry_hash_canonical};
use crate::rules::{
    self, ActedView, CompletePlan, FailPlan, Holder, KeyPhase, KeyView, LeaseView, RecordView,
    Refusal,
};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, KeyStatus, Millis, NewQueueEntry, QueueEntry,
    QueueKind, QueueRef, QueueStatus, QueueUpdate, Renewal, StoreError,
};

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
        .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", u.id).into()))?;
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
