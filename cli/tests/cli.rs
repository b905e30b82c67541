//! The `actguard` binary against a store filled by the shipping scenario (examples/ship_agent):
//! listing, showing, verifying (and detecting a tampered file), runs, queues, blast radius, manifests,
//! and plain errors.

#[path = "../examples/ship_agent/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use std::path::{Path, PathBuf};

use actguard::SqliteStore;
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

use scenario::{Filled, World};

/// A tempdir holding `actguard.db`, filled by the scenario (backoff sleeps on paused time).
fn filled_store() -> (TempDir, PathBuf, Filled) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let filled = rt.block_on(async {
        let world = World::new(SqliteStore::open(&path).unwrap());
        scenario::fill(&world).await
    });
    (dir, path, filled)
}

fn actguard(store: &Path) -> Command {
    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.env_remove("ACTGUARD_STORE").arg("--store").arg(store);
    cmd
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).expect("--json prints JSON")
}

/// A failure that reads as a plain error: `error: ...` on stderr, no panic, no backtrace.
fn plain_error(cmd: &mut Command, code: i32, message: &str) {
    cmd.assert()
        .code(code)
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains(message))
        .stderr(predicate::str::contains("panicked").not())
        .stderr(predicate::str::contains("backtrace").not());
}

#[test]
fn log_lists_the_scenario_as_a_table_and_as_json() {
    let (_dir, db, filled) = filled_store();
    actguard(&db)
        .arg("log")
        .assert()
        .success()
        .stdout(predicate::str::contains("seq  time"))
        .stdout(predicate::str::contains("dead_lettered"))
        .stdout(predicate::str::contains(
            "validation, queue #1: invalid request: address has no postcode",
        ))
        .stdout(predicate::str::contains("48 entries"));

    let all = json(actguard(&db).args(["log", "--json"]));
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 48);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=48).collect::<Vec<_>>());

    let routed = json(actguard(&db).args([
        "log",
        "--action",
        "ship_order",
        "--outcome",
        "routed",
        "--json",
    ]));
    let records: Vec<&str> = routed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"].as_str().unwrap())
        .collect();
    assert_eq!(records, ["O-4", "O-5"]);

    // The short run id shown in tables selects the run.
    let short = &filled.priority_run.simple().to_string()[24..];
    let flagged = json(actguard(&db).args(["log", "--run", short, "--json"]));
    assert_eq!(flagged.as_array().unwrap().len(), 40);

    let last = json(actguard(&db).args(["log", "--limit", "2", "--json"]));
    let seqs: Vec<u64> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [47, 48]);

    let future = json(actguard(&db).args(["log", "--since", "2999-01-01", "--json"]));
    assert_eq!(future.as_array().unwrap().len(), 0);
    let recent = json(actguard(&db).args(["log", "--since", "1h", "--json"]));
    assert_eq!(recent.as_array().unwrap().len(), 48);
}

#[test]
fn show_prints_one_entry_in_full_with_before_and_after() {
    let (_dir, db, _) = filled_store();
    let flags = json(actguard(&db).args(["log", "--action", "flag_priority", "--json"]));
    let first = flags[0]["seq"].as_u64().unwrap().to_string();
    actguard(&db)
        .args(["show", &first])
        .assert()
        .success()
        .stdout(predicate::str::contains("action:        flag_priority"))
        .stdout(predicate::str::contains("record:        S-005"))
        .stdout(predicate::str::contains(
            "key:           flag_priority:S-005",
        ))
        .stdout(predicate::str::contains("before:\n  \"normal\""))
        .stdout(predicate::str::contains("after:\n  \"high\""));
    let entry = json(actguard(&db).args(["show", &first, "--json"]));
    assert_eq!(entry["after"], "high");

    plain_error(
        actguard(&db).args(["show", "999"]),
        1,
        "no log entry with seq 999",
    );
}

