//! The worker of the crash test (`tests/it/crash.rs`): runs a workload of guarded payments against a
//! real [`SqliteStore`] file and a downstream ledger that keeps its effects in its own SQLite file, so
//! that the test can kill it with SIGKILL at any moment and start it again.
//!
//! ```text
//! crash_worker <store.db> <ledger.db> <instructions> <records> <tasks>
//! ```
//!
//! Instruction `i` pays `amount(i)` into account `i % records` under the idempotency key `pay:{i}`.
//! Every run calls the guarded action for every instruction: a key that completed in an earlier
//! (killed) run replays its stored result, a key whose claim a killed run left behind is taken over
//! once its lease expires. `tasks` calls run concurrently (so the store's group commit batches them).
//!
//! Prints `opened <run id>` once the store is open and the agent built, and `done` when every
//! instruction has its result; exits 0 then, and 2 on any other outcome (with the reason on stderr).

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actguard::{
    ActionError, Agent, Classify, LogQuery, Outcome, Run, SqliteStore, Store, agent_action,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// One payment instruction of the workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instruction {
    id: u32,
    account: u32,
    amount: i64,
}

impl Instruction {
    fn nth(id: u32, records: u32) -> Instruction {
        Instruction {
            id,
            account: id % records,
            amount: amount(id),
        }
    }
}

/// The amount of instruction `id` (1..=1000, different per instruction so sums detect a double).
fn amount(id: u32) -> i64 {
    i64::from(id.wrapping_mul(7919) % 1000) + 1
}

/// What the ledger stored for a key: the first application, returned again for every repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Effect {
    key: String,
    account: String,
    amount: i64,
    applied_at_ms: i64,
    run_id: String,
    fencing_token: i64,
}

#[derive(Debug, thiserror::Error, Classify)]
enum LedgerError {
    /// The ledger's file was busy or failed: try again.
    #[error("ledger unavailable: {0}")]
    #[classify(transient)]
    Unavailable(String),
}

/// One request to the ledger: the instruction and the attempt's context, as the ledger records it.
struct Post {
    key: String,
    account: String,
    amount: i64,
    run_id: String,
    fencing_token: i64,
    attempt: u32,
    retry: bool,
}

/// The downstream: a ledger that honours idempotency keys, in its own SQLite file.
///
/// Tables: `effects` (one row per key: the first application), `applications` (how many times each
/// key was applied: the ledger's own count, which must end at 1), `balances` (per account, changed only
/// by an application), `calls` (every request received, in order, with the caller's run id and fencing
/// token: what the crash test checks the guarded call against).
struct Ledger {
    conn: Arc<Mutex<Connection>>,
}

const LEDGER_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS effects (
        key            TEXT PRIMARY KEY,
        account        TEXT NOT NULL,
        amount         INTEGER NOT NULL,
        applied_at_ms  INTEGER NOT NULL,
        run_id         TEXT NOT NULL,
        fencing_token  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS applications (
        key    TEXT PRIMARY KEY,
        count  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS balances (
        account  TEXT PRIMARY KEY,
        balance  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS calls (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        key            TEXT NOT NULL,
        account        TEXT NOT NULL,
        run_id         TEXT NOT NULL,
        fencing_token  INTEGER NOT NULL,
        attempt        INTEGER NOT NULL,
        retry          INTEGER NOT NULL
    );
";

impl Ledger {
    fn open(path: &Path) -> Result<Ledger, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // A killed process loses nothing the OS has accepted, so `synchronous = NORMAL` is enough for
        // this ledger (the action store keeps its own `FULL`).
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(LEDGER_SCHEMA)?;
        Ok(Ledger {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Applies `post` under its key unless the key is known, and answers the stored effect either way.
    async fn post(&self, post: Post) -> Result<Effect, LedgerError> {
        let Post {
            key,
            account,
            amount,
            run_id,
            fencing_token,
            attempt,
            retry,
        } = post;
        let conn = self.conn.clone();
        let applied_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO calls (key, account, run_id, fencing_token, attempt, retry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, account, run_id, fencing_token, attempt, retry],
            )?;
            let inserted = tx.execute(
                "INSERT INTO effects (key, account, amount, applied_at_ms, run_id, fencing_token)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO NOTHING",
                params![key, account, amount, applied_at_ms, run_id, fencing_token],
            )?;
            if inserted == 1 {
                tx.execute(
                    "INSERT INTO applications (key, count) VALUES (?1, 1)
                     ON CONFLICT (key) DO UPDATE SET count = count + 1",
                    params![key],
                )?;
                tx.execute(
                    "INSERT INTO balances (account, balance) VALUES (?1, ?2)
                     ON CONFLICT (account) DO UPDATE SET balance = balance + ?2",
                    params![account, amount],
                )?;
            }
            let effect = tx.query_row(
                "SELECT key, account, amount, applied_at_ms, run_id, fencing_token FROM effects
                 WHERE key = ?1",
                params![key],
                |r| {
                    Ok(Effect {
                        key: r.get(0)?,
                        account: r.get(1)?,
                        amount: r.get(2)?,
                        applied_at_ms: r.get(3)?,
                        run_id: r.get(4)?,
                        fencing_token: r.get(5)?,
                    })
                },
            )?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(effect)
        })
        .await
        .map_err(|e| LedgerError::Unavailable(e.to_string()))?
        .map_err(|e| LedgerError::Unavailable(e.to_string()))
    }

    /// The stored effect of `key`, if it was applied.
    fn effect(&self, key: &str) -> Result<Option<Effect>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(
            "SELECT key, account, amount, applied_at_ms, run_id, fencing_token FROM effects
             WHERE key = ?1",
            params![key],
            |r| {
                Ok(Effect {
                    key: r.get(0)?,
                    account: r.get(1)?,
                    amount: r.get(2)?,
                    applied_at_ms: r.get(3)?,
                    run_id: r.get(4)?,
                    fencing_token: r.get(5)?,
                })
            },
        )
        .optional()
    }
}

#[agent_action(
    key = "pay:{instr.id}",
    record = "account:{instr.account}",
    dedup = "none",
    lease = "300ms",
    // A worker killed inside the call counts as an attempt when the next one takes the key over, and
    // kills land every few milliseconds here: the highest budget, so that the soak tests duplicates,
    // not the dead-lettering of a key whose callers keep dying (`tests/it/claims.rs` tests that).
    retries = 100,
    backoff = "10ms..200ms"
)]
async fn pay(
    run: &Run,
    #[dep] ledger: &Ledger,
    instr: &Instruction,
) -> Result<Effect, LedgerError> {
    let attempt = run.attempt();
    ledger
        .post(Post {
            key: attempt.key().to_owned(),
            account: attempt.record().to_owned(),
            amount: instr.amount,
            run_id: attempt.run_id().to_string(),
            fencing_token: attempt.fencing_token().unwrap_or(0) as i64,
            attempt: attempt.number(),
            retry: attempt.is_retry(),
        })
        .await
}

