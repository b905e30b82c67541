//! The agent's tool set: actions marked `tool` are described to a model (name, description, JSON
//! Schema of the payload, MCP hints) and called by name with JSON arguments through the same guarded
//! call, answering what happened in words a model can act on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actguard::tools::{ToolAnswer, ToolDefinition, ToolOutcome};
use actguard::{Agent, Classify, Run, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A simulated invoice ledger.
#[derive(Clone, Default)]
struct Ledger {
    invoices: Arc<Mutex<BTreeMap<String, Invoice>>>,
    writes: Arc<Mutex<u32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Invoice {
    customer: String,
    amount_cents: i64,
}

#[derive(Debug, thiserror::Error, Classify)]
enum LedgerError {
    #[error("no invoice {0}")]
    #[classify(validation)]
    NotFound(String),
    #[error("the amount must be positive")]
    #[classify(validation)]
    NotPositive,
}

/// Reads an invoice by its id.
#[agent_action(effect = read, tool)]
async fn get_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
) -> Result<Invoice, LedgerError> {
    let _ = run;
    ledger
        .invoices
        .lock()
        .unwrap()
        .get(invoice_id)
        .cloned()
        .ok_or_else(|| LedgerError::NotFound(invoice_id.to_owned()))
}

/// Records an invoice in the ledger.
///
/// Once per invoice id.
#[agent_action(
    key = "post_invoice:{invoice_id}",
    record = "{invoice_id}",
    owner = "billing",
    tool
)]
async fn post_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
    invoice: &Invoice,
    memo: &Option<String>,
) -> Result<u32, LedgerError> {
    let _ = (run, memo);
    if invoice.amount_cents <= 0 {
        return Err(LedgerError::NotPositive);
    }
    ledger
        .invoices
        .lock()
        .unwrap()
        .insert(invoice_id.to_owned(), invoice.clone());
    let mut writes = ledger.writes.lock().unwrap();
    *writes += 1;
    Ok(*writes)
}

/// Not a tool: never listed, never callable by name.
#[agent_action(key = "internal:{n}")]
async fn internal(run: &Run, n: u32) -> Result<u32, LedgerError> {
    let _ = run;
    Ok(n)
}

fn world() -> (World, Ledger) {
    let ledger = Ledger::default();
    let w = World::with(|b| b.resource(ledger.clone()));
    (w, ledger)
}

fn invoice_args(id: &str, cents: i64) -> serde_json::Value {
    json!({
        "invoice_id": id,
        "invoice": { "customer": "ACME", "amount_cents": cents },
        "memo": null,
    })
}

/// The agent's tool set, less the tools of the other test modules: the registry is the binary's.
fn tools_of_this_module(agent: &Agent) -> Vec<ToolDefinition> {
    let own: Vec<&str> = actguard::registry()
        .into_iter()
        .filter(|spec| spec.module_path == module_path!())
        .map(|spec| spec.name)
        .collect();
    agent
        .tools()
        .into_iter()
        .filter(|tool| own.contains(&tool.name))
        .collect()
}

#[tokio::test]
async fn the_tool_set_lists_tool_actions_with_schemas_without_deps_or_run() {
    let (w, _) = world();
    let tools = tools_of_this_module(&w.agent);
    let names: Vec<_> = tools.iter().map(|t| t.name).collect();
    assert_eq!(names, ["get_invoice", "post_invoice", "remind_customer"]);
    let post = &tools[1];
    assert_eq!(
        post.description,
        "Records an invoice in the ledger.\n\nOnce per invoice id."
    );
    let schema = &post.input_schema;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(
        properties.keys().collect::<Vec<_>>(),
        ["invoice", "invoice_id", "memo"],
        "the run and the #[dep] ledger are not arguments"
    );
    assert_eq!(schema["required"], json!(["invoice_id", "invoice"]));
    assert_eq!(properties["invoice_id"]["type"], "string");
    assert_eq!(properties["invoice"]["$ref"], "#/$defs/Invoice");
    assert_eq!(
        schema["$defs"]["Invoice"]["properties"]["amount_cents"]["type"],
        "integer"
    );
    // Hints from the policy: a keyed write is idempotent and may overwrite; a read only reads.
    assert!(post.annotations.idempotent_hint && post.annotations.destructive_hint);
    assert!(!post.annotations.read_only_hint);
    let get = &tools[0];
    assert!(get.annotations.read_only_hint && !get.annotations.destructive_hint);
    let _ = internal;
}

#[tokio::test]
async fn a_tool_call_runs_the_guarded_call_once_then_replays() {
    let (w, ledger) = world();
    let run = w.agent.start_run();
    let first = w
        .agent
        .call_tool(&run, "post_invoice", invoice_args("INV-1", 1250))
        .await;
    assert_eq!(first.outcome, ToolOutcome::Succeeded, "{first:?}");
    assert_eq!(first.value, Some(json!(1)));
    // The model repeats the call: nothing is written again.
    let again = w
        .agent
        .call_tool(&run, "post_invoice", invoice_args("INV-1", 1250))
        .await;
    assert_eq!(again.outcome, ToolOutcome::Replayed);
    assert_eq!(again.value, Some(json!(1)));
    assert_eq!(*ledger.writes.lock().unwrap(), 1);
    let read = w
        .agent
        .call_tool(&run, "get_invoice", json!({ "invoice_id": "INV-1" }))
        .await;
    assert_eq!(read.outcome, ToolOutcome::Succeeded);
    assert_eq!(read.value.unwrap()["amount_cents"], 1250);
    let answer = again.to_json();
    assert_eq!(answer["outcome"], "replayed");
    assert!(
        answer["guidance"]
            .as_str()
            .unwrap()
            .contains("nothing was done again")
    );
}

