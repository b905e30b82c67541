//! Tool definitions and the dispatch of a model's tool call through the guarded call.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::agent::Agent;
use crate::invoke::InvokeError;
use crate::manifest::{ActionEntry, McpAnnotations};
use crate::policy::{ActionSpec, FailureKind};
use crate::run::Run;
use crate::store::QueueKind;

/// A tool as a model is shown it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    /// The action's name: what the model calls.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The JSON Schema (draft 2020-12) of its arguments: an object, one property per payload
    /// parameter.
    pub input_schema: Value,
    /// The MCP hints derived from the policy (see [`ActionEntry::mcp_annotations`]).
    pub annotations: McpAnnotations,
}

impl ToolDefinition {
    fn of(spec: &'static ActionSpec) -> Option<ToolDefinition> {
        let tool = spec.tool.as_ref()?;
        Some(ToolDefinition {
            name: spec.name,
            description: tool.description,
            input_schema: (tool.input_schema)(),
            annotations: ActionEntry::from_spec(spec).mcp_annotations(),
        })
    }
}

/// What happened to a tool call, in words a model can act on; the outcome words of the log, and the
/// answers a call can get without acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// It ran and succeeded: `value` is its result.
    Succeeded,
    /// It had run before with these arguments: `value` is the stored result; nothing was done again.
    Replayed,
    /// The loop filter skipped it: this record was acted on within the window. Do not retry.
    Skipped,
    /// It failed and went to a person's queue. Do not retry: a person will handle it.
    Routed,
    /// It failed after its retries and went to the dead-letter queue. Do not retry.
    DeadLettered,
    /// The run is halted (a security failure, or by code): nothing more acts in it. Stop.
    Halted,
    /// A person must approve this call first; nothing was done. Call again with the same arguments
    /// once approved.
    AwaitingApproval,
    /// A person rejected this call. Do not retry.
    Rejected,
    /// Another call with the same arguments is in progress. Call again later.
    InProgress,
    /// The arguments do not match the tool's schema, or these arguments cannot be accepted.
    InvalidArguments,
    /// No tool has that name.
    UnknownTool,
    /// It could not be done for another reason (the store unreachable, a missing resource, …).
    Failed,
}

impl ToolOutcome {
    /// The spelling in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Succeeded => "succeeded",
            ToolOutcome::Replayed => "replayed",
            ToolOutcome::Skipped => "skipped",
            ToolOutcome::Routed => "routed",
            ToolOutcome::DeadLettered => "dead_lettered",
            ToolOutcome::Halted => "halted",
            ToolOutcome::AwaitingApproval => "awaiting_approval",
            ToolOutcome::Rejected => "rejected",
            ToolOutcome::InProgress => "in_progress",
            ToolOutcome::InvalidArguments => "invalid_arguments",
            ToolOutcome::UnknownTool => "unknown_tool",
            ToolOutcome::Failed => "failed",
        }
    }

    /// What the model should do next, in one sentence.
    pub fn guidance(self) -> &'static str {
        match self {
            ToolOutcome::Succeeded => "Done.",
            ToolOutcome::Replayed => {
                "This call had already been done with these arguments: the stored result is returned and nothing was done again."
            }
            ToolOutcome::Skipped => {
                "Not done: this record was already acted on within the deduplication window. Do not retry."
            }
            ToolOutcome::Routed => {
                "Not done: the failure went to a person's review queue. Do not retry; a person will handle it."
            }
            ToolOutcome::DeadLettered => {
                "Not done: it failed after its retries and went to the dead-letter queue. Do not retry."
            }
            ToolOutcome::Halted => "Not done: the run is halted. Stop acting.",
            ToolOutcome::AwaitingApproval => {
                "Not done yet: a person must approve it. Call again with the same arguments after approval."
            }
            ToolOutcome::Rejected => "Not done: a person rejected it. Do not retry.",
            ToolOutcome::InProgress => {
                "Not done yet: the same call is in progress elsewhere. Call again later."
            }
            ToolOutcome::InvalidArguments => {
                "Not done: the arguments were refused. Correct them before calling again."
            }
            ToolOutcome::UnknownTool => "Not done: there is no tool of that name.",
            ToolOutcome::Failed => "Not done: it could not be carried out. Do not retry now.",
        }
    }

    /// Whether the call failed, for a protocol's error flag (MCP's `isError`): every outcome but
    /// `succeeded` and `replayed`.
    pub fn is_error(self) -> bool {
        !matches!(self, ToolOutcome::Succeeded | ToolOutcome::Replayed)
    }
}

/// The answer to a tool call, structured for a model: serialized, it is an object with `outcome`,
/// `value` on success, and otherwise `message` (what happened) and `guidance` (what to do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolAnswer {
    /// What happened.
    pub outcome: ToolOutcome,
    /// The result, when it succeeded or replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// What happened, in detail (the error's message), when it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the model should do next.
    pub guidance: &'static str,
    /// The kind of failure, when one was classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    /// The review-queue entry the call went to or waits on, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_entry: Option<u64>,
}

