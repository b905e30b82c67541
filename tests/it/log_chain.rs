//! The action log is a SHA-256 chain: it verifies as written, and editing, deleting or swapping one
//! entry is detected at that entry. Values marked `Redacted` are stored as keyed digests only.

use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{ActionError, ChainError, Outcome, Redacted, Run, Store, VerifyError, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    ticket: u32,
    priority: String,
}

#[agent_action(
    key = "set_priority:{c.ticket}:{c.priority}",
    name = "set_ticket_priority",
    record = "{c.ticket}",
    dedup = "none"
)]
async fn set_priority(
    run: &Run,
    #[dep] tickets: &Downstream,
    c: &Change,
) -> Result<Receipt, DownstreamError> {
    run.attempt()
        .before(&serde_json::json!({"priority": "low"}));
    tickets.write_for(run.attempt()).await
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Payee {
    loan: String,
    iban: Redacted<String>,
}

#[agent_action(
    key = "pay:{p.loan}",
    name = "pay_loan",
    record = "{p.loan}",
    on_validation = route_owner,
    owner = "ops"
)]
async fn pay(run: &Run, #[dep] bank: &Downstream, p: &Payee) -> Result<Receipt, DownstreamError> {
    assert_eq!(p.iban.len(), 22, "the body sees the value in clear");
    bank.write_for(run.attempt()).await
}

/// Six entries: retries, successes, a replay.
async fn world_with_a_log() -> World {
    let w = World::new();
    let run = w.agent.start_run();
    let tickets = Downstream::new();
    tickets.fail_next_n(2, DownstreamError::AckTimeout);
    for (ticket, priority) in [(1, "high"), (2, "high"), (3, "urgent")] {
        let c = Change {
            ticket,
            priority: priority.into(),
        };
        set_priority(&run, &tickets, &c).await.unwrap();
    }
    let c = Change {
        ticket: 1,
        priority: "high".into(),
    };
    set_priority(&run, &tickets, &c).await.unwrap();
    assert_eq!(log(&w.agent).await.len(), 6);
    w
}

fn chain_error(r: Result<u64, VerifyError>) -> ChainError {
    match r {
        Err(VerifyError::Chain(e)) => e,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_log_chain_verifies_as_written() {
    let w = world_with_a_log().await;
    assert_eq!(w.agent.verify().await.unwrap(), 6);
    assert_eq!(actguard::verify(&w.store).await.unwrap(), 6);
    let outcomes: Vec<Outcome> = log(&w.agent)
        .await
        .iter()
        .map(|e| e.entry.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Retrying,
            Outcome::Retrying,
            Outcome::Succeeded,
            Outcome::Succeeded,
            Outcome::Succeeded,
            Outcome::Replayed
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_edited_entry_is_detected_at_that_entry() {
    let w = world_with_a_log().await;
    w.store.tamper_with_log(|log| {
        log[3].entry.after = Some(serde_json::json!({"priority": "low"}));
    });
    assert_eq!(
        chain_error(w.agent.verify().await),
        ChainError::Modified { seq: 4 }
    );
}

#[tokio::test(start_paused = true)]
async fn an_edit_with_a_recomputed_hash_is_detected_at_the_next_entry() {
    let w = world_with_a_log().await;
    w.store.tamper_with_log(|log| {
        let mut forged = log[3].entry.clone();
        forged.before = None;
        log[3] = actguard::LogEntry::chain_after(log[3].seq, log[3].prev_hash.clone(), forged);
    });
    assert_eq!(
        chain_error(w.agent.verify().await),
        ChainError::Broken {
            seq: 5,
            prev_seq: 4
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_entry_is_detected_where_it_was() {
    let w = world_with_a_log().await;
    w.store.tamper_with_log(|log| {
        log.remove(2);
    });
    assert_eq!(
        chain_error(w.agent.verify().await),
        ChainError::Sequence {
            seq: 4,
            prev_seq: 2
        }
    );
}

#[tokio::test(start_paused = true)]
async fn two_swapped_entries_are_detected_at_the_first_of_them() {
    let w = world_with_a_log().await;
    w.store.tamper_with_log(|log| log.swap(3, 4));
    assert_eq!(
        chain_error(w.agent.verify().await),
        ChainError::Sequence {
            seq: 5,
            prev_seq: 3
        }
    );
}

#[tokio::test(start_paused = true)]
async fn redacted_values_are_stored_as_digests_only() {
    let w = World::new();
    let run = w.agent.start_run();
    let bank = Downstream::new();
    bank.fail_next(DownstreamError::Invalid("unknown bank".into()));
    let payee = Payee {
        loan: "L-1".into(),
        iban: Redacted::new("DE89370400440532013000".into()),
    };
    let routed = pay(&run, &bank, &payee).await;
    assert!(matches!(routed, Err(ActionError::Routed { .. })));

    let entry = w.store.queue_entry(1).await.unwrap().unwrap();
    let stored = entry.payload["p"]["iban"].as_str().unwrap().to_owned();
    assert_eq!(stored, payee.iban.digest_with(w.agent.redaction_key()));
    assert!(stored.starts_with("hmac-sha256:"));
    let everything = format!(
        "{}{}",
        serde_json::to_string(&log(&w.agent).await).unwrap(),
        serde_json::to_string(&entry).unwrap()
    );
    assert!(!everything.contains("DE89370400440532013000"));
}
