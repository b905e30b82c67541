//! The store's rules as SQL, one function per operation, each one short transaction (or one
//! statement). `@.` in a statement stands for the store's schema.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row, Transaction};
use uuid::Uuid;

use super::Server;
use super::schema::qualify;
use crate::log::{Column, LogEntry, LogHead, LogQuery, NewLogEntry, column_mismatch};
use crate::rules::{
    self, ActedView, CompletePlan, FailPlan, Holder, KeyPhase, KeyView, LeaseView, RecordView,
    Refusal,
};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, KeyState, KeyStatus, Millis, NewQueueEntry,
    QueueEntry, QueueKind, QueueQuery, QueueRef, QueueStatus, QueueUpdate, Renewal, RunState,
    StoreError, to_json,
};

type Param<'a> = &'a (dyn ToSql + Sync);

/// The statements a connection has prepared, by their unqualified text: each is prepared once per
/// connection, so an operation costs its statements' round trips and no more. The set is bounded:
/// the store's fixed statements and the combinations of the log query's filters.
#[derive(Default)]
pub(crate) struct Statements(Mutex<HashMap<String, tokio_postgres::Statement>>);

impl Statements {
    fn get(&self, sql: &str) -> Option<tokio_postgres::Statement> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .cloned()
    }

    fn put(&self, sql: &str, statement: tokio_postgres::Statement) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql.to_owned(), statement);
    }

    /// How many statements this connection has prepared.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The server and schema a statement runs against, and the connection's prepared statements:
/// qualifies and prepares statements, maps errors.
#[derive(Clone, Copy)]
struct Db<'a> {
    server: &'a Server,
    schema: &'a str,
    statements: &'a Statements,
}

impl Db<'_> {
    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        self.server.error(&e)
    }

    fn corrupt(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!(
            "schema `{}` on {} holds an unreadable {what} ({e}): restore it from a backup",
            self.schema, self.server
        ))
    }

    async fn prepare<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement);
        }
        let statement = c
            .prepare(&qualify(sql, self.schema))
            .await
            .map_err(|e| self.error(e))?;
        self.statements.put(sql, statement.clone());
        Ok(statement)
    }

    async fn opt<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query_opt(&stmt, params).await.map_err(|e| self.error(e))
    }

    async fn one<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query_one(&stmt, params).await.map_err(|e| self.error(e))
    }

    async fn all<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query(&stmt, params).await.map_err(|e| self.error(e))
    }

    async fn exec<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.execute(&stmt, params).await.map_err(|e| self.error(e))
    }

    /// Column `i` of `row`: a value of an unexpected type means the schema was altered.
    fn col<'r, T: tokio_postgres::types::FromSql<'r>>(
        &self,
        row: &'r Row,
        i: usize,
    ) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| self.corrupt("row", e))
    }

    /// A log row that disagrees with what was hashed: edited outside the store.
    fn tampered(&self, m: String) -> StoreError {
        StoreError::Corrupt(format!("schema `{}` on {}: {m}", self.schema, self.server))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, what: &str, s: &str) -> Result<T, StoreError> {
        crate::store::from_json(s, |e| self.corrupt(what, e))
    }

    /// A key's stored state, spelled as in the `state` column.
    fn key_status(&self, state: &str) -> Result<KeyStatus, StoreError> {
        KeyStatus::parse(state).ok_or_else(|| self.corrupt("key", format!("state `{state}`")))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Step 3 of the guarded call, in the documented order, in one transaction.
pub(crate) async fn begin(
    client: &mut Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    r: &BeginRequest,
) -> Result<Begin, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let answer = begin_in(db, &tx, r).await;
    // Only a claim changes anything; every other answer leaves the store as it was.
    finish(db, tx, answer, |a| matches!(a, Begin::Claimed(_))).await
}

