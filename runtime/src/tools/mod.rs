//! The agent's tool set: actions marked `tool` are what an LLM may call by name.
//!
//! `#[agent_action(tool, ...)]` (or `tool = "description"`; the description defaults to the function's
//! doc comment) exports the action as a tool: `Agent::tools` gives each tool's name, description, the
//! JSON Schema of its payload parameters (`#[dep]` parameters and the run handle are not in it) and
//! MCP annotations derived from its policy; `Agent::call_tool` checks a model's JSON arguments against
//! that schema and runs the same guarded call a direct call runs, answering a `ToolAnswer` a model can
//! act on.
//! Feature `tools` (schemars for the schemas); feature `mcp` serves the tools over MCP.
//!
//! A payload parameter of a tool must implement `schemars::JsonSchema`: a tool whose payload type has
//! none does not compile, and the error says what to derive.

mod schema;

#[cfg(feature = "tools")]
mod dispatch;

#[cfg(feature = "mcp")]
pub mod mcp;

pub use schema::{ToolParam, ToolSchema};

#[cfg(feature = "tools")]
pub use dispatch::{ToolAnswer, ToolDefinition, ToolOutcome};

/// What `#[agent_action(tool ...)]` records of a tool in its [`ActionSpec`](crate::ActionSpec).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ToolSpec {
    /// What the tool does, for the model: the `tool = "..."` text, else the function's doc comment.
    pub description: &'static str,
    /// The JSON Schema of the tool's arguments: an object with one property per payload parameter.
    #[serde(skip)]
    pub input_schema: fn() -> serde_json::Value,
}