#[test]
fn verify_passes_then_detects_an_edited_row_with_exit_2() {
    let (_dir, db, _) = filled_store();
    actguard(&db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "ok: 48 entries verified\nhead: 48:",
        ));

    // Someone rewrites history: entry 10 now says it flagged another shipment.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE log SET entry = json_set(entry, '$.record', 'S-999') WHERE seq = 10",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    // The entry no longer agrees with its `record` column either: the read that verifies the chain
    // refuses the row, saying that the entry was modified.
    actguard(&db)
        .arg("verify")
        .assert()
        .code(2)
        .stdout(predicate::str::starts_with("TAMPERED: "))
        .stdout(predicate::str::contains(
            "log entry 10 was modified: its hash does not match its content",
        ))
        .stderr(predicate::str::contains(
            "error: the action log does not verify: ",
        ))
        .stderr(predicate::str::contains("log entry 10 was modified"))
        .stderr(predicate::str::contains("panicked").not());
}

/// The head `verify` printed: `head: SEQ:HASH`.
fn printed_head(db: &Path) -> String {
    let out = actguard(db)
        .arg("verify")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("no head line in {out:?}"))
        .to_owned();
    let (seq, hash) = head.split_once(':').expect("SEQ:HASH");
    assert!(seq.parse::<u64>().is_ok(), "{head}");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{head}"
    );
    head
}

#[test]
fn verify_prints_the_head_as_seq_and_hash() {
    let (_dir, db, _) = filled_store();
    let head = printed_head(&db);
    let last = json(actguard(&db).args(["show", "48", "--json"]));
    assert_eq!(head, format!("48:{}", last["hash"].as_str().unwrap()));
    actguard(&db)
        .args(["verify", "--expect-head", &head])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("head: {head}")));
}

#[test]
fn verify_expect_head_exits_2_when_the_last_rows_were_deleted() {
    let (_dir, db, _) = filled_store();
    let head = printed_head(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM log WHERE seq > 45", []).unwrap();
    drop(conn);
    // The shorter chain verifies on its own ...
    actguard(&db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains("head: 45:"));
    // ... but not against the head kept outside the store.
    actguard(&db)
        .args(["verify", "--expect-head", &head])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "TAMPERED: log entry 48 of the expected head",
        ))
        .stderr(predicate::str::contains(
            "error: the action log was tampered with: log entry 48 of the expected head",
        ))
        .stderr(predicate::str::contains("the log ends at entry 45"));
}

#[test]
fn verify_expect_head_exits_2_when_the_entry_has_another_hash() {
    let (_dir, db, _) = filled_store();
    let other = format!("40:{}", "ab".repeat(32));
    actguard(&db)
        .args(["verify", "--expect-head", &other])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "TAMPERED: log entry 40 does not have the expected hash",
        ));
    plain_error(
        actguard(&db).args(["verify", "--expect-head", "48"]),
        1,
        "is not a log head",
    );
}

#[test]
fn verify_names_the_entry_and_the_column_edited_and_filtered_queries_refuse_the_row() {
    let (_dir, db, _) = filled_store();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE log SET record = 'S-999' WHERE seq = 12", [])
        .unwrap();
    drop(conn);
    actguard(&db)
        .arg("verify")
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "log entry 12 was tampered with: its `record` column holds \"S-999\"",
        ))
        .stderr(predicate::str::contains(
            "error: the action log does not verify: ",
        ));
    // Selecting by the edited value, or reading the whole log: an error, never the row.
    for args in [&["log", "--record", "S-999"][..], &["log"][..]] {
        actguard(&db)
            .args(args)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("S-999").not())
            .stderr(predicate::str::contains("log entry 12 was tampered with"));
    }
}

#[test]
fn verify_detects_a_deleted_row() {
    let (_dir, db, _) = filled_store();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM log WHERE seq = 20", []).unwrap();
    drop(conn);
    actguard(&db)
        .arg("verify")
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "TAMPERED: log sequence jumps from 19 to 21",
        ));
}

