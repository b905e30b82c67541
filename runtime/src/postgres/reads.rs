//! The store's reads other than the log's, one statement each: a key's state, a run's, a record's
//! fencing token, queue entries.

use tokio_postgres::Client;
use uuid::Uuid;

use super::rows::{QUEUE_COLUMNS, queue_row};
use super::statements::{Arg, Db, Filters};
use crate::store::{KeyState, KeyStatus, QueueEntry, QueueQuery, RunState, StoreError};

/// The stored state of one key. One statement.
pub(crate) async fn key_state(
    client: &Client,
    db: Db<'_>,
    key_digest: &str,
) -> Result<Option<KeyState>, StoreError> {
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

pub(crate) async fn run_state(
    client: &Client,
    db: Db<'_>,
    run_id: Uuid,
) -> Result<RunState, StoreError> {
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
    db: Db<'_>,
    record: &str,
) -> Result<Option<u64>, StoreError> {
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

pub(crate) async fn queue_entries(
    client: &Client,
    db: Db<'_>,
    q: &QueueQuery,
) -> Result<Vec<QueueEntry>, StoreError> {
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
    db: Db<'_>,
    id: u64,
) -> Result<Option<QueueEntry>, StoreError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let row = db
        .opt(client, &format!("{QUEUE_COLUMNS} WHERE id = $1"), &[&id])
        .await?;
    row.map(|row| queue_row(db, &row)).transpose()
}
