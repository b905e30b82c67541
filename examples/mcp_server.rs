//! An MCP server of an invoice ledger's tools: `get_invoice` (read), `post_invoice` (write, once per
//! invoice id), `void_invoice` (destructive: a person approves each void) and `remind_customer` (at
//! most one reminder per invoice in 6 hours). The guarded actions keep their state in the default
//! SQLite store, `actguard.db` in the working directory, so `actguard queue approve N --by NAME` run
//! there approves a void.
//!
//! `cargo run --example mcp_server` speaks MCP on stdin and stdout, as desktop clients start servers
//! (the README shows the client configuration).

// Shared with the `agent_loop` example, which reads what this one does not.
#[path = "invoices.rs"]
#[allow(dead_code)]
mod invoices;

use std::process::ExitCode;

use actguard::Agent;
use actguard::tools::mcp::McpServer;

#[tokio::main]
async fn main() -> ExitCode {
    // The default store: actguard.db in the working directory, created if absent.
    let agent = match Agent::builder()
        .resource(invoices::Ledger::default())
        .build()
    {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = McpServer::new(agent, "invoice-ledger", env!("CARGO_PKG_VERSION"));
    match server.serve_stdio().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
