//! 6. Wrong priority flags: a bug changed a batch of tickets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use actguard::ops::{self, RevertOptions};
use actguard::{Agent, Classify, LogQuery, Run, agent_action};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, say, short};

/// A simulated service desk: a priority per ticket.
#[derive(Debug, Clone, Default)]
pub struct Desk {
    priorities: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Desk {
    fn get(&self, ticket: &str) -> String {
        let p = self.priorities.lock().unwrap();
        p.get(ticket).cloned().unwrap_or_else(|| "P3".to_owned())
    }

    fn set(&self, ticket: &str, priority: &str) {
        let mut p = self.priorities.lock().unwrap();
        p.insert(ticket.to_owned(), priority.to_owned());
    }

    fn snapshot(&self) -> BTreeMap<String, String> {
        self.priorities.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Classify, thiserror::Error, Serialize, Deserialize)]
enum DeskError {
    #[error("the service desk is unavailable")]
    #[classify(transient)]
    Unavailable,
    #[error("ticket {ticket} changed since the faulty write (now {now}): not overwritten")]
    #[classify(conflict)]
    ChangedSince { ticket: String, now: String },
    #[error("restore_priority runs only as the compensation of set_priority (revert)")]
    #[classify(validation)]
    NotAReversal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flag {
    ticket: String,
    batch: u32,
    priority: String,
}

#[agent_action(
    key = "flag:{f.ticket}:{f.batch}",
    record = "{f.ticket}",
    dedup = "none",
    backoff = "10ms..100ms",
    compensate = restore_priority
)]
async fn set_priority(run: &Run, #[dep] desk: &Desk, f: &Flag) -> Result<String, DeskError> {
    let attempt = run.attempt();
    attempt.before(&desk.get(&f.ticket));
    desk.set(&f.ticket, &f.priority);
    attempt.after(&f.priority);
    Ok(f.priority.clone())
}

/// The compensating action of `set_priority`, run by revert for exactly the records of a bad batch: it
/// gets the same payload, and the log entry it reverses, whose `before` is the priority to put back.
/// A ticket changed since the faulty write is left alone (a conflict: the expert queue decides).
#[agent_action(
    key = "restore:{f.ticket}:{f.batch}",
    record = "{f.ticket}",
    dedup = "none",
    backoff = "10ms..100ms",
    expert = "service-desk"
)]
async fn restore_priority(run: &Run, #[dep] desk: &Desk, f: &Flag) -> Result<String, DeskError> {
    let attempt = run.attempt();
    let reverting = attempt.reverting().ok_or(DeskError::NotAReversal)?;
    let before: String = reverting
        .entry
        .before
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(DeskError::NotAReversal)?;
    let now = desk.get(&f.ticket);
    if now != f.priority {
        return Err(DeskError::ChangedSince {
            ticket: f.ticket.clone(),
            now,
        });
    }
    attempt.before(&now);
    desk.set(&f.ticket, &before);
    attempt.after(&before);
    Ok(before)
}

