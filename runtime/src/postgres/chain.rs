//! The action log's hash chain: appends under the head's row lock, reads checked against what was
//! hashed, and the check of the head against the log.

use tokio_postgres::{Client, Transaction};

use super::rows::log_row;
use super::statements::{Arg, Db, Filters, finish, to_i64};
use crate::log::{LogEntry, LogHead, LogQuery, NewLogEntry};
use crate::rules;
use crate::store::{KeyStatus, StoreError, to_json};

/// Appends one entry in its own transaction.
pub(crate) async fn append_log(
    client: &mut Client,
    db: Db<'_>,
    entry: &NewLogEntry,
) -> Result<LogEntry, StoreError> {
    let tx = client.transaction().await.map_err(|e| db.error(e))?;
    let entry = append_in(db, &tx, entry.clone(), true).await;
    finish(db, tx, entry, |_| true).await
}

/// Appends `entry` after the head of the chain; `count_attempt`: count its attempt on its key
/// ([`rules::attempts_after_log`]), unless the same transaction ends the key's claim anyway. The head row stays locked until the transaction ends,
/// so concurrent appends (from any process) are totally ordered and each links to the one committed
/// before it.
pub(super) async fn append_in(
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

pub(crate) async fn log(
    client: &Client,
    db: Db<'_>,
    q: &LogQuery,
) -> Result<Vec<LogEntry>, StoreError> {
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
    rows.iter().map(|row| log_row(db, row)).collect()
}

/// The last log row's sequence number and hash.
pub(crate) async fn log_head(client: &Client, db: Db<'_>) -> Result<Option<LogHead>, StoreError> {
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
pub(crate) async fn check_log_head(client: &Client, db: Db<'_>) -> Result<(), StoreError> {
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
