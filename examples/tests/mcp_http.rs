//! The tool set over MCP's streamable HTTP transport: `McpServer::http_service` served by hyper on
//! 127.0.0.1, spoken to as JSON-RPC over HTTP (initialize, tools/list, tools/call) by reqwest; each
//! session calls its tools in a run of its own.

#[path = "../invoices.rs"]
#[allow(dead_code)]
mod invoices;

use std::time::Duration;

use actguard::tools::mcp::McpServer;
use actguard::{Agent, MemoryStore};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};

/// Serves the agent's tools on a free port of 127.0.0.1; answers the endpoint's URL.
async fn serve(agent: Agent) -> String {
    let service = TowerToHyperService::new(McpServer::http_service(agent, "invoices", "1.0.0"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    url
}

/// One MCP session: its id once initialized.
struct Session {
    client: reqwest::Client,
    url: String,
    id: Option<String>,
}

impl Session {
    /// Sends a JSON-RPC message; answers the response to `id`, read from the JSON or the event
    /// stream the server answers with (a notification has none).
    async fn send(&mut self, message: Value) -> Option<Value> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string());
        if let Some(id) = &self.id {
            request = request.header("mcp-session-id", id);
        }
        let mut response = request.send().await.expect("the server answers");
        assert!(
            response.status().is_success(),
            "{message}: HTTP {}",
            response.status()
        );
        if let Some(id) = response.headers().get("mcp-session-id") {
            self.id = Some(id.to_str().unwrap().to_owned());
        }
        let wanted = message.get("id")?.clone();
        let mut text = String::new();
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
                .await
                .expect("the answer comes")
                .expect("the body reads")?;
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            let answers = text
                .lines()
                .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
                .filter_map(|l| serde_json::from_str::<Value>(l).ok());
            for answer in answers {
                if answer["id"] == wanted {
                    return Some(answer);
                }
            }
        }
    }

    async fn open(url: &str) -> Session {
        let mut session = Session {
            client: reqwest::Client::new(),
            url: url.to_owned(),
            id: None,
        };
        let init = session
            .send(json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": { "name": "test", "version": "1" }
                }
            }))
            .await
            .unwrap();
        assert_eq!(init["result"]["serverInfo"]["name"], "invoices", "{init}");
        assert!(session.id.is_some(), "a session id");
        session
            .send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        session
    }

    async fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        let answer = self
            .send(json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": tool, "arguments": arguments }
            }))
            .await
            .unwrap();
        answer["result"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_are_served_over_streamable_http_one_run_per_session() {
    let agent = Agent::builder()
        .store(MemoryStore::new())
        .resource(invoices::Ledger::default())
        .build()
        .unwrap();
    let url = serve(agent.clone()).await;
    let mut first = Session::open(&url).await;

    let listed = first
        .send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }))
        .await
        .unwrap();
    let tools = listed["result"]["tools"].as_array().unwrap();
    let void = tools.iter().find(|t| t["name"] == "void_invoice").unwrap();
    assert_eq!(void["annotations"]["destructiveHint"], true);
    assert_eq!(void["inputSchema"]["required"], json!(["invoice_id"]));

    let invoice = json!({ "invoice_id": "INV-1", "customer": "ACME", "amount_cents": 500 });
    let posted = first.call(3, "post_invoice", invoice.clone()).await;
    assert_eq!(
        posted["structuredContent"]["outcome"], "succeeded",
        "{posted}"
    );
    assert_eq!(posted["isError"], false);
    let waiting = first
        .call(4, "void_invoice", json!({ "invoice_id": "INV-1" }))
        .await;
    assert_eq!(waiting["structuredContent"]["outcome"], "awaiting_approval");
    assert_eq!(waiting["isError"], true);

    // A second session: a run of its own, the same keys and store.
    let mut second = Session::open(&url).await;
    assert_ne!(first.id, second.id);
    let again = second.call(2, "post_invoice", invoice).await;
    assert_eq!(again["structuredContent"]["outcome"], "replayed");

    let log = agent
        .store()
        .log(&actguard::LogQuery::default())
        .await
        .unwrap();
    let runs: std::collections::BTreeSet<_> = log.iter().map(|e| e.entry.run_id).collect();
    assert_eq!(runs.len(), 2, "one run per session: {log:?}");

    // An unknown tool is a protocol error, not an answer.
    let unknown = second
        .send(json!({
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": { "name": "drop_tables", "arguments": {} }
        }))
        .await
        .unwrap();
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}
