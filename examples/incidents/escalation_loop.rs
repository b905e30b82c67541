//! 4. Six-hour escalation loop: the trigger's timestamp made every re-trigger look new.

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{ActionError, Agent, LogQuery, Outcome, Run, agent_action};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, say};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trigger {
    ticket: String,
    /// Minutes since the first trigger: part of the key, so every trigger has a new key.
    at_min: u32,
}

#[agent_action(
    key = "escalate:{t.ticket}:{t.at_min}",
    record = "{t.ticket}",
    dedup = "24h",
    backoff = "10ms..100ms"
)]
async fn escalate(
    run: &Run,
    #[dep] pager: &Downstream,
    t: &Trigger,
) -> Result<Receipt, DownstreamError> {
    pager.write_for(run.attempt()).await
}

/// Every trigger paged unguarded, then every trigger through `escalate`; returns the summary's row.
pub async fn demo(agent: &Agent, checks: &mut Checks) -> Row {
    heading(
        4,
        "Six-hour escalation loop: ticket T-1 re-triggers every 10 minutes, a new timestamp each time",
    );
    let triggers: Vec<Trigger> = (0..36)
        .map(|i| Trigger {
            ticket: "T-1".into(),
            at_min: i * 10,
        })
        .collect();

    let naive_pager = Downstream::new();
    for t in &triggers {
        let key = format!("escalate:{}:{}", t.ticket, t.at_min);
        let _ = naive_pager.write(&t.ticket, Some(&key), None).await;
    }
    say(format!(
        "unguarded: {} triggers, {} pages sent",
        triggers.len(),
        naive_pager.effects("T-1")
    ));

    let pager = Downstream::new();
    let run = agent.start_run();
    let mut skipped = 0u64;
    for t in &triggers {
        match escalate(&run, &pager, t).await {
            Ok(_) => say(format!("guarded   trigger at {:>3} min: paged", t.at_min)),
            Err(ActionError::Skipped { previous_key, .. }) => {
                skipped += 1;
                if skipped <= 2 {
                    say(format!(
                        "guarded   trigger at {:>3} min: skipped (acted under {previous_key} within 24h), logged",
                        t.at_min
                    ));
                } else if skipped == 3 {
                    say("guarded   ... every later trigger: skipped and logged");
                }
            }
            Err(e) => say(format!("guarded   trigger at {} min: {e}", t.at_min)),
        }
    }
    let logged = agent
        .store()
        .log(&LogQuery {
            run_id: Some(run.id()),
            action: Some("escalate".into()),
            outcome: Some(Outcome::Skipped),
            ..LogQuery::default()
        })
        .await
        .map(|e| e.len() as u64)
        .unwrap_or(0);
    say(format!(
        "guarded: {} page sent, {skipped} triggers skipped, {logged} skips in the log",
        pager.effects("T-1")
    ));

    checks.expect("escalation: pages", pager.effects("T-1"), 1);
    checks.expect("escalation: skips", skipped, 35);
    checks.expect("escalation: skips logged", logged, 35);
    Row {
        incident: "escalation loop",
        unguarded: format!("{} pages", naive_pager.effects("T-1")),
        effects: pager.effects("T-1"),
        duplicates: 0,
        skips: skipped,
        queued: "0".into(),
        halt: "no",
        reverted: "-".into(),
        note: format!("{logged} skips logged"),
    }
}
