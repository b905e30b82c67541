//! The store's writes as SQL, one function per operation, each one short transaction (or one
//! statement): load the views, ask [`rules`](crate::rules), apply the plan.

use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::chain::append_in;
use super::rows::{QUEUE_COLUMNS, queue_row};
use super::statements::{Db, finish, to_i64};
use crate::log::LogEntry;
use crate::rules::{
    self, ActedView, CompletePlan, FailPlan, Holder, KeyPhase, KeyView, LeaseView, RecordView,
    Refusal,
};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, KeyStatus, Millis, NewQueueEntry, QueueEntry,
    QueueKind, QueueRef, QueueStatus, QueueUpdate, Renewal, StoreError, to_json,
};

/// Step 3 of the guarded call, in the documented order, in one transaction.
pub(crate) async fn begin(
    client: &mut Client,
    db: Db<'_>,
    r: &BeginRequest,
) -> Result<Begin, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let answer = begin_in(db, &tx, r).await;
    // Only a claim changes anything; every other answer leaves the store as it was.
    finish(db, tx, answer, |a| matches!(a, Begin::Claimed(_))).await
}

async fn begin_in(db: Db<'_>, tx: &Transaction<'_>, r: &BeginRequest) -> Result<Begin, StoreError> {
    let run = r.run_id.to_string();
    // The key lock first, in its own statement, so that every read below sees what the previous
    // holder of the lock committed. It serializes begins of the same key, even before the key has a row.
    let lock = format!("{}:{}", db.schema, r.key_digest);
    db.exec(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock],
    )
    .await?;
    let halted = db
        .opt(tx, "SELECT 1 FROM @.runs WHERE run_id = $1", &[&run])
        .await?
        .is_some();
    if halted {
        return Ok(Begin::Halted);
    }

    let key = db
        .opt(
            tx,
            "SELECT state, fingerprint, lease_until_ms, result, completed_at_ms, queue_id, attempts
             FROM @.keys WHERE key_digest = $1 FOR UPDATE",
            &[&r.key_digest],
        )
        .await?;
    let fingerprint: Option<String> = key.as_ref().map(|k| db.col(k, 1)).transpose()?;
    let view = match &key {
        Some(k) => {
            let state: String = db.col(k, 0)?;
            let phase = match db.key_status(&state)? {
                KeyStatus::Claimed => {
                    let until: Option<Millis> = db.col(k, 2)?;
                    KeyPhase::Claimed {
                        lease_until_ms: until.unwrap_or(Millis::MIN),
                    }
                }
                KeyStatus::Completed => KeyPhase::Completed,
                KeyStatus::Failed => {
                    let id: Option<i64> = db.col(k, 5)?;
                    let id =
                        id.ok_or_else(|| db.corrupt("failed key", "it names no queue entry"))?;
                    let entry = u64::try_from(id).map_err(|e| db.corrupt("queue id", e))?;
                    let entry_replayable = rules::replays(r, entry)
                        && queue_status(db, tx, id)
                            .await?
                            .is_some_and(rules::replayable);
                    KeyPhase::Failed {
                        entry,
                        entry_replayable,
                    }
                }
                KeyStatus::Released => KeyPhase::Released,
            };
            let attempts: i64 = db.col(k, 6)?;
            Some(KeyView {
                fingerprint: rules::stored_fingerprint(fingerprint.as_deref().unwrap_or_default()),
                phase,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            })
        }
        None => None,
    };
    let grant = match rules::begin_key(r, halted, view) {
        Ok(grant) => grant,
        Err(Refusal::Completed) => {
            let k = key.as_ref().expect("a completed key is stored");
            let result: Option<String> = db.col(k, 3)?;
            let result = db.json("stored result", result.as_deref().unwrap_or("null"))?;
            let completed_at_ms: Option<Millis> = db.col(k, 4)?;
            return Ok(Begin::Completed {
                result,
                completed_at_ms: completed_at_ms.unwrap_or_default(),
            });
        }
        Err(Refusal::Failed { entry }) => {
            return Ok(Begin::Failed {
                entry: queue_ref(db, tx, to_i64(entry)).await?,
            });
        }
        Err(refusal) => return Ok(refusal.answer().expect("a refusal without stored data")),
    };

    // Creates the record's row if needed and locks it either way: claims on one record are serialized.
    let record = db
        .one(
            tx,
            "INSERT INTO @.records AS rec (record, last_token) VALUES ($1, 0)
             ON CONFLICT (record) DO UPDATE SET last_token = rec.last_token
             RETURNING holder_digest, holder_key, lease_until_ms, last_token",
            &[&r.record],
        )
        .await?;
    let holder: Option<String> = db.col(&record, 0)?;
    let holder_key: Option<String> = db.col(&record, 1)?;
    let until: Option<Millis> = db.col(&record, 2)?;
    let last_token: i64 = db.col(&record, 3)?;
    let record_view = RecordView {
        last_token: u64::try_from(last_token).map_err(|e| db.corrupt("fencing token", e))?,
        lease: match (&holder, until) {
            (Some(holder), Some(until)) => Some(LeaseView {
                holder_digest: holder,
                holder_key: holder_key.as_deref().unwrap_or_default(),
                until_ms: until,
            }),
            _ => None,
        },
    };
    let acted = match r.dedup_ms {
        Some(_) => {
            db.opt(
                tx,
                "SELECT key_text, key_digest, acted_at_ms FROM @.acted WHERE record = $1 AND action = $2",
                &[&r.record, &r.action],
            )
            .await?
        }
        None => None,
    };
    let acted = match &acted {
        Some(a) => Some((
            db.col::<String>(a, 0)?,
            db.col::<String>(a, 1)?,
            db.col::<Millis>(a, 2)?,
        )),
        None => None,
    };
    let acted_view = acted.as_ref().map(|(key_text, digest, at_ms)| ActedView {
        key_digest: digest,
        key_text,
        at_ms: *at_ms,
    });
    let plan = match rules::begin_record(r, grant, Some(record_view), acted_view) {
        Ok(plan) => plan,
        Err(refusal) => return Ok(refusal.answer().expect("a record refusal")),
    };

    let payload = r.payload.as_str();
    let claim_id = r.claim_id.to_string();
    db.exec(
        tx,
        "WITH rec AS (
             UPDATE @.records SET last_token = $11::bigint, holder_digest = $2::text,
                 holder_key = $3::text, lease_until_ms = $4::bigint
             WHERE record = $1::text
             RETURNING last_token
         )
         INSERT INTO @.keys AS k (key_digest, key_text, action, record, run_id, fingerprint, payload,
             state, claim_id, lease_until_ms, fencing_token, attempts, updated_ms)
         SELECT $2::text, $3::text, $5::text, $1::text, $6::text, $7::text, $8::text, 'claimed',
             $9::text, $4::bigint, rec.last_token, $12::bigint, $10::bigint
         FROM rec
         ON CONFLICT (key_digest) DO UPDATE SET key_text = excluded.key_text,
             action = excluded.action, record = excluded.record, run_id = excluded.run_id,
             fingerprint = excluded.fingerprint, payload = excluded.payload, state = 'claimed',
             claim_id = excluded.claim_id, lease_until_ms = excluded.lease_until_ms,
             fencing_token = excluded.fencing_token, attempts = excluded.attempts,
             updated_ms = excluded.updated_ms",
        &[
            &r.record,
            &r.key_digest,
            &r.key_text,
            &plan.lease_until_ms,
            &r.action,
            &run,
            &r.fingerprint,
            &payload,
            &claim_id,
            &r.now_ms,
            &to_i64(plan.fencing_token),
            &i64::from(plan.attempts),
        ],
    )
    .await?;
    Ok(Begin::Claimed(plan.claim))
}