#[tokio::test]
async fn bad_arguments_are_a_clear_answer_and_nothing_runs() {
    let (w, ledger) = world();
    let run = w.agent.start_run();
    let cases = [
        (
            json!({ "invoice_id": "INV-2" }),
            "missing properties 'invoice'",
        ),
        (
            json!({ "invoice_id": 7, "invoice": { "customer": "A", "amount_cents": 1 } }),
            "at /invoice_id: want string, but got number",
        ),
        (
            json!({ "invoice_id": "INV-2", "invoice": { "customer": "A", "amount_cents": "ten" } }),
            "at /invoice/amount_cents",
        ),
        (
            json!({ "invoice_id": "INV-2", "invoice": { "customer": "A", "amount_cents": 1 }, "rm": "-rf" }),
            "additionalProperties 'rm' not allowed",
        ),
        (json!("INV-2"), "want object"),
        (json!(null), "want object"),
    ];
    for (arguments, says) in cases {
        let answer: ToolAnswer = w.agent.call_tool(&run, "post_invoice", arguments).await;
        assert_eq!(answer.outcome, ToolOutcome::InvalidArguments, "{answer:?}");
        let message = answer.message.unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(*ledger.writes.lock().unwrap(), 0);
}

#[tokio::test]
async fn unknown_and_non_tool_actions_cannot_be_called_by_name() {
    let (w, _) = world();
    let run = w.agent.start_run();
    for name in ["internal", "no_such_tool", ""] {
        let answer = w.agent.call_tool(&run, name, json!({ "n": 1 })).await;
        assert_eq!(answer.outcome, ToolOutcome::UnknownTool, "{name}");
        assert!(answer.outcome.is_error());
    }
}

#[tokio::test]
async fn failures_answer_what_happened_and_what_to_do() {
    let (w, _) = world();
    let run = w.agent.start_run();
    let routed = w
        .agent
        .call_tool(&run, "post_invoice", invoice_args("INV-3", -5))
        .await;
    assert_eq!(routed.outcome, ToolOutcome::Routed, "{routed:?}");
    assert!(routed.queue_entry.is_some());
    let message = routed.message.clone().unwrap();
    assert!(message.contains("the amount must be positive"), "{message}");
    assert_eq!(routed.failure_kind, Some(actguard::FailureKind::Validation));
    assert!(routed.guidance.contains("Do not retry"));
    // Called again, the same key waits on the same person.
    let again = w
        .agent
        .call_tool(&run, "post_invoice", invoice_args("INV-3", -5))
        .await;
    assert_eq!(again.outcome, ToolOutcome::Routed);
    assert_eq!(again.queue_entry, routed.queue_entry);
    // A read that fails is not routed: it failed, and says why.
    let missing = w
        .agent
        .call_tool(&run, "get_invoice", json!({ "invoice_id": "INV-404" }))
        .await;
    assert_eq!(missing.outcome, ToolOutcome::Failed);
    assert!(missing.message.unwrap().contains("no invoice INV-404"));
}

#[tokio::test]
async fn the_same_key_with_other_arguments_is_refused() {
    let (w, ledger) = world();
    let run = w.agent.start_run();
    w.agent
        .call_tool(&run, "post_invoice", invoice_args("INV-4", 100))
        .await;
    let mut other = invoice_args("INV-4", 100);
    other["memo"] = json!("as discussed");
    let answer = w.agent.call_tool(&run, "post_invoice", other).await;
    assert_eq!(answer.outcome, ToolOutcome::InvalidArguments, "{answer:?}");
    assert_eq!(*ledger.writes.lock().unwrap(), 1);
}

/// Sends the customer a reminder about an invoice.
#[agent_action(
    key = "remind:{invoice_id}:{text}",
    record = "{invoice_id}",
    dedup = "6h",
    tool
)]
async fn remind_customer(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice_id: &str,
    text: &str,
) -> Result<u32, LedgerError> {
    let _ = (run, invoice_id, text);
    let mut writes = ledger.writes.lock().unwrap();
    *writes += 1;
    Ok(*writes)
}

#[tokio::test]
async fn the_loop_filter_answer_reaches_the_model() {
    let (w, ledger) = world();
    let run = w.agent.start_run();
    let first = w
        .agent
        .call_tool(
            &run,
            "remind_customer",
            json!({ "invoice_id": "INV-5", "text": "Your invoice is due." }),
        )
        .await;
    assert_eq!(first.outcome, ToolOutcome::Succeeded);
    // The model paraphrases: another key, the same record, within the window.
    let paraphrased = w
        .agent
        .call_tool(
            &run,
            "remind_customer",
            json!({ "invoice_id": "INV-5", "text": "A reminder: your invoice is due." }),
        )
        .await;
    assert_eq!(paraphrased.outcome, ToolOutcome::Skipped, "{paraphrased:?}");
    assert!(paraphrased.guidance.contains("Do not retry"));
    assert_eq!(*ledger.writes.lock().unwrap(), 1);
}
