//! Several worker processes (`pg_worker`) sharing one `PostgresStore` schema and the same records:
//! writers never overlap at the downstream, each key acts once, the loop filter holds, a halt is seen
//! by every process, a killed worker's lease is taken over, and a stale writer is fenced out.
//!
//! The workers drive the `Store` trait as the guarded call does (begin → downstream write → complete);
//! the downstream is three tables of the same schema: `effects` (one row per accepted write),
//! `in_flight` (primary key on the record: a second concurrent writer fails the worker with exit 3)
//! and `fence` (the highest fencing token seen per record: a lower token is rejected).

use crate::support::pg_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use actguard::log::Outcome;
use actguard::store::{Begin, BeginRequest, RunState};
use actguard::{LogQuery, PostgresStore, Store, verify_chain};
use pg_support::{Schema, connect, fresh_store};
use uuid::Uuid;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A fresh schema with the store's tables and the simulated downstream.
fn setup(rt: &tokio::runtime::Runtime) -> (PostgresStore, Schema) {
    rt.block_on(async {
        let (store, schema) = fresh_store().await;
        let s = &schema.name;
        connect(&schema.url)
            .await
            .batch_execute(&format!(
                "CREATE TABLE {s}.effects (
                     id BIGSERIAL PRIMARY KEY, record TEXT NOT NULL, key TEXT NOT NULL,
                     fencing_token BIGINT NOT NULL, writer TEXT NOT NULL, run_id TEXT NOT NULL,
                     started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL);
                 CREATE TABLE {s}.in_flight (record TEXT PRIMARY KEY, writer TEXT NOT NULL);
                 CREATE TABLE {s}.fence (record TEXT PRIMARY KEY, max_token BIGINT NOT NULL);"
            ))
            .await
            .expect("the downstream tables");
        (store, schema)
    })
}

fn worker(schema: &Schema, mode: &str, writer: &str, run: Uuid, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg_worker"));
    cmd.arg(mode)
        .arg(&schema.name)
        .arg(writer)
        .arg(run.to_string())
        .args(args)
        .env(PostgresStore::URL_ENV, &schema.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a worker and checks it exited 0; returns its stdout.
fn finished(name: &str, child: Child) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("the worker runs");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "worker {name} failed ({status}): {}{stdout}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// The accepted downstream writes: (record, key, fencing_token, writer, started_us, ended_us). In
/// `contend`, `started_us` is taken when `begin` answered `Claimed`; in `until_halt`, before `begin`
/// was called.
type Effect = (String, String, i64, String, i64, i64);

fn effects(rt: &tokio::runtime::Runtime, schema: &Schema) -> Vec<Effect> {
    rt.block_on(async {
        connect(&schema.url)
            .await
            .query(
                &format!(
                    "SELECT record, key, fencing_token, writer, started_us, ended_us
                     FROM {}.effects ORDER BY record, started_us",
                    schema.name
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    })
}

#[test]
fn workers_on_shared_records_never_overlap_and_act_once_per_key() {
    const WORKERS: usize = 6;
    const RECORDS: usize = 4;
    const KEYS: usize = 120;
    let rt = rt();
    let (store, schema) = setup(&rt);
    let run = Uuid::now_v7();
    let children: Vec<Child> = (0..WORKERS)
        .map(|i| {
            let (records, keys) = (RECORDS.to_string(), KEYS.to_string());
            worker(
                &schema,
                "contend",
                &format!("w{i}"),
                run,
                &[&records, &keys],
            )
            .spawn()
            .expect("the worker starts")
        })
        .collect();
    let acted: usize = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let out = finished(&format!("w{i}"), c);
            out.trim()
                .strip_prefix("ACTED ")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("unexpected output: {out}"))
        })
        .sum();
    assert_eq!(acted, KEYS, "every key acted once across all workers");

    let effects = effects(&rt, &schema);
    assert_eq!(effects.len(), KEYS, "one downstream write per key");
    let mut keys: Vec<&str> = effects.iter().map(|e| e.1.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), KEYS, "no key was written twice");
    let mut per_record: BTreeMap<&str, Vec<&Effect>> = BTreeMap::new();
    for e in &effects {
        per_record.entry(e.0.as_str()).or_default().push(e);
    }
    assert_eq!(per_record.len(), RECORDS);
    for (record, writes) in per_record {
        for pair in writes.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                b.4 >= a.5,
                "{record}: the write of {} started before the write of {} ended",
                b.1,
                a.1
            );
            assert!(
                b.2 > a.2,
                "{record}: fencing tokens increase in write order"
            );
        }
    }
    let writers: std::collections::HashSet<&str> = effects.iter().map(|e| e.3.as_str()).collect();
    assert!(
        writers.len() > 1,
        "more than one process acted: {writers:?}"
    );

    rt.block_on(async {
        let log = store.log(&LogQuery::default()).await.unwrap();
        assert_eq!(log.len(), KEYS);
        assert!(log.iter().all(|e| e.entry.outcome == Outcome::Succeeded));
        assert_eq!(verify_chain(&log), Ok(KEYS as u64));
    });
}