#[test]
fn verify_reports_a_row_that_no_longer_parses_as_tampered() {
    let (_dir, db, _) = filled_store();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE log SET entry = 'garbage' WHERE seq = 5", [])
        .unwrap();
    drop(conn);
    actguard(&db)
        .arg("verify")
        .assert()
        .code(2)
        .stdout(predicate::str::starts_with("TAMPERED: "))
        .stderr(predicate::str::contains(
            "error: the action log does not verify: ",
        ))
        .stderr(predicate::str::contains("unreadable log entry"));
}

/// A store holding one entry as an earlier release could write it: its `before` state nested
/// `depth` levels deep (no limit then).
fn store_with_a_deep_entry(depth: usize) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let mut before = serde_json::json!("normal");
    for _ in 0..depth {
        before = Value::Array(vec![before]);
    }
    let entry: actguard::log::NewLogEntry = serde_json::from_value(serde_json::json!({
        "at_ms": 1_700_000_000_000i64, "run_id": "01a2352b-232b-71f0-b15f-d6d841741be1",
        "action": "relabel", "record": "S-1", "key_text": "relabel:S-1", "key_digest": "d1",
        "attempt": 1, "retry": false, "outcome": "succeeded", "failure_kind": null, "route": null,
        "message": null, "queue_entry": null, "before": before, "after": "high",
        "fencing_token": 1, "duration_ms": 1,
    }))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        actguard::Store::append_log(&store, &entry).await.unwrap();
        store.close().unwrap();
    });
    (dir, path)
}

/// An entry nested deeper than serde_json reads by default is read, shown and verified; one deeper
/// than this release reads is reported as such (exit 1), never as tampering.
#[test]
fn deep_entries_read_and_verify_and_deeper_ones_are_not_called_tampered() {
    let (_dir, db) = store_with_a_deep_entry(200);
    actguard(&db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ok: 1 entry verified"));
    actguard(&db)
        .args(["show", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"normal\""));
    actguard(&db).arg("runs").assert().success();

    let (_dir, db) = store_with_a_deep_entry(actguard::MAX_READ_DEPTH);
    actguard(&db)
        .arg("verify")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("TAMPERED").not())
        .stderr(predicate::str::starts_with(
            "error: store data too deep to read: ",
        ))
        .stderr(predicate::str::contains("is not damaged"))
        .stderr(predicate::str::contains("panicked").not());
    plain_error(actguard(&db).arg("log"), 1, "too deep to read");
}

#[test]
fn runs_lists_each_run_and_shows_the_halted_one() {
    let (_dir, db, filled) = filled_store();
    let halted = filled.halted_run.to_string();
    actguard(&db)
        .arg("runs")
        .assert()
        .success()
        .stdout(predicate::str::contains("3 runs"))
        .stdout(predicate::str::contains("40 succeeded"))
        .stdout(predicate::str::contains(
            "1 dead_lettered, 1 retrying, 2 routed, 3 succeeded",
        ))
        .stdout(predicate::str::is_match(format!("{halted} .* HALTED at .*forbidden")).unwrap());

    let runs = json(actguard(&db).args(["runs", "--json"]));
    let state: Vec<(String, bool)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["halted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            (filled.shipping_run.to_string(), false),
            (filled.priority_run.to_string(), false),
            (halted, true),
        ]
    );
    assert_eq!(runs[2]["outcomes"]["halted"], 1);
    // Each run shows the head the log had after its last entry; the last run's is the log's head.
    let head = printed_head(&db);
    assert_eq!(runs[2]["head"], head.as_str());
    let first_head = runs[0]["head"].as_str().unwrap();
    assert!(
        first_head
            .split_once(':')
            .unwrap()
            .0
            .parse::<u64>()
            .unwrap()
            < 48,
        "{first_head}"
    );
    actguard(&db)
        .arg("runs")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("\nhead: {head}\n")));
}

