//! A worker process for the cross-process PostgreSQL tests: it drives the `Store` trait exactly as the
//! guarded call does (begin → downstream write → complete) against a shared schema, and writes to a
//! simulated downstream in the same database (tables `effects`, `in_flight`, `fence` of the schema).
//!
//! Usage: `pg_worker <mode> <schema> <writer> <run-id> [mode arguments]`, server from `ACTGUARD_PG_URL`.
//!
//! - `contend <records> <keys>`: acts once on every key `k<i>` (record `r<i mod records>`), retrying
//!   keys that are in progress or whose record is busy, until every key is completed.
//! - `loop_filter`: begins its own key on record `shared`, with a one-day dedup window, until it either
//!   acts or is skipped; prints `ACTED` or `SKIPPED`.
//! - `until_halt <halt_after>`: acts on fresh keys until a begin answers `Halted` (prints `SAW_HALT`);
//!   with `halt_after > 0`, halts the run itself after that many actions (prints `HALTED_AT <µs>`).
//! - `claim <key> <record> <lease_ms> <clock_offset_ms>`: one begin (its clock shifted by the offset),
//!   prints `CLAIMED <token> <takeover>` or the answer, then obeys stdin lines: `write` (downstream
//!   write with its token: `WRITE accepted|stale`), `complete` (`COMPLETE ok|claim_lost|error ...`).
//!
//! Exit codes: 0 done, 2 usage, 3 two writers overlapped at the downstream, 4 a store error, 5 timeout.

use std::io::BufRead;
use std::process::exit;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actguard::log::{NewLogEntry, Outcome};
use actguard::store::{Begin, BeginRequest, Completion, Millis};
use actguard::{PostgresStore, Store, StoreError};
use tokio_postgres::Client;
use uuid::Uuid;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}

fn now_ms() -> Millis {
    now_us() / 1000
}

