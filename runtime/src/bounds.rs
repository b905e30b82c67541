//! Marker traits the expansion of `#[agent_action]` requires, each with a message that names the rule.
