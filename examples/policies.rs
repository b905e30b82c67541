//! The policy of every action, as the program itself knows it: the registry, the startup audit (lenient
//! and strict) and the Markdown "five questions" sheet for the people who sign off.
//!
//! `cargo run --example policies`

use actguard::audit::{AuditSettings, audit_registry};
use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{Manifest, Run, agent_action, registry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Disbursement {
    loan_id: String,
    seq: u32,
    amount_cents: u64,
}

/// Pays out a loan: every one of the five questions answered in the attribute.
#[agent_action(
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "loan:{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m",
    backoff = "200ms..20s",
    jitter = full,
    dedup = "24h",
    cycle = "6h",
    on_validation = route_owner,
    owner = "loan-ops",
    on_conflict = escalate,
    expert = "credit-risk",
    on_security = halt,
)]
async fn disburse(
    run: &Run,
    #[dep] ledger: &Downstream,
    instr: &Disbursement,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

/// Takes a disbursement back: destructive, so it names the action that reverses it.
#[agent_action(
    effect = destructive,
    key = "claw-back:{instr.loan_id}:{instr.seq}",
    record = "loan:{instr.loan_id}",
    compensate = disburse,
    retries = 2,
    max_elapsed = "30s",
    dedup = "none",
    owner = "loan-ops",
    expert = "credit-risk",
    on_security = halt,
)]
async fn claw_back(
    run: &Run,
    #[dep] ledger: &Downstream,
    instr: &Disbursement,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

/// Flags a shipment: leaves most answers to the defaults, which the strict audit points out.
#[agent_action(key = "flag:{shipment}")]
async fn flag_shipment(
    run: &Run,
    #[dep] board: &Downstream,
    shipment: &str,
) -> Result<Receipt, DownstreamError> {
    board.write_for(run.attempt()).await
}

/// Reads a balance: no key needed.
#[agent_action(effect = read, retries = 2, owner = "loan-ops", expert = "credit-risk")]
async fn balance(
    run: &Run,
    #[dep] ledger: &Downstream,
    loan_id: &str,
) -> Result<u64, DownstreamError> {
    let _ = (run, ledger, loan_id);
    Ok(0)
}

fn main() {
    // The functions are only declared here; referencing them keeps the example honest about what it
    // registers.
    let _ = (disburse, claw_back, flag_shipment, balance);

    println!("# Registry\n");
    for spec in registry() {
        println!(
            "- {:<14} {:<11} key {:<40} retries {:<3} dedup {:<5} ({}:{})",
            spec.name,
            spec.effect.as_str(),
            spec.key.unwrap_or("-"),
            spec.policy.retries,
            spec.policy
                .dedup
                .map(actguard::manifest::short_duration)
                .unwrap_or_else(|| "none".to_owned()),
            spec.file,
            spec.line,
        );
    }

    println!("\n# Startup audit (lenient: what `Agent::builder().build()` runs)\n");
    println!("{}", audit_registry(&AuditSettings::default()));

    println!("\n# Startup audit (strict: every answer written down)\n");
    println!("{}", audit_registry(&AuditSettings::strict()));

    println!("\n# Manifest sheet (Markdown)\n");
    println!("{}", Manifest::from_registry().to_markdown());
}