impl ToolAnswer {
    fn new(outcome: ToolOutcome) -> ToolAnswer {
        ToolAnswer {
            outcome,
            value: None,
            message: None,
            guidance: outcome.guidance(),
            failure_kind: None,
            queue_entry: None,
        }
    }

    fn with_message(mut self, message: impl Into<String>) -> ToolAnswer {
        self.message = Some(message.into());
        self
    }

    /// The answer as a JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a tool answer serializes")
    }

    fn from_error(error: InvokeError) -> ToolAnswer {
        let message = error.to_string();
        match error {
            InvokeError::Payload { .. } => {
                ToolAnswer::new(ToolOutcome::InvalidArguments).with_message(message)
            }
            InvokeError::MissingResource { .. } | InvokeError::Result { .. } => {
                ToolAnswer::new(ToolOutcome::Failed).with_message(message)
            }
            InvokeError::Action {
                kind,
                failure_kind,
                queue_entry,
                queue_kind,
                message,
                ..
            } => {
                let outcome = match kind {
                    "skipped" => ToolOutcome::Skipped,
                    "routed" => ToolOutcome::Routed,
                    "dead_lettered" | "result_not_stored" => ToolOutcome::DeadLettered,
                    "halted" | "security_halt" => ToolOutcome::Halted,
                    "awaiting_approval" => ToolOutcome::AwaitingApproval,
                    "rejected" => ToolOutcome::Rejected,
                    "previously_failed" if queue_kind == Some(QueueKind::Security) => {
                        ToolOutcome::Halted
                    }
                    "previously_failed" => ToolOutcome::Routed,
                    "in_progress" => ToolOutcome::InProgress,
                    "key_reused" | "payload_refused" => ToolOutcome::InvalidArguments,
                    _ => ToolOutcome::Failed,
                };
                ToolAnswer {
                    failure_kind,
                    queue_entry,
                    ..ToolAnswer::new(outcome).with_message(message)
                }
            }
        }
    }
}

/// Each tool's schema, compiled once, for checking arguments.
struct Validators {
    schemas: boon::Schemas,
    index: HashMap<&'static str, boon::SchemaIndex>,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let mut schemas = boon::Schemas::new();
        let mut index = HashMap::new();
        for definition in crate::registry().into_iter().filter_map(ToolDefinition::of) {
            let mut compiler = boon::Compiler::new();
            let url = format!("urn:actguard:tool:{}", definition.name);
            let compiled = match compiler.add_resource(&url, definition.input_schema) {
                Ok(()) => compiler.compile(&url, &mut schemas),
                Err(e) => Err(e),
            };
            match compiled {
                Ok(i) => {
                    index.insert(definition.name, i);
                }
                Err(e) => tracing::error!(tool = definition.name, error = %e, "a tool's schema does not compile; its calls are refused"),
            }
        }
        Validators { schemas, index }
    })
}

/// The errors of `arguments` against the schema of `tool`, one line each; `Err` when the schema
/// itself could not be compiled.
fn check_arguments(tool: &str, arguments: &Value) -> Result<Vec<String>, String> {
    let validators = validators();
    let Some(&index) = validators.index.get(tool) else {
        return Err(format!("the schema of `{tool}` does not compile"));
    };
    match validators.schemas.validate(arguments, index) {
        Ok(()) => Ok(Vec::new()),
        Err(e) => {
            let mut lines = Vec::new();
            collect_leaf_errors(&e, &mut lines);
            Ok(lines)
        }
    }
}

fn collect_leaf_errors(error: &boon::ValidationError<'_, '_>, lines: &mut Vec<String>) {
    if error.causes.is_empty() {
        let at = error.instance_location.to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        lines.push(format!("at {at}: {}", error.kind));
    }
    for cause in &error.causes {
        collect_leaf_errors(cause, lines);
    }
}

impl Agent {
    /// The tool set: every registered action marked `tool`, by name.
    pub fn tools(&self) -> Vec<ToolDefinition> {
        crate::registry()
            .into_iter()
            .filter_map(ToolDefinition::of)
            .collect()
    }