struct Args {
    store: String,
    ledger: String,
    instructions: u32,
    records: u32,
    tasks: usize,
}

fn args() -> Result<Args, String> {
    let usage = "usage: crash_worker <store.db> <ledger.db> <instructions> <records> <tasks>";
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [store, ledger, instructions, records, tasks] = a.as_slice() else {
        return Err(usage.to_owned());
    };
    let number = |s: &str| s.parse::<u32>().map_err(|e| format!("`{s}`: {e}; {usage}"));
    Ok(Args {
        store: store.clone(),
        ledger: ledger.clone(),
        instructions: number(instructions)?,
        records: number(records)?.max(1),
        tasks: number(tasks)?.max(1) as usize,
    })
}

fn main() {
    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(work()))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crash_worker: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// The work of one run: every instruction until each has its result.
async fn work() -> Result<(), String> {
    let args = args()?;
    let store = Arc::new(SqliteStore::open(&args.store).map_err(|e| e.to_string())?);
    let ledger = Arc::new(Ledger::open(Path::new(&args.ledger)).map_err(|e| e.to_string())?);
    // Two agents on the one store: the first pass answers `InProgress` at once for a key or record
    // whose claim a killed run left behind (that work is put off), the second waits for those leases
    // to expire and takes the claims over.
    let eager = Agent::builder()
        .shared_store(store.clone())
        .claim_wait(Duration::ZERO)
        .build()
        .map_err(|e| e.to_string())?;
    let patient = Agent::builder()
        .shared_store(store.clone())
        .claim_wait(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let run_id = uuid::Uuid::now_v7();
    let eager_run = eager.run_with_id(run_id);
    let patient_run = patient.run_with_id(run_id);
    println!("opened {run_id}");

    // Work not done yet first, so that each run gets to the ledger before its kill; then the keys that
    // completed in earlier runs, which replay their stored results.
    let completed: HashSet<String> = store
        .log(&LogQuery {
            outcome: Some(Outcome::Succeeded),
            ..LogQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|e| e.entry.key_text.to_string())
        .collect();
    let (replays, fresh): (Vec<u32>, Vec<u32>) =
        (0..args.instructions).partition(|i| completed.contains(&format!("pay:{i}")));
    let queue: Arc<Mutex<VecDeque<u32>>> =
        Arc::new(Mutex::new(fresh.into_iter().chain(replays).collect()));
    let put_off: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.tasks {
        let (queue, put_off, ledger, run) = (
            queue.clone(),
            put_off.clone(),
            ledger.clone(),
            eager_run.clone(),
        );
        let records = args.records;
        tasks.spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop_front() else {
                    return Ok(());
                };
                let instr = Instruction::nth(id, records);
                match pay(&run, &ledger, &instr).await {
                    Ok(effect) => check(&ledger, &instr, &effect)?,
                    Err(ActionError::InProgress { .. }) => put_off.lock().unwrap().push(id),
                    Err(e) => return Err(format!("pay:{id}: {e}")),
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| e.to_string())??;
    }
    let put_off = std::mem::take(&mut *put_off.lock().unwrap());
    for id in put_off {
        let instr = Instruction::nth(id, args.records);
        let effect = pay(&patient_run, &ledger, &instr)
            .await
            .map_err(|e| format!("pay:{id}: {e}"))?;
        check(&ledger, &instr, &effect)?;
    }
    // A clean end closes the store: the write-ahead log is checkpointed into the file and removed.
    drop((eager_run, patient_run, eager, patient));
    let store = Arc::try_unwrap(store).map_err(|_| "the store is still shared".to_owned())?;
    store.close().map_err(|e| e.to_string())?;
    println!("done");
    Ok(())
}

/// The result the guarded call returned (applied now, or replayed) is the ledger's stored effect.
fn check(ledger: &Ledger, instr: &Instruction, effect: &Effect) -> Result<(), String> {
    let key = format!("pay:{}", instr.id);
    let stored = ledger.effect(&key).map_err(|e| e.to_string())?;
    if stored.as_ref() != Some(effect) || effect.amount != instr.amount {
        return Err(format!(
            "{key}: the guarded call returned {effect:?}, the ledger stores {stored:?}"
        ));
    }
    Ok(())
}
