//! The wrong priority flags incident, shared by the store-specific test files: a bug made the agent
//! flag 40 of 200 shipments. The blast radius of the faulty run finds exactly those 40 with their
//! before and after state; revert runs the declared compensating action for exactly those records and
//! restores them; a second revert changes nothing; a record changed by someone since is reported as
//! diverged and not overwritten.

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
    #[error("unflag_priority only reverses a logged flag_priority")]
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
    let current = db.get(s.id);
    if current != after {
        return Err(ShipError::Changed {
            id: s.id,
            current,
            expected: after,
        });
    }
    run.attempt().before(&json!({ "priority": current }));
    db.set(s.id, &before);
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
