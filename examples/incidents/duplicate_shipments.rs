//! 2. Duplicate shipments: a carrier without idempotency-key support, and an order queue that
//!    redelivers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actguard::testing::naive_retry;
use actguard::{Agent, Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, outcome, say, short};

/// A simulated carrier: every `create` books a new shipment (no key support); bookings can be searched
/// by the reference the shipper gave.
#[derive(Debug, Clone, Default)]
struct Carrier {
    inner: Arc<Mutex<CarrierState>>,
}

#[derive(Debug, Default)]
struct CarrierState {
    shipments: Vec<(String, String)>,
    lost_acks: u32,
    creates: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Classify, thiserror::Error, Serialize, Deserialize)]
enum CarrierError {
    #[error("timed out waiting for the carrier's acknowledgement")]
    #[classify(transient)]
    AckTimeout,
}

impl Carrier {
    fn lose_acks(&self, n: u32) {
        self.inner.lock().unwrap().lost_acks += n;
    }

    /// Books a shipment; the answer may be lost after the booking is made.
    async fn create(&self, order: &str, reference: &str) -> Result<u64, CarrierError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut s = self.inner.lock().unwrap();
        s.creates += 1;
        s.shipments.push((order.to_owned(), reference.to_owned()));
        let id = s.shipments.len() as u64;
        if s.lost_acks > 0 {
            s.lost_acks -= 1;
            return Err(CarrierError::AckTimeout);
        }
        Ok(id)
    }

    /// The carrier's search: the booking made with `reference`, if any.
    fn find(&self, reference: &str) -> Option<u64> {
        let s = self.inner.lock().unwrap();
        s.shipments
            .iter()
            .position(|(_, r)| r == reference)
            .map(|i| i as u64 + 1)
    }

    fn shipments(&self, order: &str) -> usize {
        let s = self.inner.lock().unwrap();
        s.shipments.iter().filter(|(o, _)| o == order).count()
    }

    fn creates(&self) -> u32 {
        self.inner.lock().unwrap().creates
    }
}

/// Deduplication for a downstream that has no idempotency keys: the key goes out as the booking's
/// reference, and a retry first looks for a booking with that reference before creating another.
struct Deduplicating<'a>(&'a Carrier);

impl Deduplicating<'_> {
    async fn create(&self, run: &Run, order: &str) -> Result<u64, CarrierError> {
        let attempt = run.attempt();
        let booked = if attempt.is_retry() {
            self.0.find(attempt.key())
        } else {
            None
        };
        if let Some(id) = booked {
            say(format!(
                "guarded   attempt {}: the carrier already has booking {id} for {}: no new booking",
                attempt.number(),
                attempt.key()
            ));
            return Ok(id);
        }
        let result = self.0.create(order, attempt.key()).await;
        say(format!(
            "guarded   attempt {} books {order}: {}",
            attempt.number(),
            outcome(&result)
        ));
        result
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
}

#[agent_action(
    key = "ship:{order.id}",
    record = "{order.id}",
    retries = 3,
    backoff = "10ms..100ms"
)]
async fn ship(run: &Run, #[dep] carrier: &Carrier, order: &Order) -> Result<u64, CarrierError> {
    Deduplicating(carrier).create(run, &order.id).await
}

/// Every delivery of the order through the naive retry loop, then through `ship`; returns the
/// summary's row.
pub async fn demo(agent: &Agent, checks: &mut Checks) -> Row {
    heading(
        2,
        "Duplicate shipments: a carrier without key support, an ack lost once, the order redelivered 3 times",
    );
    let order = Order { id: "O-88".into() };
    let deliveries = 4;

    let naive_carrier = Carrier::default();
    naive_carrier.lose_acks(1);
    for d in 1..=deliveries {
        let r = naive_retry(5, || naive_carrier.create(&order.id, &order.id)).await;
        say(format!(
            "unguarded delivery {d}: {}; the carrier holds {} shipment(s)",
            outcome(&r),
            naive_carrier.shipments("O-88")
        ));
    }
    let naive = naive_carrier.shipments("O-88");

    let carrier = Carrier::default();
    carrier.lose_acks(1);
    let mut results = Vec::new();
    for d in 1..=deliveries {
        let before = carrier.creates();
        let r = ship(&agent.start_run(), &carrier, &order).await;
        let reached = carrier.creates() > before;
        say(format!(
            "guarded   delivery {d}: {}{}",
            short(&r),
            if reached {
                ""
            } else {
                " (completed key replayed: the carrier was not called)"
            }
        ));
        results.push(r.ok());
    }
    let shipped = carrier.shipments("O-88") as u64;
    say(format!(
        "unguarded: {naive} shipments; guarded: {shipped} shipment, {} booking call(s)",
        carrier.creates()
    ));

    checks.expect("shipments: carrier shipments", shipped, 1);
    checks.expect("shipments: booking calls", carrier.creates(), 1);
    checks.expect(
        "shipments: every delivery answered with the one booking",
        results,
        vec![Some(1); deliveries],
    );
    Row {
        incident: "duplicate shipments",
        unguarded: format!("{naive} shipments ({} duplicates)", naive - 1),
        effects: shipped,
        duplicates: shipped - 1,
        skips: 0,
        queued: "0".into(),
        halt: "no",
        reverted: "-".into(),
        note: format!("{} redeliveries replayed", deliveries - 1),
    }
}