/// Ends `tx`: commits if `result` is a change to keep, otherwise rolls back at once (rather than when
/// the connection is next used), so no lock outlives the operation.
async fn finish<T>(
    db: Db<'_>,
    tx: Transaction<'_>,
    result: Result<T, StoreError>,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T, StoreError> {
    match result {
        Ok(v) if keep(&v) => {
            tx.commit().await.map_err(|e| db.error(e))?;
            Ok(v)
        }
        Ok(v) => {
            tx.rollback().await.map_err(|e| db.error(e))?;
            Ok(v)
        }
        Err(e) => {
            // The operation's own error says more than a failed rollback would.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
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
    server: &Server,
    schema: &str,
    statements: &Statements,
    r: &Renewal,
) -> Result<Millis, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
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
    server: &Server,
    schema: &str,
    statements: &Statements,
    d: &Completion,
) -> Result<LogEntry, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
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
    server: &Server,
    schema: &str,
    statements: &Statements,
    f: &Failure,
) -> Result<LogEntry, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
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
    server: &Server,
    schema: &str,
    statements: &Statements,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let updated = queue_update_in(db, &tx, u).await;
    finish(db, tx, updated, |_| true).await
}

async fn queue_update_in(
    db: Db<'_>,
    tx: &Transaction<'_>,
    u: &QueueUpdate,
) -> Result<QueueEntry, StoreError> {
    let not_found = || StoreError::NotFound(format!("queue entry {}", u.id));
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

/// The stored state of one key. One statement.
pub(crate) async fn key_state(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    key_digest: &str,
) -> Result<Option<KeyState>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let Some(row) = db
        .opt(
            client,
            "SELECT action, key_text, record, fingerprint, payload, state, result, queue_id
             FROM @.keys WHERE key_digest = $1",
            &[&key_digest],
        )
        .await?
    else {
        return Ok(None);
    };
    let state: String = db.col(&row, 5)?;
    let status = db.key_status(&state)?;
    let payload: String = db.col(&row, 4)?;
    let result: Option<String> = db.col(&row, 6)?;
    let result = match (status, result) {
        (KeyStatus::Completed, Some(r)) => Some(db.json("stored result", &r)?),
        _ => None,
    };
    let queue_id: Option<i64> = db.col(&row, 7)?;
    let queue_entry = match (status, queue_id) {
        (KeyStatus::Failed, Some(id)) => {
            Some(u64::try_from(id).map_err(|e| db.corrupt("queue id", e))?)
        }
        _ => None,
    };
    Ok(Some(KeyState {
        action: db.col(&row, 0)?,
        key_text: db.col(&row, 1)?,
        record: db.col(&row, 2)?,
        fingerprint: db.col(&row, 3)?,
        payload: db.json("payload", &payload)?,
        status,
        result,
        queue_entry,
    }))
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

/// Appends one entry in its own transaction.
pub(crate) async fn append_log(
    client: &mut Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    entry: &NewLogEntry,
) -> Result<LogEntry, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let entry = append_in(db, &tx, entry.clone(), true).await;
    finish(db, tx, entry, |_| true).await
}

/// Appends `entry` after the head of the chain; `count_attempt`: count its attempt on its key
/// ([`rules::attempts_after_log`]), unless the same transaction ends the key's claim anyway. The head row stays locked until the transaction ends,
/// so concurrent appends (from any process) are totally ordered and each links to the one committed
/// before it.
async fn append_in(
    db: Db<'_>,
    tx: &Transaction<'_>,
    entry: NewLogEntry,
    count_attempt: bool,
) -> Result<LogEntry, StoreError> {
    if count_attempt && entry.attempt > 0 {
        // Counted on the key so that a takeover knows how far the previous worker got.
        let key = db
            .opt(
                tx,
                "SELECT state, attempts FROM @.keys WHERE key_digest = $1 FOR UPDATE",
                &[&entry.key_digest],
            )
            .await?;
        if let Some(key) = key {
            let state: String = db.col(&key, 0)?;
            let stored: i64 = db.col(&key, 1)?;
            let claimed = db.key_status(&state)? == KeyStatus::Claimed;
            let stored = u32::try_from(stored).unwrap_or(u32::MAX);
            if let Some(n) = rules::attempts_after_log(claimed, stored, entry.attempt) {
                db.exec(
                    tx,
                    "UPDATE @.keys SET attempts = $2 WHERE key_digest = $1",
                    &[&entry.key_digest, &i64::from(n)],
                )
                .await?;
            }
        }
    }
    let head = db
        .opt(tx, "SELECT seq, hash FROM @.log_head FOR UPDATE", &[])
        .await?
        .ok_or_else(|| db.corrupt("action log", "its head row is missing"))?;
    let seq: i64 = db.col(&head, 0)?;
    let prev_hash: String = db.col(&head, 1)?;
    let seq = u64::try_from(seq).map_err(|e| db.corrupt("action log head", e))? + 1;
    let e = LogEntry::chain_after(seq, prev_hash, entry);
    let seq = to_i64(e.seq);
    db.exec(
        tx,
        "WITH head AS (UPDATE @.log_head SET seq = $1, hash = $11)
         INSERT INTO @.log (seq, at_ms, run_id, action, record, key_digest, attempt, outcome, entry,
             prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &seq,
            &e.entry.at_ms,
            &e.entry.run_id.to_string(),
            &e.entry.action,
            &e.entry.record,
            &e.entry.key_digest,
            &i64::from(e.entry.attempt),
            &e.entry.outcome.as_str(),
            &to_json(&e.entry)?,
            &e.prev_hash,
            &e.hash,
        ],
    )
    .await?;
    Ok(e)
}

