//! The wrong priority flags incident, shared by the store-specific test files: a bug made the agent
//! flag 40 of 200 shipments. The blast radius of the faulty run finds exactly those 40 with their
//! before and after state; revert runs the declared compensating action for exactly those records and
//! restores them; a second revert changes nothing; a record changed by someone since is reported as
//! diverged and not overwritten.
//!
//! And a run that changes one shipment's priority three times: its blast radius shows the state
//! before the first change and after the last, and revert restores the first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actguard::log::LogQuery;
use actguard::ops::{self, RevertOptions, RevertStatus};
use actguard::{
    Agent, Classify, FailureKind, Outcome, QueueKind, QueueQuery, QueueStatus, Run, Store,
    agent_action, verify_chain,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The shipping system: a priority per shipment, and a count of writes.
#[derive(Clone, Default)]
struct Shipments(Arc<Mutex<(BTreeMap<u32, String>, u64)>>);

impl Shipments {
    fn get(&self, id: u32) -> String {
        self.0
            .lock()
            .unwrap()
            .0
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    fn set(&self, id: u32, priority: &str) {
        let mut s = self.0.lock().unwrap();
        s.0.insert(id, priority.to_owned());
        s.1 += 1;
    }

    fn all(&self) -> BTreeMap<u32, String> {
        self.0.lock().unwrap().0.clone()
    }

    fn writes(&self) -> u64 {
        self.0.lock().unwrap().1
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipment {
    id: u32,
}

#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("shipment {id} is `{current}` now, not `{expected}` as the reverted write left it")]
    Changed {
        id: u32,
        current: String,
        expected: String,
    },
    #[error("a compensating action only reverses a logged write")]
    NotARevert,
}

impl Classify for ShipError {
    fn classify(&self) -> FailureKind {
        match self {
            ShipError::Changed { .. } => FailureKind::Conflict,
            ShipError::NotARevert => FailureKind::Validation,
        }
    }
}

/// The correct action of the run: sets the ETA (not tracked here).
#[agent_action(
    key = "eta:{s.id}",
    record = "shipment:{s.id}",
    owner = "shipping",
    expert = "shipping-leads"
)]
async fn set_eta(run: &Run, s: &Shipment) -> Result<u32, ShipError> {
    let _ = run;
    Ok(s.id)
}

/// The buggy action: flags the shipment's priority.
#[agent_action(
    key = "flag:{s.id}",
    record = "shipment:{s.id}",
    owner = "shipping",
    expert = "shipping-leads",
    compensate = unflag_priority
)]
async fn flag_priority(run: &Run, #[dep] db: &Shipments, s: &Shipment) -> Result<(), ShipError> {
    run.attempt().before(&json!({ "priority": db.get(s.id) }));
    db.set(s.id, "flagged");
    run.attempt().after(&json!({ "priority": "flagged" }));
    Ok(())
}

/// Restores the priority the reverted write found, unless the shipment changed since.
#[agent_action(
    key = "unflag:{s.id}",
    record = "shipment:{s.id}",
    owner = "shipping",
    on_conflict = escalate,
    expert = "shipping-leads"
)]
async fn unflag_priority(run: &Run, #[dep] db: &Shipments, s: &Shipment) -> Result<(), ShipError> {
    restore(run, db, s.id)
}

