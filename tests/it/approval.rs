//! Approval gates: an action with `approve` asks a person before each key acts. The first call opens
//! an approval request and acts on nothing; approved, the same key with the same payload acts once;
//! rejected, it answers `rejected`; an approval expires unused, and is used once. On every store.

use std::time::Duration;

use actguard::store::{QueueQuery, QueueStatus};
use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::tools::ToolOutcome;
use actguard::{
    ActionError, Agent, LogQuery, MemoryStore, Outcome, QueueKind, Run, SqliteStore, agent_action,
    ops,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Refund {
    invoice_id: String,
    cents: i64,
}

/// Refunds an invoice to the customer's card.
#[agent_action(
    key = "refund:{r.invoice_id}",
    record = "{r.invoice_id}",
    approve = "treasury",
    approval_expires = "1h",
    owner = "billing",
    tool
)]
async fn refund(
    run: &Run,
    #[dep] bank: &Downstream,
    r: &Refund,
) -> Result<Receipt, DownstreamError> {
    let _ = r;
    bank.write_for(run.attempt()).await
}

fn a_refund(invoice: &str, cents: i64) -> Refund {
    Refund {
        invoice_id: invoice.to_owned(),
        cents,
    }
}

#[cfg(feature = "postgres")]
use crate::support::pg_support;

/// What keeps a store's place alive while its agent runs: a directory, a schema.
type Place = Box<dyn std::any::Any>;

/// An agent on each store, each with a bank of its own (and what keeps the store's place).
async fn agents() -> Vec<(&'static str, Agent, Place)> {
    let memory = Agent::builder()
        .store(MemoryStore::new())
        .resource(Downstream::new())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Agent::builder()
        .store(SqliteStore::open(dir.path().join("actguard.db")).unwrap())
        .resource(Downstream::new())
        .build()
        .unwrap();
    #[allow(unused_mut)]
    let mut agents: Vec<(&'static str, Agent, Place)> = vec![
        ("memory", memory, Box::new(())),
        ("sqlite", sqlite, Box::new(dir)),
    ];
    #[cfg(feature = "postgres")]
    {
        let (store, schema) = pg_support::fresh_store().await;
        let postgres = Agent::builder()
            .store(store)
            .resource(Downstream::new())
            .build()
            .unwrap();
        agents.push(("postgres", postgres, Box::new(schema)));
    }
    agents
}

async fn approvals(agent: &Agent) -> Vec<actguard::QueueEntry> {
    agent
        .store()
        .queue_entries(&QueueQuery {
            kind: Some(QueueKind::Approval),
            ..QueueQuery::default()
        })
        .await
        .unwrap()
}

fn awaiting(result: Result<Receipt, ActionError<DownstreamError>>) -> u64 {
    match result {
        Err(ActionError::AwaitingApproval { queue, .. }) => {
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Approval, "treasury")
            );
            queue.id
        }
        other => panic!("expected awaiting approval, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_call_asks_approval_and_the_approved_key_acts_once() {
    for (store, agent, _dir) in agents().await {
        let bank = agent.resource::<Downstream>().unwrap().clone();
        let run = agent.start_run();
        let id = awaiting(refund(&run, &bank, &a_refund("INV-1", 500)).await);
        assert_eq!(
            bank.total_effects(),
            0,
            "{store}: nothing acts before approval"
        );
        let entries = approvals(&agent).await;
        assert_eq!(entries.len(), 1, "{store}");
        assert_eq!(entries[0].payload["r"]["cents"], 500, "{store}");
        assert_eq!(entries[0].status, QueueStatus::Open);

        // Asked again before anyone decided: the same request, no new one.
        let again = awaiting(refund(&run, &bank, &a_refund("INV-1", 500)).await);
        assert_eq!(again, id, "{store}");
        assert_eq!(approvals(&agent).await.len(), 1, "{store}");

        ops::queue_approve(&agent, id, "alice").await.unwrap();
        let receipt = refund(&run, &bank, &a_refund("INV-1", 500)).await.unwrap();
        assert_eq!(bank.total_effects(), 1, "{store}: acted once approved");
        // And then never again: the key completed.
        let replayed = refund(&run, &bank, &a_refund("INV-1", 500)).await.unwrap();
        assert_eq!(replayed, receipt);
        assert_eq!(bank.total_effects(), 1, "{store}");

        let log = agent.store().log(&LogQuery::default()).await.unwrap();
        let said: Vec<_> = log
            .iter()
            .map(|e| (e.entry.outcome, e.entry.message.clone().unwrap_or_default()))
            .collect();
        assert!(
            said.contains(&(
                Outcome::Operator,
                format!("approval request {id} approved by alice")
            )),
            "{store}: {said:?}"
        );
        assert!(
            said.iter()
                .any(|(o, m)| *o == Outcome::Routed && m.contains("awaiting approval")),
            "{store}: {said:?}"
        );
        assert!(agent.verify().await.is_ok(), "{store}");
    }
}

#[tokio::test]
async fn an_approval_holds_for_its_payload_only() {
    for (store, agent, _dir) in agents().await {
        let bank = agent.resource::<Downstream>().unwrap().clone();
        let run = agent.start_run();
        let id = awaiting(refund(&run, &bank, &a_refund("INV-2", 500)).await);
        ops::queue_approve(&agent, id, "alice").await.unwrap();
        // Approved for 500: a call of the same key for 50 000 asks again.
        let other = awaiting(refund(&run, &bank, &a_refund("INV-2", 50_000)).await);
        assert_ne!(other, id, "{store}");
        assert_eq!(bank.total_effects(), 0, "{store}");
    }
}