#[test]
fn verify_checkpoint_appends_the_head_and_then_expects_it() {
    let (dir, db, _) = filled_store();
    let file = dir.path().join("heads.txt");
    let file_arg = file.to_str().unwrap();
    let head = printed_head(&db);
    actguard(&db)
        .args(["verify", "--checkpoint", file_arg])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "checkpoint: {head} appended to"
        )));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(&format!("{head} ")), "{text}");
    assert!(text.ends_with(" 48 entries\n"), "{text}");
    // Nothing moved: nothing appended.
    actguard(&db)
        .args(["verify", "--checkpoint", file_arg])
        .assert()
        .success()
        .stdout(predicate::str::contains("checkpoint: unchanged"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // Entries deleted from the end since the checkpoint: the shorter chain verifies on its own, but
    // not against the checkpoint, and nothing is appended.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM log WHERE seq > 45", []).unwrap();
    drop(conn);
    actguard(&db)
        .args(["verify", "--checkpoint", file_arg])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "TAMPERED: log entry 48 of the expected head",
        ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    plain_error(
        actguard(&db).args(["verify", "--checkpoint", file_arg, "--expect-head", &head]),
        1,
        "cannot be used with",
    );
}

#[test]
fn queue_ls_filters_and_queue_show_prints_the_payload() {
    let (_dir, db, filled) = filled_store();
    actguard(&db)
        .args(["queue", "ls"])
        .assert()
        .success()
        .stdout(predicate::str::contains("owner warehouse-data"))
        .stdout(predicate::str::contains("expert logistics"))
        .stdout(predicate::str::contains("dead_letter dead-letter"))
        .stdout(predicate::str::contains("security security"))
        .stdout(predicate::str::contains("4 entries"));

    let dead = json(actguard(&db).args(["queue", "ls", "--queue", "dead_letter", "--json"]));
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"].as_u64(), Some(filled.dead_letter_entry));
    assert_eq!(dead[0]["attempts"], 2);

    let owner = json(actguard(&db).args(["queue", "ls", "--name", "warehouse-data", "--json"]));
    assert_eq!(owner[0]["id"].as_u64(), Some(filled.owner_entry));
    let none = json(actguard(&db).args(["queue", "ls", "--status", "resolved", "--json"]));
    assert_eq!(none.as_array().unwrap().len(), 0);
    let old = json(actguard(&db).args(["queue", "ls", "--older-than", "1d", "--json"]));
    assert_eq!(old.as_array().unwrap().len(), 0);

    actguard(&db)
        .args(["queue", "show", &filled.expert_entry.to_string()])
        .assert()
        .success()
        .stdout(predicate::str::contains("queue:         expert logistics"))
        .stdout(predicate::str::contains(
            "message:       state conflict: order is on hold for a credit check",
        ))
        .stdout(predicate::str::contains("\"id\": \"O-5\""));
    plain_error(
        actguard(&db).args(["queue", "show", "99"]),
        1,
        "no queue entry with id 99",
    );
}

#[test]
fn blast_radius_finds_exactly_the_40_flagged_shipments() {
    let (_dir, db, filled) = filled_store();
    let run = filled.priority_run.to_string();
    let radius = json(actguard(&db).args([
        "blast-radius",
        "--action",
        "flag_priority",
        "--run",
        &run,
        "--json",
    ]));
    let records: Vec<String> = radius
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(records, filled.flagged);
    assert!(
        radius
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["before"] == "normal" && e["after"] == "high")
    );
    actguard(&db)
        .args(["blast-radius", "--action", "flag_priority", "--run", &run])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"normal\" → \"high\""))
        .stdout(predicate::str::contains("40 records written"));
    plain_error(
        actguard(&db).arg("blast-radius"),
        1,
        "at least one of --action, --run or --record",
    );
}