/// A compensation's body: puts back `before` of the entry it reverses, unless the shipment is no
/// longer as that entry's `after` left it.
fn restore(run: &Run, db: &Shipments, id: u32) -> Result<(), ShipError> {
    let reverting = run.attempt().reverting().ok_or(ShipError::NotARevert)?;
    let field = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v["priority"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (before, after) = (
        field(&reverting.entry.before),
        field(&reverting.entry.after),
    );
    let current = db.get(id);
    if current != after {
        return Err(ShipError::Changed {
            id,
            current,
            expected: after,
        });
    }
    run.attempt().before(&json!({ "priority": current }));
    db.set(id, &before);
    run.attempt().after(&json!({ "priority": before }));
    Ok(())
}

/// 200 shipments; the faulty run sets every ETA and, by a bug, flags the 40 whose id is a multiple of 5.
pub async fn incident(store: Arc<dyn Store>) {
    let db = Shipments::default();
    let agent = Agent::builder()
        .resource(db.clone())
        .shared_store(store)
        .build()
        .unwrap();
    let store: &dyn Store = agent.store().as_ref();

    for id in 1..=200 {
        db.set(id, if id % 3 == 0 { "high" } else { "normal" });
    }
    let original = db.all();

    let faulty = agent.start_run();
    for id in 1..=200 {
        let s = Shipment { id };
        set_eta(&faulty, &s).await.unwrap();
        if id % 5 == 0 {
            flag_priority(&faulty, &db, &s).await.unwrap();
        }
    }
    let flagged: Vec<u32> = (1..=200).filter(|id| id % 5 == 0).collect();
    assert_eq!(flagged.len(), 40);
    assert!(flagged.iter().all(|id| db.get(*id) == "flagged"));

    // Blast radius of the faulty action in that run: exactly those 40, with before and after.
    let query = LogQuery {
        run_id: Some(faulty.id()),
        action: Some("flag_priority".into()),
        ..LogQuery::default()
    };
    let radius = ops::blast_radius(store, &query).await.unwrap();
    let records: Vec<String> = radius.records.iter().map(|r| r.record.clone()).collect();
    let expected: Vec<String> = flagged.iter().map(|id| format!("shipment:{id}")).collect();
    assert_eq!(records, expected);
    for (r, id) in radius.records.iter().zip(&flagged) {
        assert_eq!(r.before, Some(json!({ "priority": original[id] })));
        assert_eq!(r.after, Some(json!({ "priority": "flagged" })));
        assert_eq!(r.key_text, format!("flag:{id}"));
    }
    // The whole run touched all 200 (the ETA writes): the selection is what makes it exact.
    let whole_run = LogQuery {
        run_id: Some(faulty.id()),
        ..LogQuery::default()
    };
    assert_eq!(
        ops::blast_radius(store, &whole_run).await.unwrap().len(),
        240
    );

    // Someone fixed shipment 25 by hand meanwhile.
    db.set(25, "urgent");
    let writes_before = db.writes();
    let log_before = store.log(&LogQuery::default()).await.unwrap().len();

    // A dry run lists what would be invoked and changes nothing.
    let by = "oncall@shipping".to_owned();
    let dry = ops::revert(
        &agent,
        &radius,
        &RevertOptions {
            dry_run: true,
            by: by.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.planned(), 40);
    assert!(
        dry.records
            .iter()
            .all(|r| r.compensate.as_deref() == Some("unflag_priority"))
    );
    assert_eq!(dry.records[0].key_text, "revert:flag:5");
    assert_eq!(db.writes(), writes_before);
    assert_eq!(
        store.log(&LogQuery::default()).await.unwrap().len(),
        log_before
    );

    // The revert restores the 39 untouched records and leaves the changed one as it is.
    let options = RevertOptions { dry_run: false, by };
    let report = ops::revert(&agent, &radius, &options).await.unwrap();
    assert_eq!(
        (
            report.reverted(),
            report.already_reverted(),
            report.diverged(),
            report.failed()
        ),
        (39, 0, 1, 0),
        "{report}"
    );
    let diverged = report
        .records
        .iter()
        .find(|r| matches!(r.status, RevertStatus::Diverged { .. }))
        .unwrap();
    assert_eq!(diverged.record, "shipment:25");
    let RevertStatus::Diverged {
        queue_entry,
        message,
    } = &diverged.status
    else {
        unreachable!()
    };
    assert!(message.contains("`urgent`"), "{message}");
    let entry = store
        .queue_entry(queue_entry.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            entry.kind,
            entry.name.as_str(),
            entry.action.as_str(),
            entry.status
        ),
        (
            QueueKind::Expert,
            "shipping-leads",
            "unflag_priority",
            QueueStatus::Open
        )
    );
    let mut restored = original.clone();
    restored.insert(25, "urgent".to_owned());
    assert_eq!(db.all(), restored);
    assert_eq!(db.writes(), writes_before + 39);
    assert!(
        report
            .to_string()
            .ends_with("39 reverted, 0 already reverted, 1 diverged, 0 failed")
    );

    // Each compensation is logged as such, naming the entry it reverses.
    let compensated = store
        .log(&LogQuery {
            outcome: Some(Outcome::Compensated),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(compensated.len(), 39);
    assert!(compensated[0].entry.key_text.starts_with("revert:flag:"));
    assert!(
        compensated[0]
            .entry
            .message
            .as_deref()
            .unwrap()
            .starts_with("reverts log entry ")
    );
    let requested = store
        .log(&LogQuery {
            outcome: Some(Outcome::Operator),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(requested.len(), 1);
    assert!(
        requested[0]
            .entry
            .message
            .as_deref()
            .unwrap()
            .starts_with("revert of 40 records")
    );
    assert!(
        requested[0]
            .entry
            .message
            .as_deref()
            .unwrap()
            .ends_with("requested by oncall@shipping")
    );

    // A second revert changes nothing: the compensations replay their stored results.
    let again = ops::revert(&agent, &radius, &options).await.unwrap();
    assert_eq!(
        (
            again.reverted(),
            again.already_reverted(),
            again.diverged(),
            again.failed()
        ),
        (0, 39, 1, 0),
        "{again}"
    );
    assert_eq!(db.all(), restored);
    assert_eq!(db.writes(), writes_before + 39);
    assert_eq!(
        store
            .queue_entries(&QueueQuery {
                kind: Some(QueueKind::Expert),
                ..QueueQuery::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
    verify_chain(&store.log(&LogQuery::default()).await.unwrap()).unwrap();
}

/// A change of a shipment's priority; a run may change the same shipment several times.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    id: u32,
    priority: String,
}

/// Sets a shipment's priority (no loop filter: changing one shipment again within minutes is meant).
#[agent_action(
    key = "priority:{c.id}:{c.priority}",
    record = "shipment:{c.id}",
    dedup = "none",
    owner = "shipping",
    expert = "shipping-leads",
    compensate = restore_priority
)]
async fn set_priority(run: &Run, #[dep] db: &Shipments, c: &Change) -> Result<(), ShipError> {
    run.attempt().before(&json!({ "priority": db.get(c.id) }));
    db.set(c.id, &c.priority);
    run.attempt().after(&json!({ "priority": c.priority }));
    Ok(())
}

/// What the compensating actions were given to revert.
#[derive(Clone, Default)]
struct Reverting(Arc<Mutex<Vec<actguard::LogEntry>>>);

/// `set_priority`'s compensation: restores the priority before the reverted writes.
#[agent_action(
    key = "restore_priority:{c.id}",
    record = "shipment:{c.id}",
    owner = "shipping",
    on_conflict = escalate,
    expert = "shipping-leads"
)]
async fn restore_priority(
    run: &Run,
    #[dep] db: &Shipments,
    #[dep] seen: &Reverting,
    c: &Change,
) -> Result<(), ShipError> {
    if let Some(e) = run.attempt().reverting() {
        seen.0.lock().unwrap().push(e.clone());
    }
    restore(run, db, c.id)
}

/// A run changes shipment 1 three times (normal → high → urgent → critical) and shipment 2 once; an
/// earlier run had set shipment 1 from low to normal. The blast radius of the run shows shipment 1 as
/// normal → critical over 3 writes, and revert brings it back to normal (not to urgent, the state
/// before the last write), calling the compensation once with that first `before`.
pub async fn revert_restores_the_state_before_the_runs_first_write(store: Arc<dyn Store>) {
    let db = Shipments::default();
    let seen = Reverting::default();
    let agent = Agent::builder()
        .resource(db.clone())
        .resource(seen.clone())
        .shared_store(store)
        .build()
        .unwrap();
    let store: &dyn Store = agent.store().as_ref();
    let change = |id: u32, priority: &str| Change {
        id,
        priority: priority.to_owned(),
    };
    let priority = |p: &str| Some(json!({ "priority": p }));

    db.set(1, "low");
    db.set(2, "normal");
    let earlier = agent.start_run();
    set_priority(&earlier, &db, &change(1, "normal"))
        .await
        .unwrap();

    let faulty = agent.start_run();
    for (id, p) in [(1, "high"), (2, "high"), (1, "urgent"), (1, "critical")] {
        set_priority(&faulty, &db, &change(id, p)).await.unwrap();
    }
    assert_eq!((db.get(1), db.get(2)), ("critical".into(), "high".into()));
    let writes: Vec<u64> = store
        .log(&LogQuery {
            run_id: Some(faulty.id()),
            outcome: Some(Outcome::Succeeded),
            ..LogQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let [one_a, two, one_b, one_c] = writes[..] else {
        panic!("four writes, got {writes:?}")
    };

    // Blast radius of the run: one row per shipment, first before → last after, and the writes.
    let query = LogQuery {
        run_id: Some(faulty.id()),
        action: Some("set_priority".into()),
        ..LogQuery::default()
    };
    let radius = ops::blast_radius(store, &query).await.unwrap();
    assert_eq!((radius.len(), radius.writes()), (2, 4));
    let [second, first] = &radius.records[..] else {
        unreachable!()
    };
    assert_eq!(
        (second.record.as_str(), second.seqs.clone(), second.writes),
        ("shipment:2", vec![two], 1)
    );
    assert_eq!(
        (second.before.clone(), second.after.clone()),
        (priority("normal"), priority("high"))
    );
    assert_eq!(second.reverting(), second.entry);
    assert_eq!(first.record, "shipment:1");
    assert_eq!(first.before, priority("normal"));
    assert_eq!(first.after, priority("critical"));
    assert_eq!(first.writes, 3);
    assert_eq!(first.seqs, [one_a, one_b, one_c]);
    assert_eq!((first.seq, first.entry.seq), (one_c, one_c));
    assert_eq!(first.key_text, "priority:1:critical");
    // The view a compensation gets: the last write's entry, with the first write's before.
    let view = first.reverting();
    assert_eq!(
        (
            view.seq,
            view.entry.before.clone(),
            view.entry.after.clone()
        ),
        (one_c, priority("normal"), priority("critical"))
    );
    assert_eq!(first.entry.entry.before, priority("urgent"));

    // A selection of the record alone reaches back to the earlier run's write.
    let whole_history = ops::blast_radius(
        store,
        &LogQuery {
            record: Some("shipment:1".into()),
            ..LogQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(whole_history.len(), 1);
    let r = &whole_history.records[0];
    assert_eq!(
        (r.before.clone(), r.after.clone(), r.writes),
        (priority("low"), priority("critical"), 4)
    );

    // The dry run shows the same, and changes nothing.
    let by = "oncall@shipping".to_owned();
    let dry = ops::revert(
        &agent,
        &radius,
        &RevertOptions {
            dry_run: true,
            by: by.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.planned(), 2);
    let planned = &dry.records[1];
    assert_eq!(
        (
            planned.record.as_str(),
            planned.before.clone(),
            planned.after.clone(),
            planned.writes,
            planned.seq,
            planned.key_text.as_str()
        ),
        (
            "shipment:1",
            priority("normal"),
            priority("critical"),
            3,
            one_c,
            "revert:priority:1:critical"
        )
    );
    let text = dry.to_string();
    assert!(
        text.contains(&format!(
            "entries {one_a}…{one_c} (3 writes) set_priority -> restore_priority \
             [revert:priority:1:critical]  {{\"priority\":\"normal\"}} → {{\"priority\":\"critical\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("entry {two:<6} set_priority")),
        "{text}"
    );
    assert_eq!((db.get(1), db.get(2)), ("critical".into(), "high".into()));
    assert!(seen.0.lock().unwrap().is_empty());

    // Revert: shipment 1 is normal again (as before the run's first write), once.
    let options = RevertOptions { dry_run: false, by };
    let report = ops::revert(&agent, &radius, &options).await.unwrap();
    assert_eq!(
        (report.reverted(), report.diverged(), report.failed()),
        (2, 0, 0),
        "{report}"
    );
    assert_eq!((db.get(1), db.get(2)), ("normal".into(), "normal".into()));
    let given = seen.0.lock().unwrap().clone();
    assert_eq!(given.len(), 2);
    assert_eq!(given[1], view);
    let compensated = store
        .log(&LogQuery {
            outcome: Some(Outcome::Compensated),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(compensated.len(), 2);
    assert_eq!(
        (
            compensated[1].entry.record.as_str(),
            compensated[1].entry.key_text.as_str(),
            compensated[1].entry.before.clone(),
            compensated[1].entry.after.clone(),
            compensated[1].entry.message.clone()
        ),
        (
            "shipment:1",
            "revert:priority:1:critical",
            priority("critical"),
            priority("normal"),
            Some(format!("reverts log entry {one_c}"))
        )
    );
    let requested = store
        .log(&LogQuery {
            outcome: Some(Outcome::Operator),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        requested[0].entry.message.as_deref(),
        Some(
            format!(
                "revert of 2 records (log entries {one_a}, {two}, {one_b}, {one_c}) requested by oncall@shipping"
            )
            .as_str()
        )
    );

    // Again: nothing acts, the shipment stays normal.
    let again = ops::revert(&agent, &radius, &options).await.unwrap();
    assert_eq!(again.already_reverted(), 2, "{again}");
    assert_eq!((db.get(1), db.get(2)), ("normal".into(), "normal".into()));
    verify_chain(&store.log(&LogQuery::default()).await.unwrap()).unwrap();
}
