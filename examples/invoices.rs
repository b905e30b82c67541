//! A simulated invoice ledger and the tool actions an LLM agent uses on it: shared by the
//! `mcp_server` and `agent_loop` examples.

use std::collections::BTreeMap;
use std::sync::Mutex;

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

/// An invoice as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Invoice {
    pub invoice_id: String,
    pub customer: String,
    pub amount_cents: i64,
    /// `posted` or `void`.
    pub status: String,
    /// How many times the ledger wrote this invoice.
    pub writes: u32,
}

/// The ledger: what the agent's tools write to. Every write is counted, so a duplicate shows.
#[derive(Debug, Default)]
pub struct Ledger {
    invoices: Mutex<BTreeMap<String, Invoice>>,
    reminders: Mutex<u32>,
}

impl Ledger {
    /// Reminders sent so far.
    pub fn reminders(&self) -> u32 {
        *self.reminders.lock().unwrap()
    }
}

#[derive(Debug, thiserror::Error, Classify)]
pub enum LedgerError {
    #[error("no invoice `{0}` in the ledger")]
    #[classify(validation)]
    NotFound(String),
    #[error("invoice `{0}` is already posted with other details")]
    #[classify(conflict)]
    Exists(String),
    #[error("an amount must be positive, not {0}")]
    #[classify(validation)]
    NotPositive(i64),
}

/// Reads an invoice from the ledger by its id.
#[agent_action(effect = read, tool)]
pub async fn get_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
) -> Result<Invoice, LedgerError> {
    let _ = run;
    let invoices = ledger.invoices.lock().unwrap();
    invoices
        .get(invoice_id)
        .cloned()
        .ok_or_else(|| LedgerError::NotFound(invoice_id.to_owned()))
}

/// Records an invoice in the ledger. Once per invoice id: calling again with the same arguments
/// returns the first answer.
#[agent_action(
    key = "post_invoice:{invoice_id}",
    record = "{invoice_id}",
    owner = "billing",
    expert = "accounting",
    tool
)]
pub async fn post_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
    customer: &str,
    amount_cents: i64,
) -> Result<Invoice, LedgerError> {
    let _ = run;
    if amount_cents <= 0 {
        return Err(LedgerError::NotPositive(amount_cents));
    }
    let mut invoices = ledger.invoices.lock().unwrap();
    if invoices.contains_key(invoice_id) {
        return Err(LedgerError::Exists(invoice_id.to_owned()));
    }
    let invoice = Invoice {
        invoice_id: invoice_id.to_owned(),
        customer: customer.to_owned(),
        amount_cents,
        status: "posted".to_owned(),
        writes: 1,
    };
    invoices.insert(invoice_id.to_owned(), invoice.clone());
    Ok(invoice)
}

/// Voids an invoice in the ledger. A person approves each void first: the first call answers
/// `awaiting_approval`; call again with the same arguments once it is approved.
#[agent_action(
    effect = destructive,
    key = "void_invoice:{invoice_id}",
    record = "{invoice_id}",
    approve = "treasury",
    compensate = restore_invoice,
    owner = "billing",
    tool
)]
pub async fn void_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
) -> Result<Invoice, LedgerError> {
    set_status(run, ledger, invoice_id, "void")
}

/// Restores a voided invoice: what reverting `void_invoice` runs.
#[agent_action(
    key = "restore_invoice:{invoice_id}",
    record = "{invoice_id}",
    owner = "billing"
)]
pub async fn restore_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
) -> Result<Invoice, LedgerError> {
    set_status(run, ledger, invoice_id, "posted")
}

fn set_status(
    run: &Run,
    ledger: &Ledger,
    invoice_id: &str,
    status: &str,
) -> Result<Invoice, LedgerError> {
    let mut invoices = ledger.invoices.lock().unwrap();
    let invoice = invoices
        .get_mut(invoice_id)
        .ok_or_else(|| LedgerError::NotFound(invoice_id.to_owned()))?;
    run.attempt().before(&*invoice);
    invoice.status = status.to_owned();
    invoice.writes += 1;
    run.attempt().after(&*invoice);
    Ok(invoice.clone())
}

/// Sends the customer a reminder about an unpaid invoice. At most one reminder per invoice in 6
/// hours: a reminder worded otherwise within that window is skipped.
#[agent_action(
    key = "remind_customer:{invoice_id}:{text}",
    record = "{invoice_id}",
    dedup = "6h",
    owner = "billing",
    tool
)]
pub async fn remind_customer(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
    text: &str,
) -> Result<u32, LedgerError> {
    let _ = (run, text);
    if !ledger.invoices.lock().unwrap().contains_key(invoice_id) {
        return Err(LedgerError::NotFound(invoice_id.to_owned()));
    }
    let mut sent = ledger.reminders.lock().unwrap();
    *sent += 1;
    Ok(*sent)
}
