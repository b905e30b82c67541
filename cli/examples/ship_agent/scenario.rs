//! A shipping agent with the incidents operators clean up: orders routed to the data owner and the
//! domain expert, an order dead-lettered after its retries, a run halted by a security failure, and
//! the shipment-priority incident (a buggy batch flags 40 of 200 shipments as high priority).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{Agent, Classify, Run, Store, agent_action};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order to ship.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub qty: u32,
    /// The delivery address's postcode, when the order has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
}

/// A shipment whose priority the agent sets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
}

/// The priority of a shipment on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    High,
}

/// The shipment board: one priority per shipment. Clones share the same board.
#[derive(Debug, Clone, Default)]
pub struct PriorityBoard {
    flags: Arc<Mutex<BTreeMap<String, Priority>>>,
}

impl PriorityBoard {
    /// A board with `n` shipments `S-001`.. at normal priority.
    pub fn with_shipments(n: u32) -> PriorityBoard {
        let board = PriorityBoard::default();
        for i in 1..=n {
            board.set(&shipment_id(i), Priority::Normal);
        }
        board
    }

    pub fn get(&self, id: &str) -> Priority {
        let flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        flags.get(id).copied().unwrap_or(Priority::Normal)
    }

    pub fn set(&self, id: &str, p: Priority) {
        let mut flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        flags.insert(id.to_owned(), p);
    }

    /// Every shipment's priority.
    pub fn snapshot(&self) -> BTreeMap<String, Priority> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A board holding `flags`.
    pub fn from_snapshot(flags: BTreeMap<String, Priority>) -> PriorityBoard {
        PriorityBoard {
            flags: Arc::new(Mutex::new(flags)),
        }
    }

    /// Shipments at high priority.
    pub fn high(&self) -> Vec<String> {
        let flags = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        flags
            .iter()
            .filter(|(_, p)| **p == Priority::High)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The board refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Classify)]
pub enum BoardError {
    #[classify(transient)]
    #[error("the shipment board is unavailable")]
    Unavailable,
    /// A revert found the shipment changed since the write it reverses: someone else set it.
    #[classify(conflict)]
    #[error("shipment {shipment} is {now:?}, not {expected:?} as the reverted write left it")]
    Changed {
        shipment: String,
        now: Priority,
        expected: Priority,
    },
}

/// What the board answers to a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardChange {
    pub shipment: String,
    pub priority: Priority,
}

pub fn shipment_id(i: u32) -> String {
    format!("S-{i:03}")
}

/// Ships an order through the carrier.
#[agent_action(
    key = "ship:{order.id}",
    record = "{order.id}",
    retries = 1,
    backoff = "50ms..100ms",
    jitter = none,
    on_validation = route_owner,
    owner = "warehouse-data",
    on_conflict = escalate,
    expert = "logistics",
    on_security = halt
)]
pub async fn ship_order(
    run: &Run,
    #[dep] carrier: &Downstream,
    order: &Order,
) -> Result<Receipt, DownstreamError> {
    carrier.write_for(run.attempt()).await
}

/// Sets a shipment to high priority (the buggy batch calls it for shipments it should not).
#[agent_action(
    key = "flag_priority:{shipment.id}",
    record = "{shipment.id}",
    compensate = unflag_priority,
    owner = "dispatch",
    expert = "dispatch"
)]
pub async fn flag_priority(
    run: &Run,
    #[dep] board: &PriorityBoard,
    shipment: &Shipment,
) -> Result<BoardChange, BoardError> {
    run.attempt().before(&board.get(&shipment.id));
    board.set(&shipment.id, Priority::High);
    run.attempt().after(&Priority::High);
    Ok(BoardChange {
        shipment: shipment.id.clone(),
        priority: Priority::High,
    })
}

/// Puts a shipment back to the priority it had before `flag_priority` (its compensation). Refuses,
/// as a conflict, a shipment whose priority changed since the write being reverted.
#[agent_action(
    key = "unflag_priority:{shipment.id}",
    record = "{shipment.id}",
    owner = "dispatch",
    expert = "dispatch"
)]
pub async fn unflag_priority(
    run: &Run,
    #[dep] board: &PriorityBoard,
    shipment: &Shipment,
) -> Result<BoardChange, BoardError> {
    let now = board.get(&shipment.id);
    let mut restore = Priority::Normal;
    if let Some(reverting) = run.attempt().reverting() {
        let left: Option<Priority> = reverting
            .entry
            .after
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        if let Some(expected) = left.filter(|p| *p != now) {
            return Err(BoardError::Changed {
                shipment: shipment.id.clone(),
                now,
                expected,
            });
        }
        if let Some(before) = reverting
            .entry
            .before
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
        {
            restore = before;
        }
    }
    run.attempt().before(&now);
    board.set(&shipment.id, restore);
    run.attempt().after(&restore);
    Ok(BoardChange {
        shipment: shipment.id.clone(),
        priority: restore,
    })
}