#[test]
fn queue_claim_resolve_and_discard_change_the_entries_and_are_logged() {
    let (_dir, db, filled) = filled_store();
    let owner = filled.owner_entry.to_string();
    let expert = filled.expert_entry.to_string();
    actguard(&db)
        .args(["queue", "claim", &owner, "--by", "dana"])
        .assert()
        .success()
        .stdout(format!(
            "queue entry {owner} (owner warehouse-data, ship_order O-4) claimed by dana\n"
        ));
    let claimed = json(actguard(&db).args(["queue", "show", &owner, "--json"]));
    assert_eq!(
        (&claimed["status"], &claimed["claimed_by"]),
        (&"claimed".into(), &"dana".into())
    );

    actguard(&db)
        .args(["queue", "resolve", &owner, "--by", "dana", "--note"])
        .arg("postcode added in the ERP")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "resolved by dana: postcode added in the ERP",
        ));
    // --by defaults to $USER.
    actguard(&db)
        .env("USER", "sam")
        .args(["queue", "discard", &expert, "--note", "order cancelled"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "discarded by sam: order cancelled",
        ));

    let resolved = json(actguard(&db).args(["queue", "ls", "--status", "resolved", "--json"]));
    assert_eq!(resolved.as_array().unwrap().len(), 1);
    assert_eq!(resolved[0]["note"], "postcode added in the ERP");
    let discarded = json(actguard(&db).args(["queue", "ls", "--status", "discarded", "--json"]));
    assert_eq!(discarded[0]["claimed_by"], "sam");
    actguard(&db)
        .args(["queue", "show", &owner])
        .assert()
        .success()
        .stdout(predicate::str::contains("status:        resolved"))
        .stdout(predicate::str::contains(
            "note:          postcode added in the ERP",
        ));

    // Settled entries cannot be settled again; unknown ones are plain errors.
    plain_error(
        actguard(&db).args(["queue", "discard", &owner, "--note", "again"]),
        1,
        "is resolved: it cannot be discarded",
    );
    plain_error(
        actguard(&db).args(["queue", "claim", "99"]),
        1,
        "no queue entry with id 99",
    );

    // Every operator action is in the log, and the chain still verifies.
    let operator = json(actguard(&db).args(["log", "--outcome", "operator", "--json"]));
    let messages: Vec<&str> = operator
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            format!("queue entry {owner} claimed by dana"),
            format!("queue entry {owner} resolved by dana: postcode added in the ERP"),
            format!("queue entry {expert} discarded by sam: order cancelled"),
        ]
    );
    actguard(&db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "ok: 51 entries verified\nhead: 51:",
        ));
}

#[test]
fn replay_and_revert_explain_that_they_need_the_agents_binary() {
    let (_dir, db, filled) = filled_store();
    for args in [
        format!("queue replay {}", filled.dead_letter_entry),
        "revert --action flag_priority".to_owned(),
    ] {
        plain_error(
            actguard(&db).args(args.split(' ')),
            1,
            "which this standalone binary does not have",
        );
        actguard(&db)
            .args(args.split(' '))
            .assert()
            .stderr(predicate::str::contains("Ops(actguard_cli::OpsCommand)"))
            .stderr(predicate::str::contains(
                "actguard_cli::run_ops(&agent, cmd)",
            ));
    }
}

#[test]
fn a_missing_store_is_a_plain_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    plain_error(
        actguard(&missing).arg("log"),
        1,
        &format!(
            "no action store at {}: run the agent first, or pass --store",
            missing.display()
        ),
    );
    assert!(!missing.exists());

    // The default is actguard.db in the working directory.
    plain_error(
        Command::cargo_bin("actguard")
            .unwrap()
            .env_remove("ACTGUARD_STORE")
            .current_dir(dir.path())
            .arg("runs"),
        1,
        "no action store at actguard.db",
    );
    assert!(!dir.path().join("actguard.db").exists());
}

