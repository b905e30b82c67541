//! Throughput of `PostgresStore`: one guarded call's store work (`begin` + `complete`, log entry
//! included) per element, at 1, 16 and 64 concurrent callers, each caller on its own record.
//!
//! Baseline (`by_hand`): the same statements issued directly through a connection pool of the same
//! size (40 connections each), one transaction per action (claim and completion together), so the
//! difference is what the store's two transactions, pool checkouts and serialization cost.
//!
//! Needs a server: `ACTGUARD_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`. Runs in a fresh
//! schema, dropped at the end. `cargo bench -p actguard --features postgres --bench postgres`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actguard::log::{LogEntry, NewLogEntry, Outcome};
use actguard::store::{Begin, BeginRequest, Completion};
use actguard::{PostgresStore, Store};
use bb8_postgres::PostgresConnectionManager;
use uuid::Uuid;

mod support;

use support::Case;

type Pool = bb8::Pool<PostgresConnectionManager<tokio_postgres::NoTls>>;

const T0: i64 = 1_700_000_000_000;
const CONCURRENCY: [u64; 3] = [1, 16, 64];

static NEXT: AtomicU64 = AtomicU64::new(0);

fn request(run: Uuid, record: &str) -> BeginRequest {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    BeginRequest {
        run_id: run,
        action: "ship".to_owned().into(),
        key_text: format!("ship:{n}").into(),
        key_digest: format!("digest:{n}").into(),
        record: record.to_owned().into(),
        fingerprint: "fp".to_owned().into(),
        payload: actguard::PayloadJson::from(serde_json::json!({ "n": n })),
        claim_id: Uuid::now_v7(),
        now_ms: T0,
        lease_ms: 30_000,
        dedup_ms: None,
        replay_of: None,
    }
}

fn entry(r: &BeginRequest, token: u64) -> NewLogEntry {
    NewLogEntry {
        at_ms: T0,
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
        after: Some(serde_json::json!({ "ok": true })),
        fencing_token: Some(token),
        duration_ms: 1,
    }
}

async fn through_store(store: &PostgresStore, run: Uuid, record: &str) {
    let r = request(run, record);
    let Begin::Claimed(claim) = store.begin(&r).await.expect("begin") else {
        panic!("each action has a fresh key on a free record");
    };
    store
        .complete(Completion {
            key_digest: r.key_digest.clone(),
            claim_id: r.claim_id,
            action: r.action.clone(),
            record: r.record.clone(),
            result: serde_json::json!({ "ok": true }),
            entry: entry(&r, claim.fencing_token),
            now_ms: T0 + 1,
            replay_of: None,
        })
        .await
        .expect("complete");
}

