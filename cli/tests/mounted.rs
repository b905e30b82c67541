//! The operator commands mounted in an agent's own binary (`my-agent ops ...`): parsed from the
//! agent's command line and run with `run_ops` against the agent's store, registry and resources.

#[path = "../examples/ship_agent/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use actguard::SqliteStore;
use actguard_cli::{CliError, OpsCommand, run_ops_to};
use clap::{Parser, Subcommand};
use tempfile::TempDir;

use scenario::{Filled, World};

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
