//! Durable begin+complete pairs per second on `SqliteStore`, at 1, 16 and 64 concurrent callers,
//! against hand-written rusqlite baselines measured in the same run with the same settings (WAL,
//! `synchronous = FULL`):
//!
//! - `baseline_1tx`: one transaction per action inserting one claim row and one log row;
//! - `baseline_2tx`: what a durable claim needs without group commit: one transaction for the claim
//!   (before acting), one for the completion and its log row.
//!
//! `cargo bench -p actguard --bench sqlite`: a table of actions/s and ratios measured on interleaved
//! rounds (`ACTGUARD_BENCH_ROUNDS`, default 6).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actguard::log::{GENESIS_HASH, LogEntry, NewLogEntry, Outcome};
use actguard::store::{Begin, BeginRequest, Completion};
use actguard::{SqliteStore, Store};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

mod support;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const NOW: i64 = 1_700_000_000_000;

/// Every key in the run is distinct.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn begin_request(n: u64) -> BeginRequest {
    let key = format!("disburse:loan-{n}:1");
    BeginRequest {
        run_id: Uuid::from_u128(1),
        action: "disburse".to_owned().into(),
        key_digest: format!("{n:064x}").into(),
        record: format!("loan-{n}").into(),
        key_text: key.into(),
        fingerprint: "f".repeat(64).into(),
        payload: actguard::PayloadJson::from(
            serde_json::json!({ "loan_id": n, "amount": 25_000, "currency": "EUR" }),
        ),
        claim_id: Uuid::from_u128(u128::from(n)),
        now_ms: NOW,
        lease_ms: 300_000,
        dedup_ms: Some(86_400_000),
        replay_of: None,
    }
}

fn log_entry(r: &BeginRequest) -> NewLogEntry {
    NewLogEntry {
        at_ms: NOW + 1,
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
        after: Some(serde_json::json!({ "receipt": r.record })),
        fencing_token: Some(1),
        duration_ms: 1,
    }
}

/// Runs `actions` actions over `concurrency` tasks; each task takes the next action number until
/// all are done.
async fn drive<F, Fut>(concurrency: usize, actions: u64, act: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let act = Arc::new(act);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (act, done) = (act.clone(), done.clone());
        tasks.spawn(async move {
            while done.fetch_add(1, Ordering::Relaxed) < actions {
                act(NEXT_KEY.fetch_add(1, Ordering::Relaxed)).await;
            }
        });
    }
    tasks.join_all().await;
    start.elapsed()
}

async fn store_action(store: &SqliteStore, n: u64) {
    let r = begin_request(n);
    let claim = match store.begin(&r).await.expect("begin") {
        Begin::Claimed(c) => c,
        other => panic!("distinct keys are claimed, got {other:?}"),
    };
    let completion = Completion {
        key_digest: r.key_digest.clone(),
        claim_id: r.claim_id,
        action: r.action.clone(),
        record: r.record.clone(),
        result: serde_json::json!({ "receipt": r.record, "token": claim.fencing_token }),
        entry: log_entry(&r),
        now_ms: NOW + 1,
        replay_of: None,
    };
    store.complete(completion).await.expect("complete");
}

/// The hand-written baseline schema: one claim table, one log table.
fn baseline_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE claims (key_digest TEXT PRIMARY KEY, key_text TEXT NOT NULL, record TEXT NOT NULL,
             fingerprint TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, claim_id TEXT,
             lease_until_ms INTEGER, result TEXT) WITHOUT ROWID;
         CREATE TABLE log (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, prev_hash TEXT NOT NULL,
             hash TEXT NOT NULL);",
    )
    .unwrap();
    conn
}

fn append_log(tx: &Connection, entry: NewLogEntry) {
    let head: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
        .unwrap()
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .unwrap();
    let (seq, prev) = head.map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s as u64 + 1, h));
    let e = LogEntry::chain_after(seq, prev, entry);
    tx.prepare_cached("INSERT INTO log (seq, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)")
        .unwrap()
        .execute(params![
            e.seq as i64,
            serde_json::to_string(&e.entry).unwrap(),
            e.prev_hash,
            e.hash
        ])
        .unwrap();
}

fn insert_claim(tx: &Connection, r: &BeginRequest) {
    tx.prepare_cached(
        "INSERT INTO claims (key_digest, key_text, record, fingerprint, payload, state, claim_id,
             lease_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6, ?7)",
    )
    .unwrap()
    .execute(params![
        r.key_digest,
        r.key_text,
        r.record,
        r.fingerprint,
        serde_json::to_string(&r.payload).unwrap(),
        r.claim_id.to_string(),
        r.now_ms + r.lease_ms
    ])
    .unwrap();
}

/// One transaction per action: the claim row and the log row together.
fn baseline_1tx(conn: &Mutex<Connection>, n: u64) {
    let r = begin_request(n);
    let mut conn = conn.lock().unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    insert_claim(&tx, &r);
    append_log(&tx, log_entry(&r));
    tx.commit().unwrap();
}

