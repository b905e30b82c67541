//! Crash safety, for real: a worker process (`crash_worker`) runs a workload of guarded payments on a
//! `SqliteStore` file against a ledger that honours idempotency keys in its own SQLite file, and is
//! killed with SIGKILL at random moments (during startup and open too), then started again, until the
//! workload is done. A last run, not killed, replays everything. Then:
//!
//! - every instruction was applied by the ledger exactly once (no double, none missing), balances
//!   included, even for keys whose worker died between the ledger's write and `complete`;
//! - the guarded call never called the ledger again after a key completed, and fencing tokens never
//!   went back on an account;
//! - every key is completed in the store with exactly one `Succeeded` log entry, whose stored result is
//!   the ledger's effect; replays return that result; no claim or record lease is left held;
//! - the action log's hash chain verifies.
//!
//! Key states and record leases are read from the store's file with a read-only SQLite connection
//! (tables `keys` and `records` of `runtime/src/sqlite/schema.rs`): the `Store` trait has no query for
//! them. Everything else goes through the public API (`Store::log`, `verify`).
//!
//! A second test kills workers while they create a fresh store file, at moments spread over the
//! creation, and checks that the next worker opens it and finishes.
//!
//! The default run kills the worker 100 times (seeded: `ACTGUARD_CRASH_SEED`); a soak sets
//! `ACTGUARD_CRASH_KILLS` (e.g. 500, see `scripts/crash-soak.sh`). The waits are real (separate
//! processes) but short: the kill delays, and the 300 ms lease a restarted worker waits out before
//! taking over a dead worker's claim.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actguard::{LogEntry, LogQuery, Outcome, SqliteStore, Store, verify};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// Kills of the default run.
const DEFAULT_KILLS: usize = 100;
/// Seed of the default run.
const DEFAULT_SEED: u64 = 0x5eed_c0de;
/// Instructions per 50 kills: the workload grows with the kills, so that most kills land on work.
const INSTRUCTIONS_PER_50_KILLS: u32 = 200;
const RECORDS: u32 = 20;
/// Concurrent guarded calls in a worker.
const TASKS: u32 = 4;
/// The longest a worker that is not killed may take.
const WORKER_TIMEOUT: Duration = Duration::from_secs(120);
/// The signal `Child::kill` sends on unix.
const SIGKILL: i32 = 9;

/// SplitMix64: a seeded generator for the kill delays, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (microseconds).
    fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo + self.next() % (hi - lo))
    }

    /// When to kill a worker after starting it: one time in five within its first 4 ms (the process
    /// starting, the store opening and recovering its write-ahead log), otherwise 4–100 ms in.
    fn kill_delay(&mut self) -> Duration {
        if self.next().is_multiple_of(5) {
            self.micros(0, 4_000)
        } else {
            self.micros(4_000, 100_000)
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{name}=`{v}` is not a number: {e}")),
        Err(_) => default,
    }
}

struct Files {
    store: PathBuf,
    ledger: PathBuf,
}