/// The status of queue entry `id`, if it exists.
async fn queue_status(
    db: Db<'_>,
    tx: &Transaction<'_>,
    id: i64,
) -> Result<Option<QueueStatus>, StoreError> {
    let row = db
        .opt(tx, "SELECT status FROM @.queue WHERE id = $1", &[&id])
        .await?;
    match row {
        Some(row) => {
            let status: String = db.col(&row, 0)?;
            QueueStatus::parse(&status)
                .map(Some)
                .ok_or_else(|| db.corrupt("queue entry", format!("status `{status}`")))
        }
        None => Ok(None),
    }
}

/// Checks by [`rules::check_claim`] that `claim_id` still holds the key, locking its row until the
/// transaction ends; returns the key's record.
async fn held(
    db: Db<'_>,
    tx: &Transaction<'_>,
    key_digest: &str,
    claim_id: Uuid,
    key_text: &str,
) -> Result<String, StoreError> {
    let row = db
        .opt(
            tx,
            "SELECT state, claim_id, record, key_text FROM @.keys WHERE key_digest = $1 FOR UPDATE",
            &[&key_digest],
        )
        .await?;
    let (claimed_by, record, text) = match row {
        Some(row) => {
            let state: String = db.col(&row, 0)?;
            let holder: Option<String> = db.col(&row, 1)?;
            let claimed_by = match (db.key_status(&state)?, holder) {
                (KeyStatus::Claimed, Some(h)) => {
                    Some(Uuid::parse_str(&h).map_err(|e| db.corrupt("key claim", e))?)
                }
                _ => None,
            };
            (claimed_by, db.col(&row, 2)?, db.col(&row, 3)?)
        }
        None => (None, String::new(), key_text.to_owned()),
    };
    rules::check_claim(claimed_by, claim_id, &text)?;
    Ok(record)
}

