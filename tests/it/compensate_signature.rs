//! A compensating action must take the payload parameters of the action it reverses (a revert calls it
//! with the reversed entry's stored payload): the audit says so, and a revert reports such records as
//! failed rather than calling the action with a payload it cannot read.

use actguard::log::LogQuery;
use actguard::ops::{self, RevertOptions, RevertStatus};
use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{
    Agent, AuditSettings, MemoryStore, Rule, Run, Severity, agent_action, audit_registry,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
}

#[agent_action(key = "ship:{order.id}", name = "ship_order", owner = "shipping", expert = "shipping-leads", compensate = unship)]
async fn ship(
    run: &Run,
    #[dep] ds: &Downstream,
    order: &Order,
) -> Result<Receipt, DownstreamError> {
    ds.write_for(run.attempt()).await
}

/// Takes the order id, not the order: it cannot be called with `ship`'s payload.
#[agent_action(
    key = "unship:{order_id}",
    owner = "shipping",
    expert = "shipping-leads"
)]
async fn unship(
    run: &Run,
    #[dep] ds: &Downstream,
    order_id: u64,
) -> Result<Receipt, DownstreamError> {
    let _ = order_id;
    ds.write_for(run.attempt()).await
}

#[test]
fn a_compensate_with_another_payload_is_an_audit_finding() {
    let report = audit_registry(&AuditSettings::default());
    // The registry is the test binary's: this module's action only.
    let finding = report
        .findings()
        .iter()
        .find(|f| f.rule == Rule::CompensateSignatureMismatch && f.action == "ship_order")
        .unwrap_or_else(|| panic!("no finding in {report}"));
    assert_eq!(finding.action, "ship_order");
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("(order_id: u64)"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("(order: Order)"),
        "{}",
        finding.message
    );
    assert_eq!(
        Rule::CompensateSignatureMismatch.as_str(),
        "compensate_signature_mismatch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_revert_reports_it_and_invokes_nothing() {
    let ds = Downstream::new();
    let agent = Agent::builder()
        .store(MemoryStore::new())
        .resource(ds.clone())
        .build()
        .unwrap();
    ship(&agent.start_run(), &ds, &Order { id: 4 })
        .await
        .unwrap();
    let radius = ops::blast_radius(agent.store().as_ref(), &LogQuery::default())
        .await
        .unwrap();
    assert_eq!(radius.len(), 1);
    let report = ops::revert(
        &agent,
        &radius,
        &RevertOptions {
            dry_run: false,
            by: "ops".into(),
        },
    )
    .await
    .unwrap();
    match &report.records[0].status {
        RevertStatus::Failed { message } => {
            assert!(
                message.contains("compensate_signature_mismatch"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ds.writes(), 1);
}