    /// Runs the tool `name` with a model's JSON `arguments` in `run`: the arguments are checked
    /// against the tool's schema (a bad one is an `invalid_arguments` answer, nothing done), its
    /// `#[dep]` parameters are taken from the agent's resources
    /// ([`AgentBuilder::resource`](crate::AgentBuilder::resource)), then the same guarded call as a
    /// direct call runs. Never panics on any input.
    pub async fn call_tool(&self, run: &Run, name: &str, arguments: Value) -> ToolAnswer {
        let Some(spec) = crate::registry()
            .into_iter()
            .find(|s| s.name == name && s.tool.is_some())
        else {
            return ToolAnswer::new(ToolOutcome::UnknownTool)
                .with_message(format!("no tool is named `{name}`"));
        };
        let Some(invoke) = spec.invoke else {
            return ToolAnswer::new(ToolOutcome::Failed)
                .with_message(format!("`{name}` cannot be called by name"));
        };
        match check_arguments(name, &arguments) {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => {
                return ToolAnswer::new(ToolOutcome::InvalidArguments).with_message(format!(
                    "the arguments do not match the schema of `{name}`: {}",
                    errors.join("; ")
                ));
            }
            Err(message) => return ToolAnswer::new(ToolOutcome::Failed).with_message(message),
        }
        if !std::sync::Arc::ptr_eq(&run.agent().inner, &self.inner) {
            return ToolAnswer::new(ToolOutcome::Failed)
                .with_message("the run was started by another agent");
        }
        match invoke(run, arguments).await {
            Ok(invoked) => ToolAnswer {
                value: Some(invoked.value),
                ..ToolAnswer::new(if invoked.replayed {
                    ToolOutcome::Replayed
                } else {
                    ToolOutcome::Succeeded
                })
            },
            Err(error) => ToolAnswer::from_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: &'static str, queue_kind: Option<QueueKind>) -> InvokeError {
        InvokeError::Action {
            action: "post".to_owned(),
            kind,
            message: format!("the {kind} message"),
            failure_kind: None,
            queue_entry: queue_kind.map(|_| 7),
            queue_kind,
        }
    }

    #[test]
    fn every_outcome_of_a_guarded_call_is_an_answer_a_model_can_act_on() {
        let cases = [
            ("skipped", None, ToolOutcome::Skipped),
            ("routed", Some(QueueKind::Owner), ToolOutcome::Routed),
            (
                "dead_lettered",
                Some(QueueKind::DeadLetter),
                ToolOutcome::DeadLettered,
            ),
            (
                "result_not_stored",
                Some(QueueKind::DeadLetter),
                ToolOutcome::DeadLettered,
            ),
            ("halted", None, ToolOutcome::Halted),
            (
                "security_halt",
                Some(QueueKind::Security),
                ToolOutcome::Halted,
            ),
            (
                "previously_failed",
                Some(QueueKind::Security),
                ToolOutcome::Halted,
            ),
            (
                "previously_failed",
                Some(QueueKind::Expert),
                ToolOutcome::Routed,
            ),
            (
                "awaiting_approval",
                Some(QueueKind::Approval),
                ToolOutcome::AwaitingApproval,
            ),
            ("rejected", Some(QueueKind::Approval), ToolOutcome::Rejected),
            ("in_progress", None, ToolOutcome::InProgress),
            ("key_reused", None, ToolOutcome::InvalidArguments),
            ("payload_refused", None, ToolOutcome::InvalidArguments),
            ("failed", None, ToolOutcome::Failed),
            ("store", None, ToolOutcome::Failed),
            ("unrecorded", None, ToolOutcome::Failed),
            ("serialization", None, ToolOutcome::Failed),
        ];
        for (kind, queue, outcome) in cases {
            let answer = ToolAnswer::from_error(action(kind, queue));
            assert_eq!(answer.outcome, outcome, "{kind}");
            assert!(answer.outcome.is_error(), "{kind}");
            assert_eq!(
                answer.message.as_deref(),
                Some(&*format!("the {kind} message"))
            );
            assert_eq!(answer.queue_entry, queue.map(|_| 7), "{kind}");
            let json = answer.to_json();
            assert_eq!(json["outcome"], outcome.as_str(), "{kind}");
            assert_eq!(json["guidance"], outcome.guidance(), "{kind}");
            assert!(json.get("value").is_none(), "{kind}");
        }
        let payload = ToolAnswer::from_error(InvokeError::Payload {
            action: "post".into(),
            field: "amount".into(),
            message: "invalid type".into(),
        });
        assert_eq!(payload.outcome, ToolOutcome::InvalidArguments);
        let missing = ToolAnswer::from_error(InvokeError::MissingResource {
            action: "post".into(),
            type_name: "Ledger".into(),
        });
        assert_eq!(missing.outcome, ToolOutcome::Failed);
        assert!(missing.message.unwrap().contains("AgentBuilder::resource"));
    }

    #[test]
    fn only_a_success_or_a_replay_is_not_an_error() {
        assert!(!ToolOutcome::Succeeded.is_error());
        assert!(!ToolOutcome::Replayed.is_error());
        for outcome in [
            ToolOutcome::Skipped,
            ToolOutcome::AwaitingApproval,
            ToolOutcome::UnknownTool,
        ] {
            assert!(outcome.is_error());
            assert!(outcome.guidance().starts_with("Not done"), "{outcome:?}");
        }
    }
}