/// A live call's renewal ([`rules::renew`]), in one transaction holding the key's row lock.
pub(crate) async fn renew(
    client: &mut Client,
    db: Db<'_>,
    r: &Renewal,
) -> Result<Millis, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let renewed = renew_in(db, &tx, r).await;
    finish(db, tx, renewed, |_| true).await
}

async fn renew_in(db: Db<'_>, tx: &Transaction<'_>, r: &Renewal) -> Result<Millis, StoreError> {
    let row = db
        .opt(
            tx,
            "SELECT state, claim_id FROM @.keys WHERE key_digest = $1 FOR UPDATE",
            &[&r.key_digest],
        )
        .await?;
    let claimed_by = match &row {
        Some(row) => {
            let state: String = db.col(row, 0)?;
            let holder: Option<String> = db.col(row, 1)?;
            match (db.key_status(&state)?, holder) {
                (KeyStatus::Claimed, Some(h)) => {
                    Some(Uuid::parse_str(&h).map_err(|e| db.corrupt("key claim", e))?)
                }
                _ => None,
            }
        }
        None => None,
    };
    let until = rules::renew(claimed_by, r.claim_id, &r.key_text, r.now_ms, r.lease_ms)?;
    db.exec(
        tx,
        "WITH rec AS (
             UPDATE @.records SET lease_until_ms = $2 WHERE record = $3 AND holder_digest = $1
         )
         UPDATE @.keys SET lease_until_ms = $2, updated_ms = $4 WHERE key_digest = $1",
        &[&r.key_digest, &until, &r.record, &r.now_ms],
    )
    .await?;
    Ok(until)
}

/// Releases the record's lease if `key_digest` holds it.
const RELEASE_RECORD: &str = "UPDATE @.records SET holder_digest = NULL, holder_key = NULL,
         lease_until_ms = NULL
     WHERE record = $1 AND holder_digest = $2";

/// Success of a claimed call, in one transaction.
pub(crate) async fn complete(
    client: &mut Client,
    db: Db<'_>,
    d: &Completion,
) -> Result<LogEntry, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let entry = complete_in(db, &tx, d).await;
    finish(db, tx, entry, |_| true).await
}

async fn complete_in(
    db: Db<'_>,
    tx: &Transaction<'_>,
    d: &Completion,
) -> Result<LogEntry, StoreError> {
    let result = to_json(&d.result)?;
    // The key as `complete` sees it, locked; a completed key keeps the id of the claim that completed
    // it.
    let row = db
        .opt(
            tx,
            "SELECT state, claim_id, CASE WHEN state = 'completed' THEN result END, key_text, record
             FROM @.keys WHERE key_digest = $1 FOR UPDATE",
            &[&d.key_digest],
        )
        .await?;
    let (holder, key_text, record) = match &row {
        Some(row) => {
            let state: String = db.col(row, 0)?;
            let claim: Option<String> = db.col(row, 1)?;
            let stored: Option<String> = db.col(row, 2)?;
            let claim = claim
                .map(|c| Uuid::parse_str(&c).map_err(|e| db.corrupt("key claim", e)))
                .transpose()?;
            let holder = match (db.key_status(&state)?, claim) {
                (KeyStatus::Claimed, Some(c)) => Holder::Claimed(c),
                (KeyStatus::Completed, by) => {
                    Holder::Completed(by, stored.as_deref() == Some(&result))
                }
                _ => Holder::Other,
            };
            (holder, db.col::<String>(row, 3)?, db.col::<String>(row, 4)?)
        }
        None => (Holder::Other, d.entry.key_text.to_string(), String::new()),
    };
    if rules::complete(holder, d.claim_id, &key_text)? == CompletePlan::AlreadyDone {
        let row = db
            .opt(
                tx,
                "SELECT seq, entry, prev_hash, hash FROM @.log
                 WHERE key_digest = $1 AND outcome IN ('succeeded', 'compensated')
                 ORDER BY seq DESC LIMIT 1",
                &[&d.key_digest],
            )
            .await?
            .ok_or_else(|| {
                db.corrupt(
                    "log",
                    format!("key `{key_text}` completed without a log entry"),
                )
            })?;
        let seq: i64 = db.col(&row, 0)?;
        let entry: String = db.col(&row, 1)?;
        return Ok(LogEntry {
            seq: u64::try_from(seq).map_err(|e| db.corrupt("log entry", e))?,
            entry: db.json(&format!("log entry {seq}"), &entry)?,
            prev_hash: db.col(&row, 2)?,
            hash: db.col(&row, 3)?,
        });
    }
    db.exec(
        tx,
        "UPDATE @.keys SET state = 'completed', result = $2, completed_at_ms = $3,
             lease_until_ms = NULL, updated_ms = $3
         WHERE key_digest = $1",
        &[&d.key_digest, &result, &d.now_ms],
    )
    .await?;
    db.exec(
        tx,
        "INSERT INTO @.acted (record, action, key_text, key_digest, acted_at_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (record, action) DO UPDATE SET key_text = excluded.key_text,
             key_digest = excluded.key_digest, acted_at_ms = excluded.acted_at_ms",
        &[&d.record, &d.action, &key_text, &d.key_digest, &d.now_ms],
    )
    .await?;
    if let Some(id) = d.replay_of.and_then(|id| i64::try_from(id).ok())
        && queue_status(db, tx, id)
            .await?
            .is_some_and(rules::replayable)
    {
        db.exec(
            tx,
            "UPDATE @.queue SET status = $2, closed_ms = $3 WHERE id = $1",
            &[&id, &QueueStatus::Replayed.as_str(), &d.now_ms],
        )
        .await?;
    }
    db.exec(tx, RELEASE_RECORD, &[&record, &d.key_digest])
        .await?;
    append_in(db, tx, d.entry.clone(), false).await
}

