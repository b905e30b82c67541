//! The incidents actguard exists to prevent, reproduced against simulated downstreams: each one first
//! with the naive loop that caused it, then with guarded actions on a store at the default path
//! (`actguard.db` in the working directory). The demo labels the store it creates, and at start
//! removes only a store with that label (its own, from an earlier run): any other `actguard.db`, an
//! agent's store for one, is left as it is and the demo stops.
//!
//! `cargo run --example incidents`
//!
//! The program checks every guarded number it prints and exits with status 1, naming the number, if
//! one is not what actguard promises. Backoff delays are short (`backoff = "10ms..100ms"`) and seeded
//! (`jitter_seed`), so the run takes a few seconds and prints the same numbers every time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actguard::ops::{self, RevertOptions};
use actguard::store::QueueQuery;
use actguard::testing::{Downstream, DownstreamError, Receipt, naive_retry};
use actguard::{
    ActionError, Agent, AlertSink, Classify, DEFAULT_STORE_PATH, FailureKind, HaltAlert, LogQuery,
    Outcome, QueueKind, Run, SqliteStore, agent_action,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------
// 1. Duplicate disbursement: the ledger applies the write, then the acknowledgement is lost.
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Disbursement {
    loan_id: String,
    seq: u32,
    amount_cents: u64,
}

#[agent_action(
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m",
    backoff = "10ms..100ms",
    dedup = "24h"
)]
async fn disburse(
    run: &Run,
    #[dep] ledger: &Downstream,
    instr: &Disbursement,
) -> Result<Receipt, DownstreamError> {
    let attempt = run.attempt();
    let result = ledger.write_for(attempt).await;
    say(format!(
        "guarded   attempt {} key {}: {}",
        attempt.number(),
        attempt.key(),
        outcome(&result)
    ));
    result
}

// ---------------------------------------------------------------------------------------------------
// 2. Duplicate shipments: a carrier without idempotency-key support, and an order queue that
//    redelivers.
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// 3. Unreachable work-order state: three parallel calls on one work order.
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// 4. Six-hour escalation loop: the trigger's timestamp made every re-trigger look new.
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// 5. Flooded human queue: every failure went to one queue.
// ---------------------------------------------------------------------------------------------------

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
struct PrintAlert(Arc<Mutex<u32>>);

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

// ---------------------------------------------------------------------------------------------------
// 6. Wrong priority flags: a bug changed a batch of tickets.
// ---------------------------------------------------------------------------------------------------

/// A simulated service desk: a priority per ticket.
#[derive(Debug, Clone, Default)]
struct Desk {
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

// ---------------------------------------------------------------------------------------------------
// The demo.
// ---------------------------------------------------------------------------------------------------

fn say(line: impl Display) {
    println!("  {line}");
}

fn outcome<T: std::fmt::Debug, E: Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

fn short<T, E: Display>(r: &Result<T, ActionError<E>>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// One line of the summary: the unguarded result, and the guarded numbers.
struct Row {
    incident: &'static str,
    unguarded: String,
    effects: u64,
    duplicates: u64,
    skips: u64,
    queued: String,
    halt: &'static str,
    reverted: String,
    note: String,
}

/// The guarded numbers that were not what actguard promises.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn expect<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            let line = format!("{what}: got {got:?}, expected {want:?}");
            println!("  CHECK FAILED {line}");
            self.failed.push(line);
        }
    }
}