#[test]
fn store_urls_and_the_environment_variable_name_the_store() {
    let (_dir, db, _) = filled_store();
    Command::cargo_bin("actguard")
        .unwrap()
        .env("ACTGUARD_STORE", &db)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "ok: 48 entries verified\nhead: 48:",
        ));
    Command::cargo_bin("actguard")
        .unwrap()
        .env_remove("ACTGUARD_STORE")
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .arg("verify")
        .assert()
        .success();

    let url = |u: &str| {
        let mut cmd = Command::cargo_bin("actguard").unwrap();
        cmd.env_remove("ACTGUARD_STORE").args(["--store", u, "log"]);
        cmd
    };
    // A build without PostgreSQL says how to get it; one with it says which server it cannot reach.
    #[cfg(not(feature = "postgres"))]
    plain_error(
        &mut url("postgres://ops:secret@db.internal/actguard"),
        1,
        "this build has no PostgreSQL support; build actguard-cli with --features postgres",
    );
    #[cfg(feature = "postgres")]
    plain_error(
        &mut url("postgres://ops:secret@127.0.0.1:1/actguard"),
        1,
        "127.0.0.1:1",
    );
    plain_error(
        &mut url("mysql://db.internal/actguard"),
        1,
        "unsupported store URL scheme `mysql://`",
    );
    plain_error(
        actguard(&db).args(["log", "--since", "yesterday"]),
        1,
        "cannot read the time `yesterday`",
    );
    // Times and durations are parsed with the arguments: the message names the option.
    plain_error(
        actguard(&db).args(["log", "--since", "2026-02-31"]),
        1,
        "invalid value '2026-02-31' for '--since <TIME>': cannot read the time `2026-02-31`",
    );
    plain_error(
        actguard(&db).args(["queue", "ls", "--older-than", "2 fortnights"]),
        1,
        "invalid value '2 fortnights' for '--older-than <DURATION>': cannot read the duration",
    );
    // A usage error is exit 1 too: exit 2 only ever means a tampered log.
    actguard(&db)
        .args(["log", "--outcome", "exploded"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid value 'exploded'"));
    // Each enum argument is refused with the spellings it takes, and arrives typed.
    for (args, spelling) in [
        (
            &["queue", "ls", "--queue", "dead-letter"][..],
            "dead_letter",
        ),
        (&["queue", "ls", "--status", "closed"][..], "discarded"),
        (&["log", "--outcome", "dead-lettered"][..], "dead_lettered"),
    ] {
        actguard(&db)
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("possible values"))
            .stderr(predicate::str::contains(spelling));
    }
    let dead = json(actguard(&db).args(["queue", "ls", "--queue", "dead_letter", "--json"]));
    assert!(
        !dead.as_array().unwrap().is_empty(),
        "the scenario dead-letters"
    );
    assert!(
        dead.as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "dead_letter"),
        "{dead}"
    );
}

#[test]
fn manifest_render_writes_the_sheet_and_diff_names_each_changed_value() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    let new = dir.path().join("new.json");
    let manifest = actguard::Manifest::from_registry().to_json();
    std::fs::write(&old, &manifest).unwrap();
    let mut changed: Value = serde_json::from_str(&manifest).unwrap();
    let actions = changed["actions"].as_array_mut().unwrap();
    let ship = actions
        .iter_mut()
        .find(|a| a["name"] == "ship_order")
        .unwrap();
    assert_eq!(ship["retries"]["retries"], 1);
    ship["retries"]["retries"] = 5.into();
    std::fs::write(&new, serde_json::to_string_pretty(&changed).unwrap()).unwrap();

    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.arg("manifest").arg("render").arg(&old);
    cmd.assert()
        .success()
        .stdout(predicate::str::starts_with(
            "# The five questions: action sign-off sheet",
        ))
        .stdout(predicate::str::contains("flag_priority"));
    let sheet = dir.path().join("sheet.md");
    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.args(["manifest", "render"])
        .arg(&old)
        .arg("--out")
        .arg(&sheet);
    cmd.assert().success();
    assert!(
        std::fs::read_to_string(&sheet)
            .unwrap()
            .contains("unflag_priority")
    );

    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.args(["manifest", "diff"]).arg(&old).arg(&new);
    cmd.assert()
        .code(1)
        .stdout(predicate::str::contains("ship_order: retries 1 → 5"));
    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.args(["manifest", "diff"]).arg(&old).arg(&old);
    cmd.assert().success().stdout("no policy changes\n");

    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.args(["manifest", "diff"])
        .arg(&old)
        .arg(dir.path().join("missing.json"));
    plain_error(&mut cmd, 1, "cannot read the manifest");
}