/// Halts a run; `true` the first time. One statement.
pub(crate) async fn halt(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    run_id: Uuid,
    reason: &str,
    now_ms: Millis,
) -> Result<bool, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
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

pub(crate) async fn run_state(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    run_id: Uuid,
) -> Result<RunState, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let row = db
        .opt(
            client,
            "SELECT reason, halted_at_ms FROM @.runs WHERE run_id = $1",
            &[&run_id.to_string()],
        )
        .await?;
    Ok(match row {
        Some(row) => RunState::Halted {
            reason: db.col(&row, 0)?,
            at_ms: db.col(&row, 1)?,
        },
        None => RunState::Active,
    })
}

pub(crate) async fn fencing_token(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    record: &str,
) -> Result<Option<u64>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    // A row with token 0 was created by a begin that did not claim: no token issued yet.
    let row = db
        .opt(
            client,
            "SELECT last_token FROM @.records WHERE record = $1 AND last_token > 0",
            &[&record],
        )
        .await?;
    row.map(|row| {
        let t: i64 = db.col(&row, 0)?;
        u64::try_from(t).map_err(|e| db.corrupt("fencing token", e))
    })
    .transpose()
}

/// A filter's value: the columns compared are text or bigint.
enum Arg {
    Text(String),
    Int(i64),
}

impl Arg {
    fn as_param(&self) -> Param<'_> {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }
}

/// Collects `AND <clause> $n` filters.
struct Filters {
    sql: String,
    args: Vec<Arg>,
}

impl Filters {
    fn new(select: &str) -> Filters {
        Filters {
            sql: format!("{select} WHERE TRUE"),
            args: Vec::new(),
        }
    }

    fn add(&mut self, clause: &str, v: Arg) {
        self.args.push(v);
        self.sql
            .push_str(&format!(" AND {clause} ${}", self.args.len()));
    }

    fn params(&self) -> Vec<Param<'_>> {
        self.args.iter().map(Arg::as_param).collect()
    }
}

