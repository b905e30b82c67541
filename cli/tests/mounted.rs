//! The operator commands mounted in an agent's own binary (`my-agent ops ...`): parsed from the
//! agent's command line and run with `run_ops` against the agent's store, registry and resources.

#[path = "../examples/ship_agent/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use actguard::SqliteStore;
use actguard_cli::{CliError, OpsCommand, run_ops_to};
use clap::{Parser, Subcommand};
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
    let mut out = Vec::new();
    run_ops_to(&world.agent, ops(args), &mut out).await?;
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
    assert_eq!(
        run(&world, "ops verify").await.unwrap(),
        "ok: 48 entries verified\n"
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
    assert_eq!(
        run(&world, "ops verify").await.unwrap(),
        "ok: 53 entries verified\n"
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