/// Terminal failure of a claimed call, in one transaction.
pub(crate) async fn fail(
    client: &mut Client,
    db: Db<'_>,
    f: &Failure,
) -> Result<LogEntry, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let entry = fail_in(db, &tx, f).await;
    finish(db, tx, entry, |_| true).await
}

async fn fail_in(db: Db<'_>, tx: &Transaction<'_>, f: &Failure) -> Result<LogEntry, StoreError> {
    let record = held(db, tx, &f.key_digest, f.claim_id, &f.entry.key_text).await?;
    // The entry a replay came from, if it exists (queue entries are never deleted).
    let replayed = match f.replay_of.and_then(|id| i64::try_from(id).ok()) {
        Some(id) => queue_status(db, tx, id).await?.map(|_| id),
        None => None,
    };
    let mut entry = f.entry.clone();
    let plan = rules::fail(
        f.queue_entry.is_some(),
        replayed.and_then(|id| u64::try_from(id).ok()),
    );
    let queue = match (plan, &f.queue_entry) {
        (FailPlan::Refail { entry: id }, Some(q)) => {
            refail_queue(db, tx, to_i64(id), q).await?;
            entry.queue_entry = Some(id);
            Some(to_i64(id))
        }
        (FailPlan::Return { entry: id }, _) => Some(to_i64(id)),
        (FailPlan::Open, Some(q)) => {
            let id = insert_queue(db, tx, q, f.now_ms).await?;
            entry.queue_entry = Some(u64::try_from(id).map_err(|e| db.corrupt("queue id", e))?);
            Some(id)
        }
        _ => None,
    };
    match queue {
        Some(id) => {
            db.exec(
                tx,
                "UPDATE @.keys SET state = 'failed', queue_id = $2, claim_id = NULL,
                     lease_until_ms = NULL, updated_ms = $3
                 WHERE key_digest = $1",
                &[&f.key_digest, &id, &f.now_ms],
            )
            .await?;
        }
        None => {
            db.exec(
                tx,
                "UPDATE @.keys SET state = 'released', claim_id = NULL, lease_until_ms = NULL,
                     updated_ms = $2
                 WHERE key_digest = $1",
                &[&f.key_digest, &f.now_ms],
            )
            .await?;
        }
    }
    db.exec(tx, RELEASE_RECORD, &[&record, &f.key_digest])
        .await?;
    append_in(db, tx, entry, false).await
}

