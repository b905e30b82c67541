//! The operator commands mounted in an agent's own binary (`my-agent ops ...`): parsed from the
//! agent's command line and run with `run_ops` against the agent's store, registry and resources.

#[path = "../examples/ship_agent/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actguard::{Agent, Classify, Run, SqliteStore, agent_action};
use actguard_cli::{CliError, OpsCommand, run_ops_to};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use scenario::{Filled, Priority, World, shipment_id};

/// The agent's own command line, with the operator commands mounted under `ops`.
#[derive(Parser)]
#[command(name = "my-agent")]
struct MyAgent {
    #[command(subcommand)]
    command: MyCommand,
}

#[derive(Subcommand)]
enum MyCommand {
    /// Runs the agent.
    Run,
    /// Operator commands.
    #[command(subcommand)]
    Ops(OpsCommand),
}

fn ops(args: &str) -> OpsCommand {
    let argv = std::iter::once("my-agent").chain(args.split_whitespace());
    match MyAgent::try_parse_from(argv)
        .expect("the command line parses")
        .command
    {
        MyCommand::Ops(cmd) => cmd,
        MyCommand::Run => panic!("not an ops command"),
    }
}

/// Runs `my-agent <args>` and returns what it printed.
async fn run(world: &World, args: &str) -> Result<String, CliError> {
    run_with(&world.agent, args).await
}