#[test]
fn loop_filter_holds_across_processes() {
    let rt = rt();
    let (_store, schema) = setup(&rt);
    let run = Uuid::now_v7();
    let children: Vec<Child> = (0..6)
        .map(|i| {
            worker(&schema, "loop_filter", &format!("w{i}"), run, &[])
                .spawn()
                .expect("the worker starts")
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| finished(&format!("w{i}"), c))
        .collect();
    let acted = outputs.iter().filter(|o| o.trim() == "ACTED").count();
    let skipped = outputs.iter().filter(|o| o.starts_with("SKIPPED ")).count();
    assert_eq!((acted, skipped), (1, 5), "outputs: {outputs:?}");
    assert_eq!(
        effects(&rt, &schema).len(),
        1,
        "one write to the shared record"
    );
}

#[test]
fn a_halt_by_one_process_is_seen_by_every_other_before_its_next_begin() {
    let rt = rt();
    let (store, schema) = setup(&rt);
    let run = Uuid::now_v7();
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let halt_after = if i == 0 { "20" } else { "0" };
            worker(&schema, "until_halt", &format!("w{i}"), run, &[halt_after])
                .spawn()
                .expect("the worker starts")
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| finished(&format!("w{i}"), c))
        .collect();
    assert!(
        outputs.iter().all(|o| o.contains("SAW_HALT")),
        "every worker saw the halt: {outputs:?}"
    );
    let halted_at: i64 = outputs[0]
        .lines()
        .find_map(|l| l.strip_prefix("HALTED_AT "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the halting worker reports when: {}", outputs[0]));
    let effects = effects(&rt, &schema);
    assert!(effects.len() >= 20, "worker w0 acted before halting");
    let late: Vec<_> = effects.iter().filter(|e| e.4 > halted_at).collect();
    assert!(
        late.is_empty(),
        "no begin that started after the halt committed acted: {late:?}"
    );
    rt.block_on(async {
        assert!(matches!(
            store.run_state(run).await.unwrap(),
            RunState::Halted { .. }
        ));
    });
}

/// A worker in `claim` mode, driven line by line.
struct Claimer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Claimer {
    fn start(schema: &Schema, writer: &str, run: Uuid, key: &str, offset_ms: i64) -> Claimer {
        let offset = offset_ms.to_string();
        let mut child = worker(
            schema,
            "claim",
            writer,
            run,
            &[key, "rec-x", "30000", &offset],
        )
        .stdin(Stdio::piped())
        .spawn()
        .expect("the worker starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Claimer {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("a line");
        assert!(
            !line.is_empty(),
            "the worker ended early: {:?}",
            self.child.try_wait()
        );
        line.trim().to_owned()
    }

    fn send(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("the worker reads stdin");
        self.stdin.flush().expect("flush");
        self.line()
    }

    fn exit(mut self) {
        writeln!(self.stdin, "exit").expect("the worker reads stdin");
        let status = self.child.wait().expect("the worker ends");
        assert!(status.success(), "{status}");
    }
}

const LEASE_PLUS: i64 = 31_000;

#[test]
fn a_worker_killed_mid_claim_loses_its_lease_and_another_takes_over_and_finishes() {
    let rt = rt();
    let (store, schema) = setup(&rt);
    let run = Uuid::now_v7();

    let mut doomed = Claimer::start(&schema, "doomed", run, "kx", 0);
    assert_eq!(doomed.line(), "CLAIMED 1 false");
    doomed.child.kill().expect("SIGKILL");
    let status = doomed.child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    // While the dead worker's lease is live, nobody else may act.
    let mut early = Claimer::start(&schema, "early", run, "kx", 0);
    let answer = early.line();
    assert!(answer.starts_with("ANSWER InProgress"), "{answer}");
    finished("early", early.child);

    // After it expires (the worker's clock is 31 s ahead), another worker takes over and finishes.
    let mut heir = Claimer::start(&schema, "heir", run, "kx", LEASE_PLUS);
    assert_eq!(heir.line(), "CLAIMED 2 true");
    assert_eq!(heir.send("write"), "WRITE accepted");
    assert!(heir.send("complete").starts_with("COMPLETE ok"));
    heir.exit();

    let effects = effects(&rt, &schema);
    assert_eq!(effects.len(), 1);
    assert_eq!((effects[0].2, effects[0].3.as_str()), (2, "heir"));
    rt.block_on(async {
        let replay = store
            .begin(&BeginRequest {
                run_id: run,
                action: "ship".to_owned().into(),
                key_text: "kx".to_owned().into(),
                key_digest: "digest:kx".to_owned().into(),
                record: "rec-x".to_owned().into(),
                fingerprint: "fp".to_owned().into(),
                payload: actguard::PayloadJson::from(serde_json::json!({ "key": "kx" })),
                claim_id: Uuid::now_v7(),
                now_ms: 4_000_000_000_000,
                lease_ms: 30_000,
                dedup_ms: None,
                replay_of: None,
            })
            .await
            .unwrap();
        let Begin::Completed { result, .. } = replay else {
            panic!("the key is completed: {replay:?}");
        };
        assert_eq!(result, serde_json::json!({ "writer": "heir" }));
    });
}

#[test]
fn a_stale_writer_is_rejected_by_the_store_and_the_downstream() {
    let rt = rt();
    let (store, schema) = setup(&rt);
    let run = Uuid::now_v7();

    let mut stale = Claimer::start(&schema, "stale", run, "ky", 0);
    assert_eq!(stale.line(), "CLAIMED 1 false");
    // The stale worker stalls past its lease; another worker takes over and writes with token 2.
    let mut fresh = Claimer::start(&schema, "fresh", run, "ky", LEASE_PLUS);
    assert_eq!(fresh.line(), "CLAIMED 2 true");
    assert_eq!(fresh.send("write"), "WRITE accepted");
    assert!(fresh.send("complete").starts_with("COMPLETE ok"));
    fresh.exit();

    // The stale worker wakes up: the downstream rejects token 1, the store rejects its completion.
    assert_eq!(stale.send("write"), "WRITE stale");
    assert_eq!(stale.send("complete"), "COMPLETE claim_lost");
    stale.exit();

    let effects = effects(&rt, &schema);
    assert_eq!(effects.len(), 1, "only the fresh writer's write landed");
    assert_eq!((effects[0].2, effects[0].3.as_str()), (2, "fresh"));
    rt.block_on(async {
        assert_eq!(store.current_fencing_token("rec-x").await.unwrap(), Some(2));
    });
}
