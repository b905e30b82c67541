//! An MCP server of the agent's tool set (feature `mcp`, on the official Rust SDK `rmcp`).
//!
//! `tools/list` gives each tool action with its `inputSchema` and annotations derived from its policy
//! (`read` → `readOnlyHint`; a keyed write → `idempotentHint`; every action that is not a `read` →
//! `destructiveHint`, since a write may overwrite). `tools/call` checks the arguments and runs the
//! same guarded call as a direct call; the [`ToolAnswer`](super::ToolAnswer) is the `structuredContent` (with its
//! `outcome`, and `value` on success), `isError` set for every outcome but `succeeded` and `replayed`.
//!
//! **One run per session.** Each MCP session (the one session of a stdio server, each session of the
//! HTTP server) calls its tools in a run of its own, started when the session starts: the loop filter
//! and the idempotency keys work across sessions, a halt stops the session that caused it, and the
//! log groups a session's calls by run.
//!
//! ```no_run
//! # async fn serve(agent: actguard::Agent) -> Result<(), Box<dyn std::error::Error>> {
//! use actguard::tools::mcp::McpServer;
//!
//! // A desktop client starts the program and speaks MCP on its stdin and stdout.
//! McpServer::new(agent, "invoices", "1.0.0").serve_stdio().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use super::{ToolDefinition, ToolOutcome};
use crate::agent::Agent;
use crate::run::Run;

/// Why the MCP server stopped before its client closed the session.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The session could not be set up (the client's `initialize` failed).
    #[error("the MCP session could not start: {0}")]
    Initialize(String),
    /// The session ended with an error.
    #[error("the MCP session failed: {0}")]
    Session(String),
}

/// Serves an agent's tool actions over MCP: a [`rmcp::ServerHandler`], one [`Run`] per session.
#[derive(Clone)]
pub struct McpServer {
    agent: Agent,
    run: Run,
    name: String,
    version: String,
    tools: Arc<Vec<Tool>>,
}

impl McpServer {
    /// A server named `name` (`version`) for the tool actions registered in this program, calling
    /// them in a new run of `agent`.
    pub fn new(agent: Agent, name: impl Into<String>, version: impl Into<String>) -> McpServer {
        let tools = agent.tools().iter().map(mcp_tool).collect();
        McpServer {
            run: agent.start_run(),
            agent,
            name: name.into(),
            version: version.into(),
            tools: Arc::new(tools),
        }
    }

    /// The run this session's tool calls act in.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Serves one session on this process's stdin and stdout until the client closes it. Logs go to
    /// stderr (stdout carries the protocol).
    pub async fn serve_stdio(self) -> Result<(), McpError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| McpError::Initialize(e.to_string()))?;
        running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| McpError::Session(e.to_string()))
    }

    /// A tower service serving MCP's streamable HTTP transport, one session (and run) per client
    /// session: nest it in an axum router (`Router::new().nest_service("/mcp", service)`) or serve it
    /// with hyper. It accepts requests for `localhost`, `127.0.0.1` and `::1` only, against DNS
    /// rebinding; put a proxy with authentication in front of it to serve other hosts.
    pub fn http_service(
        agent: Agent,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> StreamableHttpService<McpServer, LocalSessionManager> {
        let (name, version) = (name.into(), version.into());
        StreamableHttpService::new(
            move || Ok(McpServer::new(agent.clone(), name.clone(), version.clone())),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        )
    }
}

/// A tool definition as MCP describes it.
fn mcp_tool(definition: &ToolDefinition) -> Tool {
    let schema = match &definition.input_schema {
        Value::Object(object) => object.clone(),
        _ => serde_json::Map::new(),
    };
    let hints = definition.annotations;
    Tool::new(definition.name, definition.description, schema).with_annotations(
        ToolAnnotations::new()
            .read_only(hints.read_only_hint)
            .destructive(hints.destructive_hint)
            .idempotent(hints.idempotent_hint)
            .open_world(hints.open_world_hint),
    )
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.name.clone(), self.version.clone()))
            .with_instructions(
                "Each tool is a guarded action: a repeated call replays its first result; a call \
                 answered `skipped`, `routed`, `dead_lettered`, `halted`, `rejected` must not be \
                 retried; `awaiting_approval` waits for a person. Read `outcome` and `guidance`.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let answer = self
            .agent
            .call_tool(&self.run, &request.name, arguments)
            .await;
        if answer.outcome == ToolOutcome::UnknownTool {
            return Err(ErrorData::invalid_params(
                format!("no tool is named `{}`", request.name),
                None,
            ));
        }
        let json = answer.to_json();
        let result = if answer.outcome.is_error() {
            CallToolResult::structured_error(json)
        } else {
            CallToolResult::structured(json)
        };
        Ok(result.into())
    }
}
