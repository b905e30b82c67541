//! The agent refuses to start on a failing audit, and names every finding.

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{Agent, AgentError, MemoryStore, Run, agent_action};

// Two actions under one name: their keys, logs and manifest entries would be confused.
#[agent_action(name = "ship", key = "ship:{order}", owner = "ops", expert = "ops")]
async fn ship_parcel(
    run: &Run,
    #[dep] carrier: &Downstream,
    order: &str,
) -> Result<Receipt, DownstreamError> {
    carrier.write_for(run.attempt()).await
}

#[agent_action(
    name = "ship",
    key = "ship-pallet:{order}",
    owner = "ops",
    expert = "ops"
)]
async fn ship_pallet(
    run: &Run,
    #[dep] carrier: &Downstream,
    order: &str,
) -> Result<Receipt, DownstreamError> {
    carrier.write_for(run.attempt()).await
}

#[test]
fn the_agent_refuses_to_start_when_two_actions_share_a_name() {
    let err = Agent::builder()
        .store(MemoryStore::new())
        .build()
        .expect_err("a failing audit must stop the agent");
    let AgentError::Audit(audit) = &err else {
        panic!("expected an audit error, got {err}");
    };
    let text = err.to_string();
    assert!(text.contains("duplicate_name"), "{text}");
    assert!(
        text.contains("agent_startup.rs"),
        "names the source file: {text}"
    );
    assert!(!audit.report().is_ok());
    // Both functions exist and are registered; only the agent refuses.
    let _ = (ship_parcel, ship_pallet);
}
