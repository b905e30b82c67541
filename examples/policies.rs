//! Declares two actions and prints what operations sign off: the startup audit's findings and the
//! manifest's "five questions" sheet for each action.
//!
//! `cargo run --example policies`

use actguard::{Agent, Classify, Manifest, MemoryStore, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Debug, Classify, thiserror::Error)]
enum LedgerError {
    #[error("ledger timed out")]
    #[classify(transient)]
    Timeout,
    #[error("account {0} does not exist")]
    #[classify(validation)]
    NoSuchAccount(String),
    #[error("the loan is closed")]
    #[classify(conflict)]
    Closed,
    #[error("forbidden")]
    #[classify(security)]
    Forbidden,
}

#[derive(Debug, Serialize, Deserialize)]
struct Disbursement {
    loan_id: String,
    seq: u32,
    cents: u64,
}

#[agent_action(
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m",
    dedup = "24h",
    on_validation = route_owner,
    owner = "loan-ops",
    on_conflict = escalate,
    expert = "credit-risk",
    on_security = halt
)]
async fn disburse(run: &Run, instr: &Disbursement) -> Result<String, LedgerError> {
    if instr.cents == 0 {
        return Err(LedgerError::NoSuchAccount(instr.loan_id.clone()));
    }
    Ok(run.attempt().key().to_owned())
}

#[agent_action(effect = read, retries = 2, backoff = "50ms..1s")]
async fn balance(run: &Run, loan_id: &str) -> Result<u64, LedgerError> {
    let _ = run;
    match loan_id {
        "" => Err(LedgerError::Timeout),
        "closed" => Err(LedgerError::Closed),
        "secret" => Err(LedgerError::Forbidden),
        _ => Ok(250_000),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Building the agent runs the startup audit over every registered action.
    let agent = Agent::builder().store(MemoryStore::new()).build()?;
    let run = agent.start_run();
    let instr = Disbursement {
        loan_id: "L-17".into(),
        seq: 3,
        cents: 250_000,
    };
    println!("disburse: {}", disburse(&run, &instr).await?);
    println!("balance:  {}", balance(&run, &instr.loan_id).await?);
    let audit = agent.audit_report();
    println!(
        "audit: {} actions, {} findings",
        audit.action_count(),
        audit.findings().len()
    );
    for f in audit.findings() {
        println!(
            "  {} [{}] {} ({}): {}",
            f.severity.as_str(),
            f.rule.as_str(),
            f.action,
            f.location,
            f.message
        );
    }
    println!();
    print!("{}", Manifest::from_registry().to_markdown());
    Ok(())
}