/// The store's statements for begin and complete, in one transaction.
async fn by_hand(pool: &Pool, schema: &str, run: Uuid, record: &str) {
    let q = |sql: &str| sql.replace("@.", &format!("{schema}."));
    let r = request(run, record);
    let mut client = pool.get().await.expect("a connection");
    let tx = client.transaction().await.expect("BEGIN");
    let run_id = r.run_id.to_string();
    let lock = format!("{schema}:{}", r.key_digest);
    let s = tx
        .prepare("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .await
        .unwrap();
    tx.execute(&s, &[&lock]).await.unwrap();
    let s = tx
        .prepare(&q("SELECT 1 FROM @.runs WHERE run_id = $1"))
        .await
        .unwrap();
    assert!(tx.query_opt(&s, &[&run_id]).await.unwrap().is_none());
    let s = tx
        .prepare(&q(
            "SELECT state FROM @.keys WHERE key_digest = $1 FOR UPDATE",
        ))
        .await
        .unwrap();
    assert!(tx.query_opt(&s, &[&r.key_digest]).await.unwrap().is_none());
    let s = tx
        .prepare(&q(
            "INSERT INTO @.records AS rec (record, last_token) VALUES ($1, 0)
             ON CONFLICT (record) DO UPDATE SET last_token = rec.last_token
             RETURNING holder_digest",
        ))
        .await
        .unwrap();
    tx.query_one(&s, &[&r.record]).await.unwrap();
    let s = tx
        .prepare(&q("WITH rec AS (
                 UPDATE @.records SET last_token = last_token + 1, holder_digest = $2::text,
                     holder_key = $3::text, lease_until_ms = $4::bigint
                 WHERE record = $1::text RETURNING last_token)
             INSERT INTO @.keys (key_digest, key_text, action, record, run_id, fingerprint, payload,
                 state, claim_id, lease_until_ms, fencing_token, updated_ms)
             SELECT $2::text, $3::text, $5::text, $1::text, $6::text, $7::text, $8::text, 'claimed',
                 $9::text, $4::bigint, rec.last_token, $10::bigint FROM rec
             RETURNING fencing_token"))
        .await
        .unwrap();
    let payload = serde_json::to_string(&r.payload).unwrap();
    let claim_id = r.claim_id.to_string();
    let lease_until = r.now_ms + r.lease_ms;
    let token: i64 = tx
        .query_one(
            &s,
            &[
                &r.record,
                &r.key_digest,
                &r.key_text,
                &lease_until,
                &r.action,
                &run_id,
                &r.fingerprint,
                &payload,
                &claim_id,
                &r.now_ms,
            ],
        )
        .await
        .unwrap()
        .get(0);
    let now = T0 + 1;
    let result = serde_json::to_string(&serde_json::json!({ "ok": true })).unwrap();
    let s = tx
        .prepare(&q(
            "UPDATE @.keys SET state = 'completed', result = $3, completed_at_ms = $4, claim_id = NULL,
                 lease_until_ms = NULL, updated_ms = $4
             WHERE key_digest = $1 AND state = 'claimed' AND claim_id = $2 RETURNING record",
        ))
        .await
        .unwrap();
    tx.query_one(&s, &[&r.key_digest, &claim_id, &result, &now])
        .await
        .unwrap();
    let s = tx
        .prepare(&q(
            "INSERT INTO @.acted (record, action, key_text, key_digest, acted_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (record, action) DO UPDATE SET key_text = excluded.key_text,
                 key_digest = excluded.key_digest, acted_at_ms = excluded.acted_at_ms",
        ))
        .await
        .unwrap();
    tx.execute(
        &s,
        &[&r.record, &r.action, &r.key_text, &r.key_digest, &now],
    )
    .await
    .unwrap();
    let s = tx
        .prepare(&q(
            "UPDATE @.records SET holder_digest = NULL, holder_key = NULL, lease_until_ms = NULL
             WHERE record = $1 AND holder_digest = $2",
        ))
        .await
        .unwrap();
    tx.execute(&s, &[&r.record, &r.key_digest]).await.unwrap();
    let s = tx
        .prepare(&q("SELECT seq, hash FROM @.log_head FOR UPDATE"))
        .await
        .unwrap();
    let head = tx.query_one(&s, &[]).await.unwrap();
    let (seq, prev): (i64, String) = (head.get(0), head.get(1));
    let e = LogEntry::chain_after(seq as u64 + 1, prev, entry(&r, token as u64));
    let s = tx
        .prepare(&q(
            "WITH head AS (UPDATE @.log_head SET seq = $1, hash = $11)
             INSERT INTO @.log (seq, at_ms, run_id, action, record, key_digest, attempt, outcome, entry,
                 prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ))
        .await
        .unwrap();
    tx.execute(
        &s,
        &[
            &(e.seq as i64),
            &e.entry.at_ms,
            &run_id,
            &e.entry.action,
            &e.entry.record,
            &e.entry.key_digest,
            &i64::from(e.entry.attempt),
            &e.entry.outcome.as_str(),
            &serde_json::to_string(&e.entry).unwrap(),
            &e.prev_hash,
            &e.hash,
        ],
    )
    .await
    .unwrap();
    tx.commit().await.expect("COMMIT");
}

/// Runs `iters` actions over `concurrency` tasks (each on its own record); returns the elapsed time.
async fn run<F, Fut>(concurrency: u64, iters: u64, label: &str, action: F) -> Duration
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let n = iters / concurrency + u64::from(t < iters % concurrency);
            let record = format!("{label}-{concurrency}-{t}");
            let action = action.clone();
            tokio::spawn(async move {
                for _ in 0..n {
                    action(record.clone()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a benchmark task");
    }
    start.elapsed()
}

fn main() {
    if support::filtered_out("postgres begin+complete") {
        return;
    }
    let url = std::env::var(PostgresStore::URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let schema = format!("actguard_bench_{}", Uuid::now_v7().simple());
    // Two pools share the server's connection limit (100 by default): 40 connections each, so at
    // concurrency 64 both sides queue for connections alike.
    let max = 40;
    let store = rt
        .block_on(
            PostgresStore::options()
                .schema(schema.clone())
                .max_connections(max)
                .connect(&url),
        )
        .unwrap_or_else(|e| panic!("the benchmark needs a server ({e})"));
    let store = Arc::new(store);
    let pool = {
        let _guard = rt.enter();
        let config: tokio_postgres::Config = url.parse().expect("a URL");
        let manager = PostgresConnectionManager::new(config, tokio_postgres::NoTls);
        Pool::builder()
            .max_size(u32::try_from(max).expect("a pool size"))
            .test_on_check_out(false)
            .build_unchecked(manager)
    };
    let run_id = Uuid::now_v7();

    for concurrency in CONCURRENCY {
        let mut cases = vec![
            Case::new(format!("store, {concurrency} callers"), |iters| {
                let store = store.clone();
                rt.block_on(run(concurrency, iters, "store", move |record| {
                    let store = store.clone();
                    async move { through_store(&store, run_id, &record).await }
                }))
            }),
            Case::new(format!("by hand, {concurrency} callers"), |iters| {
                let (pool, schema) = (pool.clone(), schema.clone());
                rt.block_on(run(concurrency, iters, "hand", move |record| {
                    let (pool, schema) = (pool.clone(), schema.clone());
                    async move { by_hand(&pool, &schema, run_id, &record).await }
                }))
            }),
        ];
        let stats = support::compare(&mut cases, support::rounds(7), Duration::from_millis(700));
        support::print_throughput(
            &format!(
                "PostgresStore begin+complete, {concurrency} concurrent callers (ratio to the statements by hand)"
            ),
            &stats,
            1,
            "actions",
        );
    }

    rt.block_on(async {
        let client = pool.get().await.expect("a connection");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("the benchmark schema is dropped");
    });
}
