//! An LLM agent's loop with a scripted model (no network): the model emits tool calls by name with
//! JSON arguments, the host dispatches them through `Agent::call_tool`, and the model reads each
//! structured answer. It repeats a reminder in other words, as models do; the loop filter answers
//! `skipped` with "do not retry", and the model stops instead of spamming the customer.
//!
//! `cargo run --example agent_loop`

#[path = "invoices.rs"]
mod invoices;

use actguard::tools::{ToolAnswer, ToolOutcome};
use actguard::{Agent, MemoryStore};
use serde_json::{Value, json};

/// A tool call as a model emits it.
struct ToolCall {
    name: &'static str,
    arguments: Value,
}

/// A model that follows a script, and reads the answers as a model would: it stops repeating a call
/// answered "do not retry".
struct ScriptedModel {
    script: std::vec::IntoIter<ToolCall>,
}

impl ScriptedModel {
    fn new() -> ScriptedModel {
        let script = vec![
            ToolCall {
                name: "post_invoice",
                arguments: json!({ "invoice_id": "INV-7", "customer": "ACME", "amount_cents": 12500 }),
            },
            // The acknowledgement was lost in the model's context: it posts the invoice again.
            ToolCall {
                name: "post_invoice",
                arguments: json!({ "invoice_id": "INV-7", "customer": "ACME", "amount_cents": 12500 }),
            },
            ToolCall {
                name: "remind_customer",
                arguments: json!({ "invoice_id": "INV-7", "text": "Your invoice INV-7 is due." }),
            },
            // The loop: the same reminder, paraphrased, and again.
            ToolCall {
                name: "remind_customer",
                arguments: json!({ "invoice_id": "INV-7", "text": "A reminder: INV-7 is still due." }),
            },
            ToolCall {
                name: "remind_customer",
                arguments: json!({ "invoice_id": "INV-7", "text": "Please pay INV-7." }),
            },
            ToolCall {
                name: "void_invoice",
                arguments: json!({ "invoice_id": "INV-7" }),
            },
            ToolCall {
                name: "post_invoice",
                arguments: json!({ "invoice_id": "INV-8", "customer": "ACME", "amount_cents": "ten euros" }),
            },
        ];
        ScriptedModel {
            script: script.into_iter(),
        }
    }

    /// The next call, given the answer to the last one.
    fn next(&mut self, last: Option<(&ToolCall, &ToolAnswer)>) -> Option<ToolCall> {
        if let Some((call, answer)) = last
            && answer.outcome == ToolOutcome::Skipped
        {
            // "Do not retry": drop the rest of the same tool's calls from the plan.
            let rest: Vec<_> = self
                .script
                .by_ref()
                .filter(|c| c.name != call.name)
                .collect();
            println!("  model: the reminder was already sent; no more reminders.");
            self.script = rest.into_iter();
        }
        self.script.next()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ledger = invoices::Ledger::default();
    let agent = Agent::builder()
        .store(MemoryStore::new())
        .resource(ledger)
        .build()?;
    let run = agent.start_run();

    println!("tools offered to the model:");
    for tool in agent.tools() {
        println!(
            "  {}: {}",
            tool.name,
            tool.description.lines().next().unwrap_or("")
        );
    }
    println!();

    let mut model = ScriptedModel::new();
    let mut last: Option<(ToolCall, ToolAnswer)> = None;
    while let Some(call) = model.next(last.as_ref().map(|(c, a)| (c, a))) {
        println!("model calls {}({})", call.name, call.arguments);
        let answer = agent
            .call_tool(&run, call.name, call.arguments.clone())
            .await;
        println!("  answer: {}", answer.to_json());
        last = Some((call, answer));
    }

    let reminders = agent
        .resource::<invoices::Ledger>()
        .map(|l| l.reminders())
        .unwrap_or_default();
    println!("\nreminders sent to the customer: {reminders} (the model planned 3)");
    Ok(())
}