fn url() -> String {
    std::env::var(PostgresStore::URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    eprintln!("pg_worker: {msg}");
    exit(code)
}

struct Worker {
    store: PostgresStore,
    db: Client,
    schema: String,
    writer: String,
    run: Uuid,
}

fn request(w: &Worker, key: &str, record: &str, now_ms: Millis, lease_ms: Millis) -> BeginRequest {
    BeginRequest {
        run_id: w.run,
        lease_ms,
        ..actguard_tests::begin_request("ship", key, record, now_ms)
    }
}

fn completion(w: &Worker, r: &BeginRequest, token: u64, now_ms: Millis) -> Completion {
    Completion {
        key_digest: r.key_digest.clone(),
        claim_id: r.claim_id,
        action: r.action.clone(),
        record: r.record.clone(),
        result: serde_json::json!({ "writer": w.writer }),
        entry: NewLogEntry {
            at_ms: now_ms,
            run_id: r.run_id,
            action: r.action.clone(),
            record: r.record.clone(),
            key_text: r.key_text.clone(),
            key_digest: r.key_digest.clone(),
            attempt: 1,
            retry: false,
            outcome: Outcome::Succeeded,
            failure_kind: None,
            route: None,
            message: None,
            queue_entry: None,
            before: None,
            after: Some(serde_json::json!({ "writer": w.writer })),
            fencing_token: Some(token),
            duration_ms: 0,
        },
        now_ms,
        replay_of: None,
    }
}

/// The simulated downstream: marks the record in flight (a second concurrent writer violates the
/// primary key: an overlap), works briefly, then records the effect unless a higher fencing token was
/// already seen for the record. Returns whether the write was accepted.
async fn downstream(w: &Worker, record: &str, key: &str, token: u64, started_us: i64) -> bool {
    let s = &w.schema;
    if let Err(e) =
        w.db.execute(
            &format!("INSERT INTO {s}.in_flight (record, writer) VALUES ($1, $2)"),
            &[&record, &w.writer],
        )
        .await
    {
        die(3, format!("OVERLAP on {record}: {e}"));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    let token = token as i64;
    let accepted = fenced_write(w, record, key, token, started_us)
        .await
        .unwrap_or_else(|e| die(4, format!("downstream write failed: {e}")));
    w.db.execute(
        &format!("DELETE FROM {s}.in_flight WHERE record = $1 AND writer = $2"),
        &[&record, &w.writer],
    )
    .await
    .unwrap_or_else(|e| die(4, e));
    accepted
}

async fn fenced_write(
    w: &Worker,
    record: &str,
    key: &str,
    token: i64,
    started_us: i64,
) -> Result<bool, tokio_postgres::Error> {
    let s = &w.schema;
    w.db.batch_execute("BEGIN").await?;
    w.db.execute(
        &format!("INSERT INTO {s}.fence (record, max_token) VALUES ($1, 0) ON CONFLICT DO NOTHING"),
        &[&record],
    )
    .await?;
    let max: i64 =
        w.db.query_one(
            &format!("SELECT max_token FROM {s}.fence WHERE record = $1 FOR UPDATE"),
            &[&record],
        )
        .await?
        .get(0);
    if token < max {
        w.db.batch_execute("ROLLBACK").await?;
        return Ok(false);
    }
    w.db.execute(
        &format!("UPDATE {s}.fence SET max_token = $2 WHERE record = $1"),
        &[&record, &token],
    )
    .await?;
    w.db.execute(
        &format!(
            "INSERT INTO {s}.effects (record, key, fencing_token, writer, run_id, started_us, ended_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        &[
            &record,
            &key,
            &token,
            &w.writer,
            &w.run.to_string(),
            &started_us,
            &now_us(),
        ],
    )
    .await?;
    w.db.batch_execute("COMMIT").await?;
    Ok(true)
}

fn store_error(e: StoreError) -> ! {
    die(4, format!("store error: {e}"))
}

/// Acts on every key once; keys held by another worker are retried after the others.
async fn contend(w: &Worker, records: usize, keys: usize) {
    let mut pending: Vec<usize> = (0..keys).collect();
    let mut acted = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        if Instant::now() > deadline {
            die(5, format!("keys still pending after 60 s: {pending:?}"));
        }
        let mut busy = Vec::new();
        for i in pending {
            let key = format!("k{i}");
            let record = format!("r{}", i % records);
            let r = request(w, &key, &record, now_ms(), 30_000);
            match w.store.begin(&r).await.unwrap_or_else(|e| store_error(e)) {
                Begin::Claimed(c) => {
                    // The claim was granted at the latest now, after the previous holder released it.
                    let claimed = now_us();
                    if !downstream(w, &record, &key, c.fencing_token, claimed).await {
                        die(
                            4,
                            format!("the downstream rejected live token {}", c.fencing_token),
                        );
                    }
                    w.store
                        .complete(completion(w, &r, c.fencing_token, now_ms()))
                        .await
                        .unwrap_or_else(|e| store_error(e));
                    acted += 1;
                }
                Begin::InProgress { .. } | Begin::RecordBusy { .. } => busy.push(i),
                Begin::Completed { .. } => {}
                other => die(4, format!("unexpected answer for {key}: {other:?}")),
            }
        }
        if !busy.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pending = busy;
    }
    println!("ACTED {acted}");
}

async fn loop_filter(w: &Worker) {
    let key = format!("lf-{}", w.writer);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut r = request(w, &key, "shared", now_ms(), 30_000);
        r.dedup_ms = Some(86_400_000);
        let started = now_us();
        match w.store.begin(&r).await.unwrap_or_else(|e| store_error(e)) {
            Begin::Claimed(c) => {
                downstream(w, "shared", &key, c.fencing_token, started).await;
                w.store
                    .complete(completion(w, &r, c.fencing_token, now_ms()))
                    .await
                    .unwrap_or_else(|e| store_error(e));
                println!("ACTED");
                return;
            }
            Begin::Skipped { previous_key, .. } => {
                println!("SKIPPED {previous_key}");
                return;
            }
            Begin::RecordBusy { .. } => tokio::time::sleep(Duration::from_millis(1)).await,
            other => die(4, format!("unexpected answer: {other:?}")),
        }
        if Instant::now() > deadline {
            die(5, "never acted nor skipped");
        }
    }
}

