//! MCP tool annotations: the hints an MCP server gives a client, derived from each action's effect
//! and key.

use serde::{Deserialize, Serialize};

use super::{ActionEntry, Manifest};
use crate::policy::Effect;

/// MCP tool annotations of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpTool {
    /// The tool (action) name.
    pub name: String,
    /// The hints.
    pub annotations: McpAnnotations,
}

/// The MCP `ToolAnnotations` hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpAnnotations {
    /// `effect = read`.
    pub read_only_hint: bool,
    /// Any effect but `read`: a `write` may overwrite what is there (an update is not additive), so
    /// only a read claims `false`; MCP's default for a tool that is not read-only is `true` too.
    pub destructive_hint: bool,
    /// An idempotency key is declared: calling again with the same arguments has no further effect.
    pub idempotent_hint: bool,
    /// Always true: actions act on external systems.
    pub open_world_hint: bool,
}

impl Manifest {
    /// The MCP tool annotations of every action, in manifest order.
    pub fn mcp_annotations(&self) -> Vec<McpTool> {
        self.actions
            .iter()
            .map(|a| McpTool {
                name: a.name.clone(),
                annotations: a.mcp_annotations(),
            })
            .collect()
    }
}

impl ActionEntry {
    /// The MCP hints of this action.
    pub fn mcp_annotations(&self) -> McpAnnotations {
        let effect = self.idempotency.effect;
        McpAnnotations {
            read_only_hint: effect == Effect::Read,
            destructive_hint: effect != Effect::Read,
            idempotent_hint: self.idempotency.key.is_some(),
            open_world_hint: true,
        }
    }
}
