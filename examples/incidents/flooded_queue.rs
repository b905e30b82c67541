//! 5. Flooded human queue: every failure went to one queue.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use actguard::store::QueueQuery;
use actguard::testing::{Downstream, DownstreamError, Receipt, naive_retry};
use actguard::{
    ActionError, Agent, AlertSink, Classify, FailureKind, HaltAlert, QueueKind, Run, agent_action,
};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, outcome, say, short};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Posting {
    id: String,
    cents: i64,
}

#[agent_action(
    key = "post:{p.id}",
    record = "{p.id}",
    retries = 2,
    max_elapsed = "1m",
    backoff = "10ms..100ms",
    on_validation = route_owner,
    owner = "loan-ops",
    on_conflict = escalate,
    expert = "credit-risk",
    on_security = halt
)]
async fn post(
    run: &Run,
    #[dep] ledger: &Downstream,
    p: &Posting,
) -> Result<Receipt, DownstreamError> {
    let attempt = run.attempt();
    let result = ledger.write_for(attempt).await;
    say(format!(
        "guarded   {} attempt {}: {}",
        p.id,
        attempt.number(),
        outcome(&result)
    ));
    result
}

/// Prints each halt: where a real agent would page someone.
pub struct PrintAlert(pub Arc<Mutex<u32>>);

impl AlertSink for PrintAlert {
    fn alert(&self, halt: &HaltAlert) {
        *self.0.lock().unwrap() += 1;
        say(format!(
            "ALERT     run halted by `{}` on {}: {}",
            halt.action.as_deref().unwrap_or("?"),
            halt.record.as_deref().unwrap_or("?"),
            halt.reason
        ));
    }
}

/// Four failures of different kinds through the naive loop, then through `post`; `alerts` counts
/// `PrintAlert`'s halts. Returns the summary's row.
pub async fn demo(agent: &Agent, alerts: &Mutex<u32>, checks: &mut Checks) -> Row {
    heading(
        5,
        "Flooded human queue: a validation error, a conflict, an outage, a revoked credential",
    );
    let posting = |id: &str, cents| Posting {
        id: id.into(),
        cents,
    };
    let cases = [
        (
            posting("P-1", -500),
            DownstreamError::Invalid("amount must be positive".into()),
            3,
        ),
        (
            posting("P-2", 900),
            DownstreamError::Conflict("account A-2 is closed".into()),
            3,
        ),
        (
            posting("P-3", 700),
            DownstreamError::Unavailable { retry_after: None },
            3,
        ),
        (
            posting("P-4", 300),
            DownstreamError::Forbidden("token lacks ledger:write".into()),
            3,
        ),
    ];
    let after = posting("P-5", 100);

    // The naive loop: retry whatever happened, then put it in the one queue; the run goes on.
    let naive_ledger = Downstream::new();
    let mut one_queue = Vec::new();
    for (p, error, n) in &cases {
        naive_ledger.fail_next_n(*n, error.clone());
        if let Err(e) = naive_retry(3, || naive_ledger.write(&p.id, None, None)).await {
            say(format!(
                "unguarded {}: 3 attempts, then `{e}` to the ops queue",
                p.id
            ));
            one_queue.push(e);
        }
    }
    let naive_after = naive_ledger.write(&after.id, None, None).await.is_ok();
    say(format!(
        "unguarded: {} entries in one queue, {} ledger calls, P-5 {} after the credential failure",
        one_queue.len(),
        naive_ledger.writes(),
        if naive_after {
            "still posted"
        } else {
            "refused"
        }
    ));

    let ledger = Downstream::new();
    let run = agent.start_run();
    for (p, error, _) in &cases {
        // A guarded call retries only the transient failure (3 attempts: retries = 2); every other
        // kind stops at its first failure.
        let n = if error.classify() == FailureKind::Transient {
            3
        } else {
            1
        };
        ledger.fail_next_n(n, error.clone());
        let r = post(&run, &ledger, p).await;
        say(format!("guarded   {}: {}", p.id, short(&r)));
    }
    let refused = post(&run, &ledger, &after).await;
    say(format!("guarded   P-5 after the halt: {}", short(&refused)));

    let store = agent.store();
    let count = |kind| {
        let store = store.clone();
        let run_id = run.id();
        async move {
            store
                .queue_entries(&QueueQuery {
                    kind: Some(kind),
                    run_id: Some(run_id),
                    ..QueueQuery::default()
                })
                .await
                .map(|q| {
                    let names: BTreeSet<String> = q.iter().map(|e| e.name.clone()).collect();
                    (
                        q.len() as u64,
                        names.into_iter().collect::<Vec<_>>().join(","),
                    )
                })
                .unwrap_or((0, String::new()))
        }
    };
    let (owner, owner_names) = count(QueueKind::Owner).await;
    let (expert, expert_names) = count(QueueKind::Expert).await;
    let (dead, _) = count(QueueKind::DeadLetter).await;
    let (security, _) = count(QueueKind::Security).await;
    let halted = run.is_halted().await.unwrap_or(false);
    let alerted = *alerts.lock().unwrap();
    say(format!(
        "guarded: owner queue {owner_names}: {owner}, expert queue {expert_names}: {expert}, dead-letter: {dead}, security (key quarantined): {security}, run halted: {halted}, alerts: {alerted}"
    ));

    checks.expect("queues: owner entries", owner, 1);
    checks.expect("queues: owner queue", owner_names.as_str(), "loan-ops");
    checks.expect("queues: expert entries", expert, 1);
    checks.expect("queues: expert queue", expert_names.as_str(), "credit-risk");
    checks.expect("queues: dead-letter entries", dead, 1);
    checks.expect("queues: security entries", security, 1);
    checks.expect("queues: run halted", halted, true);
    checks.expect("queues: alerts", alerted, 1);
    checks.expect(
        "queues: P-5 refused by the halt",
        matches!(refused, Err(ActionError::Halted { .. })),
        true,
    );
    checks.expect("queues: ledger effects", ledger.total_effects(), 0);
    Row {
        incident: "flooded queue",
        unguarded: format!("{} in one queue, run went on", one_queue.len()),
        effects: ledger.total_effects(),
        duplicates: 0,
        skips: 0,
        queued: format!("{owner} owner, {expert} expert, {dead} dead, {security} security"),
        halt: if halted { "yes" } else { "no" },
        reverted: "-".into(),
        note: format!("{alerted} alert, P-5 refused"),
    }
}