/// Text an agent or operator could store that rewrites a terminal: sets the window title (OSC ...
/// BEL), turns the text green, returns the cursor to the line start, and reverses what follows.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[32mok\r\u{202e}";
/// [`HOSTILE`] as the text outputs show it.
const HOSTILE_SHOWN: &str = "\\x1b]0;pwned\\x07\\x1b[32mok\\r\\u{202e}";

/// A store with one order whose id (so record and key), failure message, queue payload, resolving
/// operator and note all carry [`HOSTILE`]. Returns the owner-queue entry's id.
fn hostile_store() -> (TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let world = World::new(SqliteStore::open(&path).unwrap());
        let run = world.agent.start_run();
        world
            .carrier
            .fail_next(actguard::testing::DownstreamError::Invalid(format!(
                "bad {HOSTILE}"
            )));
        let order = scenario::Order {
            id: format!("O-{HOSTILE}"),
            qty: 1,
            postcode: Some(HOSTILE.to_owned()),
        };
        let err = scenario::ship_order(&run, &world.carrier, &order)
            .await
            .unwrap_err();
        let id = err.queue_entry().expect("routed to the owner").id;
        actguard::ops::queue_resolve(
            &world.agent,
            id,
            &format!("dana{HOSTILE}"),
            &format!("fixed {HOSTILE}"),
        )
        .await
        .unwrap();
        id
    });
    (dir, path, id)
}

/// What `actguard <args>` printed on stdout, checked to hold none of [`HOSTILE`]'s raw characters.
fn printed_safely(db: &Path, args: &[&str]) -> String {
    let out = actguard(db)
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(
            !out.contains(raw),
            "`actguard {}` printed {raw:?} raw:\n{out:?}",
            args.join(" ")
        );
    }
    out
}

#[test]
fn stored_control_and_bidi_characters_are_printed_escaped() {
    let (_dir, db, id) = hostile_store();
    let id = id.to_string();

    let log = printed_safely(&db, &["log"]);
    assert!(
        log.contains(&format!("invalid request: bad {HOSTILE_SHOWN}")),
        "{log}"
    );
    assert!(log.contains("O-\\x1b]0;pwned\\x07"), "{log}");

    let seq = {
        let all = json(actguard(&db).args(["log", "--json"]));
        all[0]["seq"].as_u64().unwrap().to_string()
    };
    let show = printed_safely(&db, &["show", &seq]);
    for shown in [
        format!("record:        O-{HOSTILE_SHOWN}\n"),
        format!("key:           ship:O-{HOSTILE_SHOWN}\n"),
        format!("message:       invalid request: bad {HOSTILE_SHOWN}\n"),
    ] {
        assert!(show.contains(&shown), "{shown:?} not in\n{show}");
    }

    let queue = printed_safely(&db, &["queue", "ls"]);
    assert!(queue.contains("O-\\x1b]0;pwned\\x07"), "{queue}");
    assert!(queue.contains(&format!("bad {HOSTILE_SHOWN}")), "{queue}");

    let entry = printed_safely(&db, &["queue", "show", &id]);
    for shown in [
        format!("record:        O-{HOSTILE_SHOWN}\n"),
        format!("key:           ship:O-{HOSTILE_SHOWN}\n"),
        format!("message:       invalid request: bad {HOSTILE_SHOWN}\n"),
        format!("by:            dana{HOSTILE_SHOWN}\n"),
        format!("note:          fixed {HOSTILE_SHOWN}\n"),
        // The payload's JSON escapes C0 controls itself; the bidi override is escaped on top.
        "\\u001b]0;pwned\\u0007\\u001b[32mok\\r\\u{202e}".to_owned(),
    ] {
        assert!(entry.contains(&shown), "{shown:?} not in\n{entry}");
    }

    printed_safely(&db, &["runs"]);
    printed_safely(&db, &["blast-radius", "--action", "ship_order"]);
    // `--json` stays JSON, with the text as stored.
    let stored = json(actguard(&db).args(["queue", "show", &id, "--json"]));
    assert_eq!(stored["note"], format!("fixed {HOSTILE}"));
}