async fn until_halt(w: &Worker, halt_after: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        if Instant::now() > deadline {
            die(5, "never saw the halt");
        }
        if halt_after > 0 && i == halt_after {
            let first = w
                .store
                .halt_run(w.run, "security failure", now_ms())
                .await
                .unwrap_or_else(|e| store_error(e));
            println!("HALTED_AT {} {first}", now_us());
        }
        let key = format!("h-{}-{i}", w.writer);
        let started = now_us();
        let r = request(w, &key, &key, now_ms(), 30_000);
        match w.store.begin(&r).await.unwrap_or_else(|e| store_error(e)) {
            Begin::Claimed(c) => {
                downstream(w, &key, &key, c.fencing_token, started).await;
                w.store
                    .complete(completion(w, &r, c.fencing_token, now_ms()))
                    .await
                    .unwrap_or_else(|e| store_error(e));
            }
            Begin::Halted => {
                println!("SAW_HALT {i}");
                return;
            }
            other => die(4, format!("unexpected answer: {other:?}")),
        }
    }
}

async fn claim(w: &Worker, key: &str, record: &str, lease_ms: Millis, offset_ms: Millis) {
    let r = request(w, key, record, now_ms() + offset_ms, lease_ms);
    let started = now_us();
    let token = match w.store.begin(&r).await.unwrap_or_else(|e| store_error(e)) {
        Begin::Claimed(c) => {
            println!("CLAIMED {} {}", c.fencing_token, c.takeover);
            c.fencing_token
        }
        other => {
            println!("ANSWER {other:?}");
            return;
        }
    };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap_or_else(|e| die(2, e));
        match line.trim() {
            "write" => {
                let accepted = downstream(w, record, key, token, started).await;
                println!("WRITE {}", if accepted { "accepted" } else { "stale" });
            }
            "complete" => {
                match w
                    .store
                    .complete(completion(w, &r, token, now_ms() + offset_ms))
                    .await
                {
                    Ok(e) => println!("COMPLETE ok {}", e.seq),
                    Err(StoreError::ClaimLost { .. }) => println!("COMPLETE claim_lost"),
                    Err(e) => println!("COMPLETE error {e}"),
                }
            }
            "exit" => return,
            other => die(2, format!("unknown command `{other}`")),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        die(
            2,
            "usage: pg_worker <mode> <schema> <writer> <run-id> [args]",
        );
    }
    let (mode, schema, writer) = (&args[0], &args[1], &args[2]);
    let run: Uuid = args[3].parse().unwrap_or_else(|e| die(2, e));
    let rest = &args[4..];
    let url = url();
    let store = PostgresStore::connect_with_schema(&url, schema)
        .await
        .unwrap_or_else(|e| store_error(e));
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| die(4, e));
    tokio::spawn(connection);
    let w = Worker {
        store,
        db,
        schema: schema.clone(),
        writer: writer.clone(),
        run,
    };
    let num = |i: usize| -> i64 {
        rest.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| die(2, format!("argument {i} of `{mode}` must be a number")))
    };
    match mode.as_str() {
        "contend" => contend(&w, num(0) as usize, num(1) as usize).await,
        "loop_filter" => loop_filter(&w).await,
        "until_halt" => until_halt(&w, num(0) as usize).await,
        "claim" => {
            let key = rest.first().unwrap_or_else(|| die(2, "claim needs a key"));
            let record = rest
                .get(1)
                .unwrap_or_else(|| die(2, "claim needs a record"));
            claim(&w, key, record, num(2), num(3)).await
        }
        other => die(2, format!("unknown mode `{other}`")),
    }
}