#[tokio::test]
async fn a_rejected_key_answers_rejected_and_never_acts() {
    for (store, agent, _dir) in agents().await {
        let bank = agent.resource::<Downstream>().unwrap().clone();
        let run = agent.start_run();
        let id = awaiting(refund(&run, &bank, &a_refund("INV-3", 500)).await);
        ops::queue_reject(&agent, id, "bob", "refunded by hand already")
            .await
            .unwrap();
        for _ in 0..2 {
            match refund(&run, &bank, &a_refund("INV-3", 500)).await {
                Err(ActionError::Rejected { queue, note, .. }) => {
                    assert_eq!(queue.id, id, "{store}");
                    assert_eq!(note.as_deref(), Some("refunded by hand already"));
                }
                other => panic!("{store}: {other:?}"),
            }
        }
        assert_eq!(bank.total_effects(), 0, "{store}");
        let log = agent.store().log(&LogQuery::default()).await.unwrap();
        assert!(log.iter().any(|e| e.entry.message.as_deref()
            == Some(&*format!(
                "approval request {id} rejected by bob: refunded by hand already"
            ))));
    }
}

#[tokio::test]
async fn an_approval_is_used_once() {
    for (store, agent, _dir) in agents().await {
        let bank = agent.resource::<Downstream>().unwrap().clone();
        let run = agent.start_run();
        let id = awaiting(refund(&run, &bank, &a_refund("INV-4", 500)).await);
        ops::queue_approve(&agent, id, "alice").await.unwrap();
        // The approved call fails, goes to the owner, who releases the key after a fix.
        bank.fail_next(DownstreamError::Invalid("card expired".into()));
        let owner = match refund(&run, &bank, &a_refund("INV-4", 500)).await {
            Err(ActionError::Routed { queue, .. }) => queue.id,
            other => panic!("{store}: {other:?}"),
        };
        ops::queue_release(&agent, owner, "carol", "card updated")
            .await
            .unwrap();
        // The approval was used by that attempt: acting again needs another.
        let second = awaiting(refund(&run, &bank, &a_refund("INV-4", 500)).await);
        assert_ne!(second, id, "{store}");
        let entry = agent.store().queue_entry(second).await.unwrap().unwrap();
        assert_eq!(
            entry.message,
            format!("awaiting approval (the approval of entry {id} was used)")
        );
        assert_eq!(bank.total_effects(), 0, "{store}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_approval_unused_past_its_expiry_is_asked_again() {
    let bank = Downstream::new();
    let agent = Agent::builder()
        .store(MemoryStore::new())
        .resource(bank.clone())
        .build()
        .unwrap();
    let run = agent.start_run();
    let id = awaiting(refund(&run, &bank, &a_refund("INV-5", 500)).await);
    ops::queue_approve(&agent, id, "alice").await.unwrap();
    tokio::time::advance(Duration::from_secs(3600 + 1)).await;
    let again = awaiting(refund(&run, &bank, &a_refund("INV-5", 500)).await);
    assert_ne!(again, id);
    let entry = agent.store().queue_entry(again).await.unwrap().unwrap();
    assert_eq!(
        entry.message,
        format!("awaiting approval (the approval of entry {id} expired unused)")
    );
    ops::queue_approve(&agent, again, "alice").await.unwrap();
    refund(&run, &bank, &a_refund("INV-5", 500)).await.unwrap();
    assert_eq!(bank.total_effects(), 1);
}

#[tokio::test]
async fn approval_requests_are_settled_by_approving_or_rejecting_only() {
    let (_, agent, _dir) = agents().await.remove(0);
    let bank = agent.resource::<Downstream>().unwrap().clone();
    let run = agent.start_run();
    let id = awaiting(refund(&run, &bank, &a_refund("INV-6", 500)).await);
    for refused in [
        ops::queue_resolve(&agent, id, "eve", "fine").await,
        ops::queue_release(&agent, id, "eve", "fine").await,
        ops::queue_discard(&agent, id, "eve", "no").await,
    ] {
        assert!(
            matches!(refused, Err(ops::OpsError::ApprovalRequest(i)) if i == id),
            "{refused:?}"
        );
    }
    assert!(matches!(
        ops::replay(&agent, id, "eve").await,
        Err(ops::OpsError::ApprovalRequest(_))
    ));
    // And an entry that is not an approval request cannot be approved.
    bank.fail_next(DownstreamError::Invalid("no".into()));
    let approved = awaiting(refund(&run, &bank, &a_refund("INV-7", 1)).await);
    ops::queue_approve(&agent, approved, "alice").await.unwrap();
    let owner = match refund(&run, &bank, &a_refund("INV-7", 1)).await {
        Err(ActionError::Routed { queue, .. }) => queue.id,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        ops::queue_approve(&agent, owner, "alice").await,
        Err(ops::OpsError::NotApprovalRequest(_))
    ));
    ops::queue_claim(&agent, id, "alice").await.unwrap();
    ops::queue_approve(&agent, id, "alice").await.unwrap();
}

#[tokio::test]
async fn a_model_is_told_to_wait_for_approval_and_then_that_it_was_rejected() {
    let (_, agent, _dir) = agents().await.remove(0);
    let bank = agent.resource::<Downstream>().unwrap().clone();
    let run = agent.start_run();
    let args = serde_json::json!({ "r": { "invoice_id": "INV-8", "cents": 900 } });
    let first = agent.call_tool(&run, "refund", args.clone()).await;
    assert_eq!(first.outcome, ToolOutcome::AwaitingApproval, "{first:?}");
    let id = first.queue_entry.unwrap();
    ops::queue_reject(&agent, id, "bob", "duplicate")
        .await
        .unwrap();
    let second = agent.call_tool(&run, "refund", args).await;
    assert_eq!(second.outcome, ToolOutcome::Rejected);
    assert!(second.message.unwrap().contains("duplicate"));
    assert_eq!(bank.total_effects(), 0);
}
