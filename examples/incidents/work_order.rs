//! 3. Unreachable work-order state: three parallel calls on one work order.

use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{Agent, Run, agent_action};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, say};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    order: String,
    step: u32,
}

#[agent_action(
    key = "advance:{s.order}:{s.step}",
    record = "{s.order}",
    dedup = "none",
    backoff = "10ms..100ms"
)]
async fn advance(
    run: &Run,
    #[dep] plant: &Downstream,
    s: &Step,
) -> Result<Receipt, DownstreamError> {
    let attempt = run.attempt();
    say(format!(
        "guarded   step {} writes {} with fencing token {}",
        s.step,
        s.order,
        attempt.fencing_token().unwrap_or(0)
    ));
    plant.write_for(attempt).await
}

/// Three parallel writes unguarded, then three parallel `advance` calls; returns the summary's row.
pub async fn demo(agent: &Agent, checks: &mut Checks) -> Row {
    heading(
        3,
        "Unreachable work-order state: 3 parallel calls on work order WO-9",
    );
    let latency = Duration::from_millis(50);

    let naive_plant = Downstream::new().with_latency(latency);
    let _ = tokio::join!(
        naive_plant.write("WO-9", Some("1"), None),
        naive_plant.write("WO-9", Some("2"), None),
        naive_plant.write("WO-9", Some("3"), None),
    );
    let naive_max = naive_plant.max_in_flight("WO-9");
    say(format!(
        "unguarded: {naive_max} writers on WO-9 at once ({} overlapping writes)",
        naive_plant.overlaps()
    ));

    let plant = Downstream::new().with_latency(latency);
    let run = agent.start_run();
    let (s1, s2, s3) = (
        Step {
            order: "WO-9".into(),
            step: 1,
        },
        Step {
            order: "WO-9".into(),
            step: 2,
        },
        Step {
            order: "WO-9".into(),
            step: 3,
        },
    );
    let (a, b, c) = tokio::join!(
        advance(&run, &plant, &s1),
        advance(&run, &plant, &s2),
        advance(&run, &plant, &s3),
    );
    let ok = a.is_ok() && b.is_ok() && c.is_ok();
    say(format!(
        "guarded: at most {} writer on WO-9 at once, {} overlaps, highest fencing token {:?}",
        plant.max_in_flight("WO-9"),
        plant.overlaps(),
        plant.highest_token("WO-9")
    ));

    checks.expect("work order: all three steps written", ok, true);
    checks.expect("work order: effects", plant.effects("WO-9"), 3);
    checks.expect("work order: max in flight", plant.max_in_flight("WO-9"), 1);
    checks.expect("work order: overlaps", plant.overlaps(), 0);
    checks.expect(
        "work order: highest token",
        plant.highest_token("WO-9"),
        Some(3),
    );
    Row {
        incident: "work-order race",
        unguarded: format!("{naive_max} writers overlapped"),
        effects: plant.effects("WO-9"),
        duplicates: 0,
        skips: 0,
        queued: "0".into(),
        halt: "no",
        reverted: "-".into(),
        note: format!("max {} writer in flight", plant.max_in_flight("WO-9")),
    }
}