/// A replay that failed again: entry `id` takes the failure ([`rules::refail`]).
async fn refail_queue(
    db: Db<'_>,
    tx: &Transaction<'_>,
    id: i64,
    q: &NewQueueEntry,
) -> Result<(), StoreError> {
    let row = db
        .one(
            tx,
            &format!("{QUEUE_COLUMNS} WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?;
    let mut e = queue_row(db, &row)?;
    rules::refail(&mut e, q);
    db.exec(
        tx,
        "UPDATE @.queue SET kind = $2, name = $3, status = $4, claimed_by = $5, note = $6,
             closed_ms = $7, entry = $8
         WHERE id = $1",
        &[
            &id,
            &e.kind.as_str(),
            &e.name,
            &e.status.as_str(),
            &e.claimed_by,
            &e.note,
            &e.closed_ms,
            &to_json(&e.failure())?,
        ],
    )
    .await?;
    Ok(())
}

/// An operator's change to a queue entry with its log entry, in one transaction.
pub(crate) async fn queue_update(
    client: &mut Client,
    db: Db<'_>,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let updated = queue_update_in(db, &tx, u).await;
    finish(db, tx, updated, |_| true).await
}

async fn queue_update_in(
    db: Db<'_>,
    tx: &Transaction<'_>,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let not_found = || StoreError::NotFound(format!("queue entry {}", u.id).into());
    let id = i64::try_from(u.id).map_err(|_| not_found())?;
    // The entry's row lock serializes operators (and replays) on it until the transaction ends.
    let row = db
        .opt(
            tx,
            &format!("{QUEUE_COLUMNS} WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?;
    let mut e = queue_row(db, &row)?;
    u.op.check(&e)?;
    u.op.apply(&mut e, u.now_ms);
    let key = db
        .opt(
            tx,
            "SELECT state, queue_id FROM @.keys WHERE key_digest = $1 FOR UPDATE",
            &[&e.key_digest],
        )
        .await?;
    let key = match &key {
        Some(row) => {
            let state: String = db.col(row, 0)?;
            let queue_id: Option<i64> = db.col(row, 1)?;
            Some((
                db.key_status(&state)?,
                queue_id.and_then(|id| u64::try_from(id).ok()),
            ))
        }
        None => None,
    };
    if rules::releases_key(&u.op, key, u.id) {
        db.exec(
            tx,
            "UPDATE @.keys SET state = 'released', fingerprint = $2, claim_id = NULL,
                 lease_until_ms = NULL, updated_ms = $3
             WHERE key_digest = $1",
            &[&e.key_digest, &rules::RELEASED_FINGERPRINT, &u.now_ms],
        )
        .await?;
    }
    db.exec(
        tx,
        "UPDATE @.queue SET status = $2, claimed_by = $3, note = $4, closed_ms = $5 WHERE id = $1",
        &[
            &id,
            &e.status.as_str(),
            &e.claimed_by,
            &e.note,
            &e.closed_ms,
        ],
    )
    .await?;
    let mut entry = u.entry.clone();
    entry.queue_entry = Some(u.id);
    append_in(db, tx, entry, true).await?;
    Ok(e)
}

async fn insert_queue(
    db: Db<'_>,
    tx: &Transaction<'_>,
    q: &NewQueueEntry,
    now_ms: Millis,
) -> Result<i64, StoreError> {
    let row = db
        .one(
            tx,
            "INSERT INTO @.queue (kind, name, action, run_id, status, created_ms, entry)
             VALUES ($1, $2, $3, $4, 'open', $5, $6) RETURNING id",
            &[
                &q.kind.as_str(),
                &q.name,
                &q.action,
                &q.run_id.to_string(),
                &now_ms,
                &to_json(q)?,
            ],
        )
        .await?;
    db.col(&row, 0)
}

async fn queue_ref<C: GenericClient>(db: Db<'_>, c: &C, id: i64) -> Result<QueueRef, StoreError> {
    let row = db
        .opt(c, "SELECT kind, name FROM @.queue WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| db.corrupt("failed key", format!("queue entry {id} is missing")))?;
    let kind: String = db.col(&row, 0)?;
    let kind = QueueKind::parse(&kind)
        .ok_or_else(|| db.corrupt("queue entry", format!("kind `{kind}`")))?;
    Ok(QueueRef {
        id: u64::try_from(id).map_err(|e| db.corrupt("queue id", e))?,
        kind,
        name: db.col(&row, 1)?,
    })
}

/// Halts a run; `true` the first time. One statement.
pub(crate) async fn halt(
    client: &Client,
    db: Db<'_>,
    run_id: Uuid,
    reason: &str,
    now_ms: Millis,
) -> Result<bool, StoreError> {
    let n = db
        .exec(
            client,
            "INSERT INTO @.runs (run_id, reason, halted_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (run_id) DO NOTHING",
            &[&run_id.to_string(), &reason, &now_ms],
        )
        .await?;
    Ok(n == 1)
}