fn heading(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// The label of the store the demo creates: the only store it ever removes.
const DEMO_LABEL: &str = "actguard incidents demo";

/// Ends the demo with status 1 without touching `actguard.db`.
fn refuse_store(why: impl Display) -> ! {
    eprintln!(
        "The demo leaves {DEFAULT_STORE_PATH} in this directory alone: {why}\nRun the demo in another \
         directory (it keeps its own store in {DEFAULT_STORE_PATH} of the working directory)."
    );
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let path = std::path::Path::new(DEFAULT_STORE_PATH);
    match SqliteStore::remove_labelled(path, DEMO_LABEL) {
        Ok(true) => println!(
            "Removed the demo's previous {DEFAULT_STORE_PATH}: the demo starts from an empty store."
        ),
        Ok(false) => {
            println!("No previous {DEFAULT_STORE_PATH}: the demo starts from an empty store.")
        }
        Err(e) => refuse_store(e),
    }
    let store = match SqliteStore::options().label(DEMO_LABEL).open(path) {
        // Another program may have put a store there since.
        Ok(store) if store.label() == Some(DEMO_LABEL) => store,
        Ok(_) => refuse_store("it is a store another program created"),
        Err(e) => refuse_store(e),
    };
    let alerts = Arc::new(Mutex::new(0));
    // The service desk is also an agent resource: revert calls the compensating action with it.
    let desk = Desk::default();
    let agent = match Agent::builder()
        .store(store)
        .alert_sink(PrintAlert(alerts.clone()))
        .resource(desk.clone())
        .jitter_seed(7)
        .build()
    {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("cannot start the agent: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "Store: {} (SQLite, labelled `{DEMO_LABEL}`)",
        std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| DEFAULT_STORE_PATH.to_owned())
    );

    let mut checks = Checks::default();
    let mut rows = vec![
        duplicate_disbursement(&agent, &mut checks).await,
        duplicate_shipments(&agent, &mut checks).await,
        work_order(&agent, &mut checks).await,
        escalation_loop(&agent, &mut checks).await,
        flooded_queue(&agent, &alerts, &mut checks).await,
    ];
    let (flags, bad_run) = wrong_flags(&agent, &desk, &mut checks).await;
    rows.push(flags);

    let chain = agent.verify().await;
    match &chain {
        Ok(n) => println!("\nThe action log holds {n} entries; its hash chain verifies."),
        Err(e) => println!("\nThe action log does not verify: {e}"),
    }
    checks.expect("log chain verifies", chain.is_ok(), true);

    summary(&rows);

    println!("\nInspect what the guarded runs left in {DEFAULT_STORE_PATH}:");
    for cmd in [
        "log".to_owned(),
        "log --action disburse".to_owned(),
        "runs".to_owned(),
        "queue ls".to_owned(),
        "verify".to_owned(),
        format!("blast-radius --action set_priority --run {bad_run}"),
    ] {
        println!("  cargo run -p actguard-cli -- {cmd}");
    }
    println!("or in the review console, at http://127.0.0.1:7878/:");
    println!("  cargo run -p actguard-cli -- serve --no-auth");

    if checks.failed.is_empty() {
        println!("\nEvery guarded number is as expected.");
    } else {
        println!("\n{} guarded number(s) wrong:", checks.failed.len());
        for f in &checks.failed {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}

async fn duplicate_disbursement(agent: &Agent, checks: &mut Checks) -> Row {
    heading(
        1,
        "Duplicate disbursement: the ledger applies the write, then the ack is lost 3 times",
    );
    let instr = Disbursement {
        loan_id: "L-17".into(),
        seq: 3,
        amount_cents: 250_000,
    };

    let naive_ledger = Downstream::new();
    naive_ledger.fail_acks(3);
    let mut n = 0;
    let _ = naive_retry(10, || {
        n += 1;
        let attempt = n;
        let (ledger, loan) = (naive_ledger.clone(), instr.loan_id.clone());
        async move {
            let r = ledger.write(&loan, None, None).await;
            say(format!("unguarded attempt {attempt}: {}", outcome(&r)));
            r
        }
    })
    .await;
    let naive = naive_ledger.effects("L-17");
    say(format!(
        "unguarded: the ledger disbursed L-17 {naive} times"
    ));

    let ledger = Downstream::new();
    ledger.fail_acks(3);
    let first = disburse(&agent.start_run(), &ledger, &instr).await;
    let writes = ledger.writes();
    say(format!(
        "guarded: {} after {writes} attempts; the ledger applied it {} time(s)",
        short(&first),
        ledger.effects("L-17")
    ));
    // The same instruction in a later run: the completed key returns its stored receipt.
    let again = disburse(&agent.start_run(), &ledger, &instr).await;
    let replayed = ledger.writes() == writes;
    say(format!(
        "guarded: the same instruction in a later run: {}, {}",
        short(&again),
        if replayed {
            "stored receipt replayed, ledger not called"
        } else {
            "the ledger was called again"
        }
    ));

    checks.expect("disbursement: first call ok", first.is_ok(), true);
    checks.expect("disbursement: attempts", writes, 4);
    checks.expect("disbursement: ledger effects", ledger.effects("L-17"), 1);
    checks.expect("disbursement: replay answered", again.ok(), first.ok());
    checks.expect("disbursement: replay without a ledger call", replayed, true);
    Row {
        incident: "duplicate disbursement",
        unguarded: format!("{naive} disbursements ({} duplicates)", naive - 1),
        effects: ledger.effects("L-17"),
        duplicates: ledger.effects("L-17") - 1,
        skips: 0,
        queued: "0".into(),
        halt: "no",
        reverted: "-".into(),
        note: format!("{} retries, 1 replay", writes - 1),
    }
}

async fn duplicate_shipments(agent: &Agent, checks: &mut Checks) -> Row {
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

async fn work_order(agent: &Agent, checks: &mut Checks) -> Row {
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

async fn escalation_loop(agent: &Agent, checks: &mut Checks) -> Row {
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

async fn flooded_queue(agent: &Agent, alerts: &Mutex<u32>, checks: &mut Checks) -> Row {
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

async fn wrong_flags(agent: &Agent, desk: &Desk, checks: &mut Checks) -> (Row, uuid::Uuid) {
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

fn summary(rows: &[Row]) {
    let header = [
        "incident",
        "unguarded result",
        "effects",
        "dups",
        "skips",
        "queue entries",
        "halt",
        "reverted",
        "guarded: also",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.incident.to_owned(),
                r.unguarded.clone(),
                r.effects.to_string(),
                r.duplicates.to_string(),
                r.skips.to_string(),
                r.queued.clone(),
                r.halt.to_owned(),
                r.reverted.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    println!("\nSummary (columns after \"unguarded result\" are the guarded run's):\n");
    println!("{}", line(&header.map(str::to_owned)));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        println!("{}", line(row));
    }
}
