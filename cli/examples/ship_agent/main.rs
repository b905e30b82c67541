//! A shipping agent's own binary, mounting the operator commands of actguard:
//!
//! ```text
//! cargo run -p actguard-cli --example ship_agent -- --store /tmp/ship.db scenario
//! cargo run -p actguard-cli --example ship_agent -- --store /tmp/ship.db ops queue ls
//! cargo run -p actguard-cli --example ship_agent -- --store /tmp/ship.db ops queue replay 3
//! cargo run -p actguard-cli --example ship_agent -- --store /tmp/ship.db ship O-4 --qty 4 --postcode 10115
//! cargo run -p actguard-cli --example ship_agent -- --store /tmp/ship.db ops revert --action flag_priority --run <id> --dry-run
//! ```

// Shared with the integration tests, which use all of it.
#[allow(dead_code)]
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;

use actguard::SqliteStore;
use actguard_cli::{OpsCommand, run_ops};
use clap::{Parser, Subcommand};
use scenario::PriorityBoard;

#[derive(Parser)]
#[command(name = "ship-agent", about = "A shipping agent (actguard example)")]
struct Cli {
    /// The agent's store.
    #[arg(long, default_value = actguard::DEFAULT_STORE_PATH)]
    store: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the shipping scenario: successes, queued failures, a halted run, the priority incident.
    Scenario,
    /// Ships one order in a new run (for an order whose data was corrected at the source).
    Ship {
        /// The order id, e.g. `O-4`.
        id: String,
        /// Quantity.
        #[arg(long)]
        qty: u32,
        /// The delivery address's postcode.
        #[arg(long)]
        postcode: Option<String>,
    },
    /// Prints the manifest of the agent's actions (JSON).
    Manifest,
    /// Operator commands: log, queues (with replay), blast radius, revert.
    #[command(subcommand)]
    Ops(OpsCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let store = match SqliteStore::open(&cli.store) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The shipment board lives in a file beside the store, so that it outlives each command.
    let mut board_file = cli.store.clone().into_os_string();
    board_file.push(".board.json");
    let board = match std::fs::read(&board_file) {
        Ok(bytes) => {
            PriorityBoard::from_snapshot(serde_json::from_slice(&bytes).unwrap_or_default())
        }
        Err(_) => PriorityBoard::with_shipments(200),
    };
    let world = scenario::World::with_board(store, board);
    let code = match cli.command {
        Command::Scenario => {
            let filled = scenario::fill(&world).await;
            println!("shipping run: {}", filled.shipping_run);
            println!("priority run: {}", filled.priority_run);
            println!("halted run:   {}", filled.halted_run);
            ExitCode::SUCCESS
        }
        Command::Ship { id, qty, postcode } => {
            let run = world.agent.start_run();
            let order = scenario::Order { id, qty, postcode };
            let shipped = scenario::ship_order(&run, &world.carrier, &order).await;
            print!("ship_order {} in run {}: ", order.id, run.id());
            match shipped {
                Ok(receipt) => {
                    println!("succeeded");
                    println!(
                        "result: {}",
                        serde_json::to_value(&receipt).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Manifest => {
            print!("{}", actguard::Manifest::from_registry().to_json());
            ExitCode::SUCCESS
        }
        Command::Ops(cmd) => match run_ops(&world.agent, cmd).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => e.report(),
        },
    };
    let snapshot = serde_json::to_vec_pretty(&world.board.snapshot()).unwrap_or_default();
    if let Err(e) = std::fs::write(&board_file, snapshot) {
        eprintln!("error: cannot save the shipment board: {e}");
        return ExitCode::FAILURE;
    }
    code
}