/// Two transactions per action: the claim, durable before acting, then the completion.
fn baseline_2tx(conn: &Mutex<Connection>, n: u64) {
    let r = begin_request(n);
    {
        let mut conn = conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        insert_claim(&tx, &r);
        tx.commit().unwrap();
    }
    let mut conn = conn.lock().unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.prepare_cached(
        "UPDATE claims SET state = 'completed', result = ?2, claim_id = NULL WHERE key_digest = ?1",
    )
    .unwrap()
    .execute(params![r.key_digest, r.record])
    .unwrap();
    append_log(&tx, log_entry(&r));
    tx.commit().unwrap();
}

/// An implementation under test at one concurrency: runs `n` actions, returns the time taken.
type Runner = Box<dyn Fn(&tokio::runtime::Runtime, u64) -> Duration>;

const NAMES: [&str; 3] = ["sqlite_store", "baseline_1tx", "baseline_2tx"];

/// The three implementations, each on a fresh database in `dir`.
fn runners(dir: &Path, concurrency: usize) -> Vec<(&'static str, Runner)> {
    let store = Arc::new(SqliteStore::open(dir.join(format!("store-{concurrency}.db"))).unwrap());
    let mut out: Vec<(&'static str, Runner)> = vec![(
        NAMES[0],
        Box::new(move |rt, n| {
            let store = store.clone();
            rt.block_on(drive(concurrency, n, move |k| {
                let store = store.clone();
                async move { store_action(&store, k).await }
            }))
        }),
    )];
    type Baseline = fn(&Mutex<Connection>, u64);
    let baselines: [(&'static str, Baseline); 2] =
        [(NAMES[1], baseline_1tx), (NAMES[2], baseline_2tx)];
    for (name, act) in baselines {
        let conn = Arc::new(Mutex::new(baseline_connection(
            &dir.join(format!("{name}-{concurrency}.db")),
        )));
        out.push((
            name,
            Box::new(move |rt, n| {
                let conn = conn.clone();
                rt.block_on(drive(concurrency, n, move |k| {
                    let conn = conn.clone();
                    async move {
                        tokio::task::spawn_blocking(move || act(&conn, k))
                            .await
                            .unwrap()
                    }
                }))
            }),
        ));
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The machine is shared, so load changes during a run: the ratios are measured on interleaved rounds
/// (store, 1tx, 2tx, store, 1tx, 2tx, …), each about a second long, so that every implementation sees
/// the same conditions.
fn interleaved() {
    let rounds = support::rounds(6);
    let rt = runtime();
    println!();
    println!("durable begin+complete pairs per second, {rounds} interleaved rounds of ~1 s each:");
    println!(
        "{:>11} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "concurrency", NAMES[0], NAMES[1], NAMES[2], "vs 1tx", "vs 2tx"
    );
    for concurrency in CONCURRENCY {
        let dir = tempfile::tempdir().unwrap();
        let runners = runners(dir.path(), concurrency);
        let mut totals = BTreeMap::<&str, (u64, Duration)>::new();
        let mut batch = BTreeMap::<&str, u64>::new();
        for round in 0..=rounds {
            for (name, run) in &runners {
                // Round 0 warms up and sizes the rounds to about a second each.
                let n = *batch.get(name).unwrap_or(&(concurrency as u64 * 50));
                let elapsed = run(&rt, n);
                if round == 0 {
                    let rate = n as f64 / elapsed.as_secs_f64();
                    batch.insert(name, (rate as u64).max(concurrency as u64));
                } else {
                    let t = totals.entry(name).or_default();
                    t.0 += n;
                    t.1 += elapsed;
                }
            }
        }
        let rate = |name: &str| {
            let (n, d) = totals[name];
            n as f64 / d.as_secs_f64()
        };
        let (s, b1, b2) = (rate(NAMES[0]), rate(NAMES[1]), rate(NAMES[2]));
        println!(
            "{concurrency:>11} {s:>14.0} {b1:>14.0} {b2:>14.0} {:>11.2}x {:>11.2}x",
            s / b1,
            s / b2
        );
    }
}

/// `ACTGUARD_BENCH_PROFILE=<actions>`: runs only `SqliteStore`, that many actions at
/// `ACTGUARD_BENCH_CALLERS` callers (default 64; with 1, every batch holds one request, so counts
/// compare exactly between versions) in `ACTGUARD_BENCH_DIR` (default: a temporary directory), and
/// prints the rate: a workload for a
/// profiler (`valgrind --tool=callgrind --separate-threads=yes`), whose instruction counts per action
/// do not depend on the machine's load.
fn profile(actions: u64) {
    let dir = tempfile::tempdir_in(
        std::env::var_os("ACTGUARD_BENCH_DIR")
            .unwrap_or_else(|| std::env::temp_dir().into_os_string()),
    )
    .unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("profile.db")).unwrap());
    let callers = std::env::var("ACTGUARD_BENCH_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = runtime();
    let elapsed = rt.block_on(drive(callers, actions, move |k| {
        let store = store.clone();
        async move { store_action(&store, k).await }
    }));
    println!(
        "{actions} actions in {elapsed:?}: {:.0}/s",
        actions as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    if support::filtered_out("sqlite durable_actions") {
        return;
    }
    if let Some(n) = std::env::var("ACTGUARD_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile(n);
        return;
    }
    interleaved();
}