/// Runs `my-agent <args>` with `agent` and returns what it printed.
async fn run_with(agent: &Agent, args: &str) -> Result<String, CliError> {
    let mut out = Vec::new();
    run_ops_to(agent, ops(args), &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

async fn filled_world() -> (TempDir, World, Filled) {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(SqliteStore::open(dir.path().join("actguard.db")).unwrap());
    let filled = scenario::fill(&world).await;
    (dir, world, filled)
}

#[tokio::test(start_paused = true)]
async fn the_read_commands_run_against_the_agents_store() {
    let (_dir, world, filled) = filled_world().await;
    let log = run(&world, "ops log --action ship_order --outcome routed")
        .await
        .unwrap();
    assert!(log.contains("O-4") && log.contains("O-5") && log.ends_with("2 entries\n"));
    let verified = run(&world, "ops verify").await.unwrap();
    assert!(
        verified.starts_with("ok: 48 entries verified\nhead: 48:"),
        "{verified}"
    );
    let runs = run(&world, "ops runs").await.unwrap();
    assert!(runs.contains(&format!("{}  ", filled.halted_run)) && runs.contains("HALTED"));
    let queue = run(&world, "ops queue ls --queue dead_letter")
        .await
        .unwrap();
    assert!(queue.contains("O-6") && queue.ends_with("1 entry\n"));
    let err = run(&world, "ops show 4242").await.unwrap_err();
    assert_eq!(err.to_string(), "no log entry with seq 4242");
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test(start_paused = true)]
async fn replaying_a_dead_lettered_order_until_it_succeeds_ships_it_exactly_once() {
    let (_dir, world, filled) = filled_world().await;
    let id = filled.dead_letter_entry;
    assert_eq!(world.carrier.effects("O-6"), 0);

    // The standalone binary's refusal aside, the agent's binary replays. The carrier is still shaky:
    // both attempts of the first replay reach it, but their acknowledgements are lost.
    world.carrier.fail_acks(2);
    let err = run(&world, &format!("ops queue replay {id} --by dana"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("the replay of queue entry {id} failed:")),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    let entry = world.agent.store().queue_entry(id).await.unwrap().unwrap();
    assert_eq!(entry.status.as_str(), "open");
    assert_eq!(entry.attempts, 4);
    // The write was applied once; the carrier honours the key on the second attempt.
    assert_eq!(world.carrier.effects("O-6"), 1);

    // The second replay succeeds: the carrier answers with the receipt of the first write.
    let out = run(&world, &format!("ops queue replay {id} --by dana"))
        .await
        .unwrap();
    assert!(out.contains(&format!(
        "queue entry {id} (ship_order O-6) replayed by dana"
    )));
    assert!(out.contains("succeeded\nresult: {"), "{out}");
    assert_eq!(world.carrier.effects("O-6"), 1);

    // Replayed entries are settled: a third replay is refused and nothing is written.
    let err = run(&world, &format!("ops queue replay {id}"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("queue entry {id} is replayed: it cannot be replayed")
    );
    assert_eq!(world.carrier.effects("O-6"), 1);
    let writes = world.carrier.writes();
    let queue = run(&world, "ops queue ls --status replayed").await.unwrap();
    assert!(queue.contains("O-6") && queue.ends_with("1 entry\n"));
    assert_eq!(world.carrier.writes(), writes);
    let outcomes: Vec<&str> = actguard::testing::log(&world.agent)
        .await
        .iter()
        .filter(|e| e.entry.record == "O-6")
        .map(|e| e.entry.outcome.as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "retrying",
            "dead_lettered",
            "operator",
            "retrying",
            "dead_lettered",
            "operator",
            "succeeded"
        ]
    );
    let verified = run(&world, "ops verify").await.unwrap();
    assert!(
        verified.starts_with("ok: 53 entries verified\nhead: 53:"),
        "{verified}"
    );
}

#[tokio::test(start_paused = true)]
async fn reverting_the_priority_batch_restores_exactly_the_40_and_a_second_revert_changes_nothing()
{
    let (_dir, world, filled) = filled_world().await;
    let run_id = filled.priority_run;
    assert_eq!(world.board.high(), filled.flagged);
    assert_eq!(filled.flagged.len(), 40);

    // Blast radius: exactly the 40 flagged shipments, normal → high.
    let radius: serde_json::Value = serde_json::from_str(
        &run(
            &world,
            &format!("ops blast-radius --action flag_priority --run {run_id} --json"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let records: Vec<&str> = radius
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert_eq!(records, filled.flagged);

    // Dry run: lists the 40, changes nothing.
    let revert = format!("ops revert --action flag_priority --run {run_id}");
    let dry = run(&world, &format!("{revert} --dry-run")).await.unwrap();
    assert!(
        dry.ends_with("dry run: 40 to revert, 0 cannot be reverted; nothing changed\n"),
        "{dry}"
    );
    assert_eq!(dry.lines().filter(|l| l.starts_with("planned")).count(), 40);
    assert_eq!(world.board.high().len(), 40);

    // Revert: the 40 are back to normal, nothing else moved.
    let done = run(&world, &format!("{revert} --by dana")).await.unwrap();
    assert!(
        done.ends_with("40 reverted, 0 already reverted, 0 diverged, 0 failed\n"),
        "{done}"
    );
    assert!(world.board.high().is_empty());
    assert_eq!(world.board.snapshot().len(), 200);

    // Again: every compensation replays its stored result; nothing acts.
    let again = run(&world, &format!("{revert} --by dana")).await.unwrap();
    assert!(
        again.ends_with("0 reverted, 40 already reverted, 0 diverged, 0 failed\n"),
        "{again}"
    );
    assert!(world.board.high().is_empty());
    let compensated = actguard::testing::log(&world.agent)
        .await
        .into_iter()
        .filter(|e| e.entry.action == "unflag_priority" && e.entry.attempt > 0)
        .count();
    assert_eq!(compensated, 40);
    run(&world, "ops verify").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_shipment_changed_since_the_batch_is_reported_not_overwritten() {
    let (_dir, world, filled) = filled_world().await;
    // Dispatch set S-010 to normal by hand after the batch; the revert must not touch it.
    world.board.set(&shipment_id(10), Priority::Normal);
    let err = run(
        &world,
        &format!(
            "ops revert --action flag_priority --run {}",
            filled.priority_run
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "1 record was not reverted (listed above)");
    assert!(world.board.high().is_empty());
    let expert = run(
        &world,
        "ops queue ls --queue expert --action unflag_priority",
    )
    .await
    .unwrap();
    assert!(
        expert.contains("S-010") && expert.contains("conflict"),
        "{expert}"
    );
}

/// A dispatch board with free-form priorities, which a run may change several times per shipment.
#[derive(Debug, Clone, Default)]
struct Labels(Arc<Mutex<BTreeMap<String, String>>>);

impl Labels {
    fn get(&self, shipment: &str) -> String {
        self.0.lock().unwrap()[shipment].clone()
    }

    fn set(&self, shipment: &str, priority: &str) {
        let mut labels = self.0.lock().unwrap();
        labels.insert(shipment.to_owned(), priority.to_owned());
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Relabel {
    shipment: String,
    priority: String,
}

#[derive(Debug, thiserror::Error, Classify)]
enum LabelError {
    #[classify(conflict)]
    #[error("shipment {0} changed since the reverted writes")]
    Changed(String),
}

#[agent_action(
    key = "relabel:{r.shipment}:{r.priority}",
    record = "{r.shipment}",
    dedup = "none",
    compensate = unrelabel,
    expert = "dispatch"
)]
async fn relabel(run: &Run, #[dep] labels: &Labels, r: &Relabel) -> Result<(), LabelError> {
    run.attempt().before(&labels.get(&r.shipment));
    labels.set(&r.shipment, &r.priority);
    run.attempt().after(&r.priority);
    Ok(())
}

/// Puts back the priority before the reverted writes, unless the shipment changed since.
#[agent_action(
    key = "unrelabel:{r.shipment}",
    record = "{r.shipment}",
    expert = "dispatch"
)]
async fn unrelabel(run: &Run, #[dep] labels: &Labels, r: &Relabel) -> Result<(), LabelError> {
    let reverting = run.attempt().reverting().expect("run by a revert");
    let state = |v: &Option<serde_json::Value>| v.as_ref().unwrap().as_str().unwrap().to_owned();
    let (before, after) = (
        state(&reverting.entry.before),
        state(&reverting.entry.after),
    );
    if labels.get(&r.shipment) != after {
        return Err(LabelError::Changed(r.shipment.clone()));
    }
    run.attempt().before(&after);
    labels.set(&r.shipment, &before);
    run.attempt().after(&before);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn blast_radius_and_revert_show_a_records_first_before_its_last_after_and_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let labels = Labels::default();
    labels.set("S-001", "normal");
    labels.set("S-002", "normal");
    let agent = Agent::builder()
        .store(SqliteStore::open(dir.path().join("actguard.db")).unwrap())
        .resource(labels.clone())
        .build()
        .unwrap();
    let bad = agent.start_run();
    for (shipment, priority) in [
        ("S-001", "high"),
        ("S-002", "high"),
        ("S-001", "urgent"),
        ("S-001", "critical"),
    ] {
        let r = Relabel {
            shipment: shipment.into(),
            priority: priority.into(),
        };
        relabel(&bad, &labels, &r).await.unwrap();
    }
    let select = format!("--action relabel --run {}", bad.id());

    let table = run_with(&agent, &format!("ops blast-radius {select}"))
        .await
        .unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("seq ") && lines[0].contains("  writes  before → after"));
    assert!(
        lines[1].starts_with("2 ") && lines[1].ends_with("  1       \"normal\" → \"high\""),
        "{table}"
    );
    assert!(
        lines[2].starts_with("1…4 ") && lines[2].ends_with("  3       \"normal\" → \"critical\""),
        "{table}"
    );
    assert_eq!(lines[3], "2 records written, by 4 writes");

    let json: serde_json::Value = serde_json::from_str(
        &run_with(&agent, &format!("ops blast-radius {select} --json"))
            .await
            .unwrap(),
    )
    .unwrap();
    let s1 = &json[1];
    assert_eq!(
        (
            &s1["record"],
            &s1["writes"],
            &s1["seqs"],
            &s1["seq"],
            &s1["before"],
            &s1["after"]
        ),
        (
            &serde_json::json!("S-001"),
            &serde_json::json!(3),
            &serde_json::json!([1, 3, 4]),
            &serde_json::json!(4),
            &serde_json::json!("normal"),
            &serde_json::json!("critical")
        )
    );

    // The dry run shows the same change per record, and how many writes it reverts.
    let dry = run_with(&agent, &format!("ops revert {select} --dry-run"))
        .await
        .unwrap();
    let lines: Vec<&str> = dry.lines().collect();
    assert_eq!(
        lines,
        [
            "planned          S-002                    entry 2      relabel -> unrelabel \
             [revert:relabel:S-002:high]  \"normal\" → \"high\"",
            "planned          S-001                    entries 1…4 (3 writes) relabel -> unrelabel \
             [revert:relabel:S-001:critical]  \"normal\" → \"critical\"",
            "dry run: 2 to revert, 0 cannot be reverted; nothing changed",
        ]
    );
    assert_eq!(labels.get("S-001"), "critical");

    // The revert restores the priority before the run's first write, not the one before its last.
    let done = run_with(&agent, &format!("ops revert {select} --by dana"))
        .await
        .unwrap();
    assert!(
        done.ends_with("2 reverted, 0 already reverted, 0 diverged, 0 failed\n"),
        "{done}"
    );
    assert!(done.contains("reverted         S-001                    entries 1…4 (3 writes)"));
    assert_eq!(
        (labels.get("S-001"), labels.get("S-002")),
        ("normal".into(), "normal".into())
    );
    run_with(&agent, "ops verify").await.unwrap();
}