#[test]
fn escaped_cells_keep_the_table_columns_aligned() {
    let (_dir, db, _) = hostile_store();
    let queue = printed_safely(&db, &["queue", "ls", "--status", "resolved"]);
    let lines: Vec<&str> = queue.lines().collect();
    // The `attempts` column starts at the same character in the header and the row.
    let at = |line: &str, needle: &str| {
        let byte = line.find(needle).unwrap();
        line[..byte].chars().count()
    };
    let header = at(lines[0], "attempts");
    let row = lines[1];
    let cell: String = row.chars().skip(header).take(2).collect();
    assert_eq!(cell, "1 ", "{queue}");
    assert_eq!(at(lines[0], "failure"), at(row, "validation: "), "{queue}");
}

#[derive(Debug, actguard::Classify, thiserror::Error)]
enum RefundError {
    #[error("the bank is unavailable")]
    #[classify(transient)]
    Unavailable,
}

/// Refunds an invoice, once a person approves it.
#[actguard::agent_action(key = "refund:{invoice}", approve = "treasury")]
async fn refund(run: &actguard::Run, invoice: u32) -> Result<u32, RefundError> {
    let _ = run;
    if invoice == 0 {
        return Err(RefundError::Unavailable);
    }
    Ok(invoice)
}

#[test]
fn approval_requests_are_approved_or_rejected_with_who_decided() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agent = actguard::Agent::builder()
        .store(SqliteStore::open(&path).unwrap())
        .build()
        .unwrap();
    let run = agent.start_run();
    let asked = |invoice| {
        rt.block_on(refund(&run, invoice))
            .unwrap_err()
            .queue_entry()
            .map(|q| q.id)
            .unwrap()
    };
    let (first, second) = (asked(1), asked(2));

    let listed = json(actguard(&path).args(["queue", "ls", "--queue", "approval", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    plain_error(
        actguard(&path).args(["queue", "resolve", &first.to_string(), "--note", "ok"]),
        1,
        &format!("queue entry {first} is an approval request: approve it"),
    );
    actguard(&path)
        .args(["queue", "approve", &first.to_string(), "--by", "alice"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "approval request {first} (refund refund:1) approved by alice"
        )));
    actguard(&path)
        .args([
            "queue",
            "reject",
            &second.to_string(),
            "--by",
            "bob",
            "--note",
            "paid by hand",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("rejected by bob: paid by hand"));

    assert_eq!(
        rt.block_on(refund(&run, 1)).unwrap(),
        1,
        "approved: it acts"
    );
    assert!(matches!(
        rt.block_on(refund(&run, 2)),
        Err(actguard::ActionError::Rejected { .. })
    ));
    actguard(&path)
        .args(["log", "--outcome", "operator"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "approval request {first} approved by alice"
        )))
        .stdout(predicate::str::contains(format!(
            "approval request {second} rejected by bob: paid by hand"
        )));
}