impl Files {
    fn worker(&self, instructions: u32) -> Child {
        Command::new(env!("CARGO_BIN_EXE_crash_worker"))
            .arg(&self.store)
            .arg(&self.ledger)
            .arg(instructions.to_string())
            .arg(RECORDS.to_string())
            .arg(TASKS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts")
    }

    /// Whether the store's write-ahead log holds frames (a killed worker leaves it for the next open).
    fn wal_pending(&self) -> bool {
        let mut wal = self.store.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
    }
}

/// What a worker printed, once it is gone.
fn output(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("the worker's stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("the worker's stderr");
    }
    (out, err)
}

/// Runs a worker to its end (no kill) and returns its run id.
fn run_to_end(files: &Files, instructions: u32) -> String {
    let mut child = files.worker(instructions);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the worker's status") {
            break status;
        }
        if started.elapsed() > WORKER_TIMEOUT {
            child.kill().expect("kill the stuck worker");
            child.wait().expect("reap the stuck worker");
            let (out, err) = output(&mut child);
            panic!("a worker ran for more than {WORKER_TIMEOUT:?}:\n{out}\n{err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (out, err) = output(&mut child);
    assert!(
        status.success() && out.lines().any(|l| l == "done"),
        "the last worker finishes the workload ({status}):\n{out}\n{err}"
    );
    run_id(&out).expect("the worker printed its run id")
}

fn run_id(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("opened "))
        .map(str::to_owned)
}

#[derive(Debug, Default)]
struct KillStats {
    kills: usize,
    /// Killed before the store was open and the agent built.
    during_startup: usize,
    /// Started while the store's write-ahead log held frames left by a killed worker.
    over_pending_wal: usize,
    /// Workers that finished the workload before their kill came.
    finished: usize,
}

/// Starts and kills the worker `kills` times.
fn kill_repeatedly(files: &Files, instructions: u32, kills: usize, seed: u64) -> KillStats {
    let mut rng = Rng(seed);
    let mut stats = KillStats::default();
    while stats.kills < kills {
        if files.wal_pending() {
            stats.over_pending_wal += 1;
        }
        let delay = rng.kill_delay();
        let mut child = files.worker(instructions);
        std::thread::sleep(delay);
        // SIGKILL (a worker that already exited is only reaped).
        child.kill().expect("send SIGKILL to the worker");
        let status = child.wait().expect("reap the worker");
        let (out, err) = output(&mut child);
        if status.signal() == Some(SIGKILL) {
            stats.kills += 1;
            if run_id(&out).is_none() {
                stats.during_startup += 1;
            }
        } else {
            assert!(
                status.success() && out.lines().any(|l| l == "done"),
                "a worker failed by itself ({status}) after {delay:?}:\n{out}\n{err}"
            );
            stats.finished += 1;
        }
    }
    stats
}

/// A read-only connection on one of the files.
fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

/// One request the ledger received.
#[derive(Debug)]
struct LedgerCall {
    key: String,
    account: String,
    run_id: String,
    fencing_token: i64,
}

struct LedgerState {
    applications: BTreeMap<String, i64>,
    /// key → the effect row as the action returns it (JSON).
    effects: BTreeMap<String, serde_json::Value>,
    balances: BTreeMap<String, i64>,
    /// In the order received.
    calls: Vec<LedgerCall>,
}

fn ledger_state(path: &Path) -> LedgerState {
    let conn = read_only(path);
    let applications = conn
        .prepare("SELECT key, count FROM applications")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let effects = conn
        .prepare("SELECT key, account, amount, applied_at_ms, run_id, fencing_token FROM effects")
        .unwrap()
        .query_map([], |r| {
            let key: String = r.get(0)?;
            let effect = json!({
                "key": key,
                "account": r.get::<_, String>(1)?,
                "amount": r.get::<_, i64>(2)?,
                "applied_at_ms": r.get::<_, i64>(3)?,
                "run_id": r.get::<_, String>(4)?,
                "fencing_token": r.get::<_, i64>(5)?,
            });
            Ok((key, effect))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let balances = conn
        .prepare("SELECT account, balance FROM balances")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let calls = conn
        .prepare("SELECT key, account, run_id, fencing_token FROM calls ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok(LedgerCall {
                key: r.get(0)?,
                account: r.get(1)?,
                run_id: r.get(2)?,
                fencing_token: r.get(3)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    LedgerState {
        applications,
        effects,
        balances,
        calls,
    }
}

/// The amount of instruction `id`, as the worker computes it.
fn amount(id: u32) -> i64 {
    i64::from(id.wrapping_mul(7919) % 1000) + 1
}

#[test]
fn a_worker_killed_at_random_moments_applies_every_instruction_exactly_once() {
    let kills = env_number("ACTGUARD_CRASH_KILLS", DEFAULT_KILLS as u64) as usize;
    let seed = env_number("ACTGUARD_CRASH_SEED", DEFAULT_SEED);
    let instructions = (INSTRUCTIONS_PER_50_KILLS as usize * kills.max(50) / 50) as u32;
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        store: dir.path().join("actguard.db"),
        ledger: dir.path().join("ledger.db"),
    };
    let started = Instant::now();

    let stats = kill_repeatedly(&files, instructions, kills, seed);
    let killing = started.elapsed();
    let last_run = run_to_end(&files, instructions);
    let total = started.elapsed();
    assert!(
        !files.wal_pending(),
        "a worker that ends cleanly closes the store, checkpointing its write-ahead log"
    );

    // The ledger: each instruction applied exactly once, balances the sum of the instructions.
    let ledger = ledger_state(&files.ledger);
    let keys: BTreeSet<String> = (0..instructions).map(|i| format!("pay:{i}")).collect();
    let applied_twice: Vec<_> = ledger
        .applications
        .iter()
        .filter(|(_, n)| **n != 1)
        .collect();
    assert!(
        applied_twice.is_empty(),
        "applied more than once: {applied_twice:?}"
    );
    let applied: BTreeSet<String> = ledger.applications.keys().cloned().collect();
    assert_eq!(applied, keys, "every instruction applied, and nothing else");
    let mut expected_balances = BTreeMap::new();
    for i in 0..instructions {
        *expected_balances
            .entry(format!("account:{}", i % RECORDS))
            .or_insert(0) += amount(i);
        let effect = &ledger.effects[&format!("pay:{i}")];
        assert_eq!(effect["amount"], amount(i), "pay:{i}");
        assert_eq!(
            effect["account"],
            format!("account:{}", i % RECORDS),
            "pay:{i}"
        );
    }
    assert_eq!(ledger.balances, expected_balances);

    // The store's log: one `Succeeded` entry per key, carrying the ledger's effect; replays return it.
    let store = SqliteStore::open(&files.store).expect("the store opens after the last worker");
    let log: Vec<LogEntry> = block_on(store.log(&LogQuery::default())).unwrap();
    let mut succeeded: BTreeMap<String, &LogEntry> = BTreeMap::new();
    let mut replayed = 0usize;
    let mut last_run_results: BTreeMap<String, usize> = BTreeMap::new();
    for e in &log {
        let key = &e.entry.key_text;
        match e.entry.outcome {
            Outcome::Succeeded => {
                let first = succeeded.insert(key.to_string(), e);
                assert!(
                    first.is_none(),
                    "{key} succeeded twice: {first:?} and {e:?}"
                );
            }
            Outcome::Replayed => replayed += 1,
            Outcome::Retrying => {}
            other => panic!("unexpected log entry {other:?}: {e:?}"),
        }
        if matches!(e.entry.outcome, Outcome::Succeeded | Outcome::Replayed) {
            assert_eq!(
                e.entry.after.as_ref(),
                Some(&ledger.effects[key.as_str()]),
                "the result logged for {key} is the ledger's effect"
            );
            if e.entry.run_id.to_string() == last_run {
                *last_run_results.entry(key.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        succeeded.keys().cloned().collect::<BTreeSet<_>>(),
        keys,
        "every key has its `Succeeded` entry"
    );
    assert_eq!(
        last_run_results.keys().cloned().collect::<BTreeSet<_>>(),
        keys,
        "the last run got a result for every key"
    );
    assert!(last_run_results.values().all(|n| *n == 1));

    // The ledger's calls: the last call of each key is the one that completed (same run, same fencing
    // token): nothing called the ledger again after a key completed. Tokens never go back on an account.
    let mut calls_per_key: BTreeMap<&str, Vec<&LedgerCall>> = BTreeMap::new();
    let mut token_per_account: BTreeMap<&str, i64> = BTreeMap::new();
    for call in &ledger.calls {
        calls_per_key.entry(&call.key).or_default().push(call);
        let highest = token_per_account.entry(&call.account).or_insert(0);
        assert!(
            call.fencing_token >= *highest,
            "a stale fencing token reached the ledger: {call:?} after token {highest}"
        );
        *highest = call.fencing_token;
    }
    for (key, calls) in &calls_per_key {
        let last = calls.last().unwrap();
        let done = succeeded[*key];
        assert_eq!(
            (last.run_id.as_str(), Some(last.fencing_token as u64)),
            (
                done.entry.run_id.to_string().as_str(),
                done.entry.fencing_token
            ),
            "{key}: the ledger was called after the call that completed: {calls:?}"
        );
        // A worker that took over a dead worker's claim holds a newer fencing token, and its attempt
        // is a retry.
        for pair in calls.windows(2) {
            if pair[0].run_id != pair[1].run_id {
                assert!(
                    pair[1].fencing_token > pair[0].fencing_token,
                    "{key}: a takeover kept the dead worker's fencing token: {calls:?}"
                );
                assert!(
                    done.entry.retry,
                    "{key}: completed after a takeover, but not logged as a retry: {done:?}"
                );
            }
        }
    }
    let repeated_calls = calls_per_key.values().filter(|c| c.len() > 1).count();
    let takeovers = succeeded.values().filter(|e| e.entry.retry).count();
    let done_under_kills = succeeded
        .values()
        .filter(|e| e.entry.run_id.to_string() != last_run)
        .count();

    // The store's tables, read-only (the `Store` trait has no query for key states or record leases).
    let conn = read_only(&files.store);
    let states: Vec<(String, String)> = conn
        .prepare("SELECT key_text, state FROM keys")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(states.len(), keys.len());
    for (key, state) in &states {
        assert_eq!(state, "completed", "{key}");
        assert!(
            succeeded.contains_key(key),
            "{key} completed without its log entry"
        );
    }
    let held: Vec<String> = conn
        .prepare("SELECT record FROM records WHERE holder_digest IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(held.is_empty(), "record leases still held: {held:?}");

    let verified = block_on(verify(&store)).expect("the hash chain verifies");
    assert_eq!(verified, log.len() as u64);

    println!(
        "crash: seed {seed:#x}, {instructions} instructions over {RECORDS} accounts, {} kills \
         ({} during startup/open, {} restarts over a pending WAL, {} workers finished before their \
         kill), {done_under_kills} keys completed by killed workers, {takeovers} claims taken over, {repeated_calls} keys whose worker died after the ledger's \
         write, {} ledger calls, {} log entries ({replayed} replays); killing {killing:.1?}, total \
         {total:.1?}",
        stats.kills,
        stats.during_startup,
        stats.over_pending_wal,
        stats.finished,
        ledger.calls.len(),
        log.len(),
    );
    assert!(stats.kills >= kills);
    assert!(
        stats.during_startup > 0,
        "some kills hit the startup: {stats:?}"
    );
    assert!(
        stats.over_pending_wal > 0,
        "some restarts recovered a WAL: {stats:?}"
    );
    assert!(
        repeated_calls > 0,
        "some worker died between the ledger's write and `complete`"
    );
}

/// Runs a store future to its end on a small runtime (the test itself is synchronous: it drives
/// processes).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Fresh stores whose creating worker is killed, each at a different moment of the creation.
const CREATION_KILLS: u64 = 30;

#[test]
fn a_store_killed_while_it_is_being_created_opens_on_restart() {
    let seed = env_number("ACTGUARD_CRASH_SEED", DEFAULT_SEED);
    let mut rng = Rng(seed ^ 0xc4ea7e);
    // How long a worker takes to create its store and finish on this machine: the kills are spread
    // over that window, so they land during creation however fast or slow the machine is.
    // The shortest of three runs: a run slowed by a busy machine would spread the kills past the end
    // of most workers.
    let window = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let files = Files {
                store: dir.path().join("actguard.db"),
                ledger: dir.path().join("ledger.db"),
            };
            let start = Instant::now();
            run_to_end(&files, 4);
            start.elapsed()
        })
        .min()
        .unwrap();
    let step = (window / CREATION_KILLS as u32).max(Duration::from_micros(100));
    let mut killed = 0;
    for round in 0..CREATION_KILLS {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            store: dir.path().join("actguard.db"),
            ledger: dir.path().join("ledger.db"),
        };
        // Spread over the window: creating the file, switching it to WAL, the migrations, the work.
        let delay = step * round as u32 + rng.micros(0, step.as_micros() as u64);
        let mut child = files.worker(4);
        std::thread::sleep(delay);
        child.kill().expect("send SIGKILL to the worker");
        let status = child.wait().expect("reap the worker");
        let (out, err) = output(&mut child);
        if status.signal() == Some(SIGKILL) {
            killed += 1;
        } else {
            assert!(
                status.success(),
                "the worker failed ({status}):\n{out}\n{err}"
            );
        }
        // The next worker opens the store (or creates it) and finishes.
        run_to_end(&files, 4);
        let ledger = ledger_state(&files.ledger);
        assert_eq!(ledger.applications.len(), 4, "after a kill at {delay:?}");
        assert!(ledger.applications.values().all(|n| *n == 1));
    }
    println!(
        "creation: {killed} of {CREATION_KILLS} workers killed within the {window:?} a worker takes"
    );
    assert!(killed > CREATION_KILLS / 2);
}