/// The agent and the outside world it writes to.
pub struct World {
    pub agent: Agent,
    pub carrier: Downstream,
    pub board: PriorityBoard,
}

impl World {
    /// An agent on `store`, with a carrier and a board of 200 shipments as resources.
    pub fn new(store: impl Store) -> World {
        World::with_board(store, PriorityBoard::with_shipments(200))
    }

    /// An agent on `store`, with a carrier and `board` as resources.
    pub fn with_board(store: impl Store, board: PriorityBoard) -> World {
        let carrier = Downstream::new();
        let agent = Agent::builder()
            .store(store)
            .resource(carrier.clone())
            .resource(board.clone())
            .jitter_seed(7)
            .build()
            .expect("the scenario's actions pass the audit");
        World {
            agent,
            carrier,
            board,
        }
    }
}

/// What the scenario left in the store.
#[derive(Debug, Clone)]
pub struct Filled {
    /// Shipped three orders; one routed to the owner, one escalated, one dead-lettered.
    pub shipping_run: Uuid,
    /// The buggy priority batch: 40 of 200 shipments flagged.
    pub priority_run: Uuid,
    /// Halted by a security failure.
    pub halted_run: Uuid,
    /// The owner-queue entry (order O-4, invalid address).
    pub owner_entry: u64,
    /// The expert-queue entry (order O-5, state conflict).
    pub expert_entry: u64,
    /// The dead-letter entry (order O-6, carrier unavailable).
    pub dead_letter_entry: u64,
    /// The shipments the buggy batch flagged.
    pub flagged: Vec<String>,
}

fn order(i: u32) -> Order {
    Order {
        id: format!("O-{i}"),
        qty: i,
        postcode: None,
    }
}

fn queue_id<T: std::fmt::Debug>(r: Result<T, actguard::ActionError<DownstreamError>>) -> u64 {
    match r {
        Err(e) => e.queue_entry().expect("the failure went to a queue").id,
        Ok(v) => panic!("expected a queued failure, got {v:?}"),
    }
}

/// Runs the scenario on the world's agent.
pub async fn fill(w: &World) -> Filled {
    let carrier = &w.carrier;

    // A nightly shipping run: three orders ship, three fail in each of the ways that reach people.
    let run = w.agent.start_run();
    for i in 1..=3 {
        ship_order(&run, carrier, &order(i)).await.expect("ships");
    }
    carrier.fail_next(DownstreamError::Invalid(
        "address has no postcode".to_owned(),
    ));
    let owner_entry = queue_id(ship_order(&run, carrier, &order(4)).await);
    carrier.fail_next(DownstreamError::Conflict(
        "order is on hold for a credit check".to_owned(),
    ));
    let expert_entry = queue_id(ship_order(&run, carrier, &order(5)).await);
    carrier.fail_next_n(2, DownstreamError::Unavailable { retry_after: None });
    let dead_letter_entry = queue_id(ship_order(&run, carrier, &order(6)).await);
    let shipping_run = run.id();

    // The shipment-priority incident: a bug flags every fifth shipment of 200.
    let run = w.agent.start_run();
    let mut flagged = Vec::new();
    for i in 1..=200 {
        if i % 5 == 0 {
            let s = Shipment { id: shipment_id(i) };
            flag_priority(&run, &w.board, &s).await.expect("flags");
            flagged.push(s.id);
        }
    }
    let priority_run = run.id();

    // A run whose carrier answers "forbidden": the run halts, and its next order does not ship.
    let run = w.agent.start_run();
    carrier.fail_next(DownstreamError::Forbidden(
        "carrier API token revoked".to_owned(),
    ));
    let halted = ship_order(&run, carrier, &order(7)).await;
    assert!(matches!(
        halted,
        Err(actguard::ActionError::SecurityHalt { .. })
    ));
    let refused = ship_order(&run, carrier, &order(8)).await;
    assert!(matches!(refused, Err(actguard::ActionError::Halted { .. })));
    Filled {
        shipping_run,
        priority_run,
        halted_run: run.id(),
        owner_entry,
        expert_entry,
        dead_letter_entry,
        flagged,
    }
}
