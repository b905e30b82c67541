//! 1. Duplicate disbursement: the ledger applies the write, then the acknowledgement is lost.

use actguard::testing::{Downstream, DownstreamError, Receipt, naive_retry};
use actguard::{Agent, Run, agent_action};
use serde::{Deserialize, Serialize};

use crate::report::{Checks, Row, heading, outcome, say, short};

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

/// The naive retry loop, then `disburse` twice (the second time in a later run); returns the
/// summary's row.
pub async fn demo(agent: &Agent, checks: &mut Checks) -> Row {
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