pub(crate) async fn log(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    q: &LogQuery,
) -> Result<Vec<LogEntry>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    // The queryable columns come back too: a row is returned only if they agree with its entry.
    let mut f = Filters::new(
        "SELECT seq, entry, prev_hash, hash, run_id, action, record, key_digest, attempt, outcome, \
         at_ms FROM @.log",
    );
    if let Some(r) = q.run_id {
        f.add("run_id =", Arg::Text(r.to_string()));
    }
    if let Some(a) = &q.action {
        f.add("action =", Arg::Text(a.clone()));
    }
    if let Some(r) = &q.record {
        f.add("record =", Arg::Text(r.clone()));
    }
    if let Some(o) = q.outcome {
        f.add("outcome =", Arg::Text(o.as_str().to_owned()));
    }
    if let Some(t) = q.from_ms {
        f.add("at_ms >=", Arg::Int(t));
    }
    if let Some(t) = q.to_ms {
        f.add("at_ms <", Arg::Int(t));
    }
    if let Some(s) = q.after_seq {
        f.add("seq >", Arg::Int(to_i64(s)));
    }
    f.sql.push_str(" ORDER BY seq");
    if let Some(limit) = q.limit {
        f.sql.push_str(&format!(
            " LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
    }
    let rows = db.all(client, &f.sql, &f.params()).await?;
    rows.iter()
        .map(|row| {
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
        })
        .collect()
}

/// The last log row's sequence number and hash.
pub(crate) async fn log_head(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
) -> Result<Option<LogHead>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let Some(row) = db
        .opt(
            client,
            "SELECT seq, hash FROM @.log ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let seq: i64 = db.col(&row, 0)?;
    Ok(Some(LogHead {
        seq: seq as u64,
        hash: db.col(&row, 1)?,
    }))
}

/// Checks `log_head` against the log: the head the writers chain onto is the last entry, with its
/// hash. A log whose last entries were deleted (or a head edited) disagrees.
pub(crate) async fn check_log_head(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
) -> Result<(), StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    // One statement: one snapshot of both tables, whatever the writers commit meanwhile.
    let row = db
        .one(
            client,
            "SELECT h.seq, h.hash, (SELECT max(seq) FROM @.log),
                 (SELECT l.hash FROM @.log l WHERE l.seq = h.seq)
             FROM @.log_head h",
            &[],
        )
        .await?;
    let head_seq: i64 = db.col(&row, 0)?;
    let head_hash: String = db.col(&row, 1)?;
    let last: Option<i64> = db.col(&row, 2)?;
    let hash_there: Option<String> = db.col(&row, 3)?;
    let last = last.unwrap_or(0);
    if head_seq != last {
        return Err(db.tampered(format!(
            "the chain head (`log_head`) is entry {head_seq} but the log ends at entry {last}: \
             entries were deleted from its end, or the head was edited"
        )));
    }
    if last > 0 && hash_there.as_deref() != Some(head_hash.as_str()) {
        return Err(db.tampered(format!(
            "the chain head (`log_head`) does not have the hash of log entry {head_seq}: the entry \
             or the head was edited"
        )));
    }
    Ok(())
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

const QUEUE_COLUMNS: &str =
    "SELECT id, status, created_ms, entry, claimed_by, note, closed_ms FROM @.queue";

fn queue_row(db: Db<'_>, row: &Row) -> Result<QueueEntry, StoreError> {
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

pub(crate) async fn queue_entries(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    q: &QueueQuery,
) -> Result<Vec<QueueEntry>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let mut f = Filters::new(QUEUE_COLUMNS);
    if let Some(k) = q.kind {
        f.add("kind =", Arg::Text(k.as_str().to_owned()));
    }
    if let Some(n) = &q.name {
        f.add("name =", Arg::Text(n.clone()));
    }
    if let Some(a) = &q.action {
        f.add("action =", Arg::Text(a.clone()));
    }
    if let Some(s) = q.status {
        f.add("status =", Arg::Text(s.as_str().to_owned()));
    }
    if let Some(r) = q.run_id {
        f.add("run_id =", Arg::Text(r.to_string()));
    }
    if let Some(t) = q.older_than_ms {
        f.add("created_ms <=", Arg::Int(t));
    }
    if let Some(t) = q.newer_than_ms {
        f.add("created_ms >=", Arg::Int(t));
    }
    f.sql.push_str(" ORDER BY id");
    let rows = db.all(client, &f.sql, &f.params()).await?;
    rows.iter().map(|row| queue_row(db, row)).collect()
}

pub(crate) async fn queue_entry(
    client: &Client,
    server: &Server,
    schema: &str,
    statements: &Statements,
    id: u64,
) -> Result<Option<QueueEntry>, StoreError> {
    let db = Db {
        server,
        schema,
        statements,
    };
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let row = db
        .opt(client, &format!("{QUEUE_COLUMNS} WHERE id = $1"), &[&id])
        .await?;
    row.map(|row| queue_row(db, &row)).transpose()
}
