//! The incidents actguard exists to prevent, reproduced against simulated downstreams: each one first
//! with the naive loop that caused it, then with guarded actions on a store at the default path
//! (`actguard.db` in the working directory). The demo labels the store it creates, and at start
//! removes only a store with that label (its own, from an earlier run): any other `actguard.db`, an
//! agent's store for one, is left as it is and the demo stops.
//!
//! `cargo run --example incidents`
//!
//! The program checks every guarded number it prints and exits with status 1, naming the number, if
//! one is not what actguard promises. Backoff delays are short (`backoff = "10ms..100ms"`) and seeded
//! (`jitter_seed`), so the run takes a few seconds and prints the same numbers every time.
//!
//! Each incident is a module of its own that reads top to bottom: its guarded actions (with the
//! simulated system they write to, where `actguard::testing::Downstream` does not model it), then the
//! code that runs the naive loop and the guarded actions and checks the numbers. `report` holds what
//! they share: the printed lines, the checks and the summary.

mod duplicate_disbursement;
mod duplicate_shipments;
mod escalation_loop;
mod flooded_queue;
mod report;
mod work_order;
mod wrong_flags;

use std::fmt::Display;
use std::sync::{Arc, Mutex};

use actguard::{Agent, DEFAULT_STORE_PATH, SqliteStore};

use crate::flooded_queue::PrintAlert;
use crate::report::{Checks, summary};
use crate::wrong_flags::Desk;

/// The label of the store the demo creates: the only store it ever removes.
const DEMO_LABEL: &str = "actguard incidents demo";

/// Ends the demo with status 1 without touching `actguard.db`.
fn refuse_store(why: impl Display) -> ! {
    eprintln!(
        "The demo leaves {DEFAULT_STORE_PATH} in this directory alone: {why}\nRun the demo in another \
         directory (it keeps its own store in {DEFAULT_STORE_PATH} of the working directory)."
    );
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let path = std::path::Path::new(DEFAULT_STORE_PATH);
    match SqliteStore::remove_labelled(path, DEMO_LABEL) {
        Ok(true) => println!(
            "Removed the demo's previous {DEFAULT_STORE_PATH}: the demo starts from an empty store."
        ),
        Ok(false) => {
            println!("No previous {DEFAULT_STORE_PATH}: the demo starts from an empty store.")
        }
        Err(e) => refuse_store(e),
    }
    let store = match SqliteStore::options().label(DEMO_LABEL).open(path) {
        // Another program may have put a store there since.
        Ok(store) if store.label() == Some(DEMO_LABEL) => store,
        Ok(_) => refuse_store("it is a store another program created"),
        Err(e) => refuse_store(e),
    };
    let alerts = Arc::new(Mutex::new(0));
    // The service desk is also an agent resource: revert calls the compensating action with it.
    let desk = Desk::default();
    let agent = match Agent::builder()
        .store(store)
        .alert_sink(PrintAlert(alerts.clone()))
        .resource(desk.clone())
        .jitter_seed(7)
        .build()
    {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("cannot start the agent: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "Store: {} (SQLite, labelled `{DEMO_LABEL}`)",
        std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| DEFAULT_STORE_PATH.to_owned())
    );

    let mut checks = Checks::default();
    let mut rows = vec![
        duplicate_disbursement::demo(&agent, &mut checks).await,
        duplicate_shipments::demo(&agent, &mut checks).await,
        work_order::demo(&agent, &mut checks).await,
        escalation_loop::demo(&agent, &mut checks).await,
        flooded_queue::demo(&agent, &alerts, &mut checks).await,
    ];
    let (flags, bad_run) = wrong_flags::demo(&agent, &desk, &mut checks).await;
    rows.push(flags);

    let chain = agent.verify().await;
    match &chain {
        Ok(n) => println!("\nThe action log holds {n} entries; its hash chain verifies."),
        Err(e) => println!("\nThe action log does not verify: {e}"),
    }
    checks.expect("log chain verifies", chain.is_ok(), true);

    summary(&rows);

    println!("\nInspect what the guarded runs left in {DEFAULT_STORE_PATH}:");
    for cmd in [
        "log".to_owned(),
        "log --action disburse".to_owned(),
        "runs".to_owned(),
        "queue ls".to_owned(),
        "verify".to_owned(),
        format!("blast-radius --action set_priority --run {bad_run}"),
    ] {
        println!("  cargo run -p actguard-cli -- {cmd}");
    }
    println!("or in the review console, at http://127.0.0.1:7878/:");
    println!("  cargo run -p actguard-cli -- serve --no-auth");

    if checks.failed.is_empty() {
        println!("\nEvery guarded number is as expected.");
    } else {
        println!("\n{} guarded number(s) wrong:", checks.failed.len());
        for f in &checks.failed {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}
