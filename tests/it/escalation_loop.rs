//! The six-hour escalation loop: an action re-triggered itself through a timestamp in its input, so
//! every trigger had a new idempotency key. The loop filter skips (record, action) within the dedup
//! window whatever the key, and logs every skip.

use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{ActionError, Outcome, Run, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trigger {
    ticket: String,
    /// The timestamp that made every trigger look new.
    at: u64,
}

#[agent_action(
    key = "escalate:{t.ticket}:{t.at}",
    record = "{t.ticket}",
    dedup = "1h"
)]
async fn escalate(
    run: &Run,
    #[dep] pager: &Downstream,
    t: &Trigger,
) -> Result<Receipt, DownstreamError> {
    pager.write_for(run.attempt()).await
}

#[tokio::test(start_paused = true)]
async fn re_triggers_within_the_window_are_skipped_and_logged() {
    let w = World::new();
    let run = w.agent.start_run();
    let pager = Downstream::new();
    escalate(
        &run,
        &pager,
        &Trigger {
            ticket: "T-1".into(),
            at: 0,
        },
    )
    .await
    .unwrap();

    for i in 1..=5u64 {
        tokio::time::advance(Duration::from_secs(10 * 60)).await;
        let again = escalate(
            &run,
            &pager,
            &Trigger {
                ticket: "T-1".into(),
                at: i * 600,
            },
        )
        .await;
        match again {
            Err(ActionError::Skipped {
                record,
                previous_key,
                ..
            }) => assert_eq!(
                (record.as_str(), previous_key.as_str()),
                ("T-1", "escalate:T-1:0")
            ),
            other => panic!("trigger {i}: {other:?}"),
        }
    }

    assert_eq!(pager.writes(), 1, "the pager was called once");
    let skips: Vec<_> = log(&w.agent)
        .await
        .into_iter()
        .filter(|e| e.entry.outcome == Outcome::Skipped)
        .collect();
    assert_eq!(skips.len(), 5);
    assert_eq!(skips[0].entry.key_text, "escalate:T-1:600");
    assert!(skips.iter().all(|e| {
        e.entry
            .message
            .as_deref()
            .unwrap()
            .contains("escalate:T-1:0")
    }));
    assert_eq!(
        w.agent
            .metrics()
            .get("escalate", actguard::MetricOutcome::Skipped),
        5
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_window_the_action_acts_again() {
    let w = World::new();
    let run = w.agent.start_run();
    let pager = Downstream::new();
    escalate(
        &run,
        &pager,
        &Trigger {
            ticket: "T-1".into(),
            at: 0,
        },
    )
    .await
    .unwrap();
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert!(matches!(
        escalate(
            &run,
            &pager,
            &Trigger {
                ticket: "T-1".into(),
                at: 3599
            }
        )
        .await,
        Err(ActionError::Skipped { .. })
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    escalate(
        &run,
        &pager,
        &Trigger {
            ticket: "T-1".into(),
            at: 3601,
        },
    )
    .await
    .unwrap();
    assert_eq!(pager.effects("T-1"), 2);
}

#[tokio::test(start_paused = true)]
async fn another_record_is_not_filtered() {
    let w = World::new();
    let run = w.agent.start_run();
    let pager = Downstream::new();
    escalate(
        &run,
        &pager,
        &Trigger {
            ticket: "T-1".into(),
            at: 0,
        },
    )
    .await
    .unwrap();
    escalate(
        &run,
        &pager,
        &Trigger {
            ticket: "T-2".into(),
            at: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(pager.total_effects(), 2);
}