/// The bug's batch on a desk without a log, then through `set_priority`, its blast radius and
/// revert; returns the summary's row and the bad batch's run.
pub async fn demo(agent: &Agent, desk: &Desk, checks: &mut Checks) -> (Row, uuid::Uuid) {
    heading(
        6,
        "Wrong priority flags: a bug sets P1 on a batch of 5 tickets among 12",
    );
    let tickets: Vec<String> = (1..=12).map(|i| format!("T-{i:02}")).collect();
    let buggy: Vec<&String> = tickets
        .iter()
        .filter(|t| ["T-02", "T-05", "T-07", "T-08", "T-09"].contains(&t.as_str()))
        .collect();

    // Unguarded: the same bug, no log; afterwards nobody can say which tickets it touched.
    let naive_desk = Desk::default();
    for (i, t) in tickets.iter().enumerate() {
        naive_desk.set(t, if i % 3 == 0 { "P2" } else { "P3" });
    }
    for t in &buggy {
        naive_desk.set(t, "P1");
    }
    let naive_p1 = naive_desk
        .snapshot()
        .values()
        .filter(|p| *p == "P1")
        .count();
    say(format!(
        "unguarded: {naive_p1} tickets now P1; no record of which write did it or what they were before"
    ));

    let triage = agent.start_run();
    for (i, t) in tickets.iter().enumerate() {
        let f = Flag {
            ticket: t.clone(),
            batch: 1,
            priority: if i % 3 == 0 { "P2" } else { "P3" }.into(),
        };
        let _ = set_priority(&triage, desk, &f).await;
    }
    let good = desk.snapshot();
    let bad_run = agent.start_run();
    for t in &buggy {
        let f = Flag {
            ticket: (*t).clone(),
            batch: 2,
            priority: "P1".into(),
        };
        let r = set_priority(&bad_run, desk, &f).await;
        say(format!("guarded   batch 2 sets {t} to P1: {}", short(&r)));
    }
    let changed: BTreeSet<String> = desk
        .snapshot()
        .into_iter()
        .filter(|(t, p)| good.get(t) != Some(p))
        .map(|(t, _)| t)
        .collect();

    // The blast radius: what the bad run's set_priority wrote, with before and after, from the log.
    let selection = LogQuery {
        run_id: Some(bad_run.id()),
        action: Some("set_priority".into()),
        ..LogQuery::default()
    };
    let radius = match ops::blast_radius(agent.store().as_ref(), &selection).await {
        Ok(r) => r,
        Err(e) => {
            say(format!("guarded: blast radius failed: {e}"));
            ops::BlastRadius::default()
        }
    };
    say("guarded: blast radius of the bad batch, from the action log:".to_string());
    let mut in_radius = BTreeSet::new();
    let mut restorable = 0;
    for r in &radius.records {
        let before = r.before.clone().unwrap_or_default();
        let after = r.after.clone().unwrap_or_default();
        if good.get(&r.record).map(|p| serde_json::json!(p)) == Some(before.clone()) {
            restorable += 1;
        }
        say(format!(
            "  seq {:>3} {} before {before} after {after}",
            r.seq, r.record
        ));
        in_radius.insert(r.record.clone());
    }

    // Revert: restore_priority (set_priority's `compensate`) for exactly those records.
    let options = RevertOptions {
        dry_run: false,
        by: "incidents demo".into(),
    };
    let report = ops::revert(agent, &radius, &options).await;
    let (reverted, failed) = match &report {
        Ok(r) => (r.reverted(), r.failed() + r.diverged()),
        Err(e) => {
            say(format!("guarded: revert failed: {e}"));
            (0, radius.len())
        }
    };
    let restored = desk.snapshot() == good;
    say(format!(
        "guarded: revert ran restore_priority on {reverted} records; every ticket back to its priority before the batch: {restored}"
    ));
    // A second revert of the same selection replays the compensations' stored results: nothing acts.
    let again = ops::revert(agent, &radius, &options).await;
    let already = again.as_ref().map(|r| r.already_reverted()).unwrap_or(0);
    say(format!(
        "guarded: a second revert: {already} records already reverted, nothing written"
    ));

    checks.expect(
        "flags: blast radius = records the bug changed",
        &in_radius,
        &changed,
    );
    checks.expect("flags: blast radius size", radius.len(), 5);
    checks.expect("flags: before state kept for each", restorable, 5);
    checks.expect("flags: records reverted", reverted, 5);
    checks.expect("flags: records not reverted", failed, 0);
    checks.expect("flags: priorities restored", restored, true);
    checks.expect("flags: second revert acts on nothing", already, 5);
    checks.expect(
        "flags: still restored after the second revert",
        desk.snapshot() == good,
        true,
    );
    let row = Row {
        incident: "wrong priority flags",
        unguarded: format!("{naive_p1} wrong, blast radius unknown"),
        effects: radius.len() as u64,
        duplicates: 0,
        skips: 0,
        queued: "0".into(),
        halt: "no",
        reverted: reverted.to_string(),
        note: format!("blast radius {} records", radius.len()),
    };
    (row, bad_run.id())
}
