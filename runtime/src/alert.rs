//! Telling people that a run halted: the [`AlertSink`] and its built-ins.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::log::LogHead;
use crate::policy::FailureKind;
use crate::store::{Millis, QueueKind};

/// What an [`AlertSink`] is told when a run halts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaltAlert {
    /// The halted run.
    pub run_id: Uuid,
    /// Why it halted: the failure's message, or the reason given to [`Run::halt`](crate::Run::halt).
    pub reason: String,
    /// The action whose failure halted it (`None` for a halt asked by code).
    pub action: Option<String>,
    /// The record that action was writing.
    pub record: Option<String>,
    /// The readable idempotency key of that call.
    pub key: Option<String>,
    /// The failure's kind (`security` unless the action routes another kind to `halt`).
    pub failure_kind: Option<FailureKind>,
    /// When, in Unix milliseconds.
    pub at_ms: Millis,
    /// The head of the action log when the alert was sent (for a failing call, its own `halted`
    /// entry), `SEQ:HASH` in JSON: kept with the alert, outside the store, it lets
    /// `actguard verify --expect-head` prove later that the log up to the halt was not rewritten.
    /// `None` if the log is empty or its head could not be read.
    #[serde(default)]
    pub log_head: Option<LogHead>,
}

/// What an [`AlertSink`] is told when a call opens a review-queue entry: a failure routed to the data
/// owner or the domain expert, a dead-lettered call, an approval request. Sent only when the agent
/// opts in ([`AgentBuilder::alert_on_queue_entries`](crate::AgentBuilder::alert_on_queue_entries)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueAlert {
    /// The entry's id (`actguard queue show ID`).
    pub entry_id: u64,
    /// Which kind of queue.
    pub kind: QueueKind,
    /// The queue's name (the action's `owner`, `expert` or `approve` queue, or `dead-letter`).
    pub queue: String,
    /// The run of the call.
    pub run_id: Uuid,
    /// The action.
    pub action: String,
    /// The record it acts on.
    pub record: String,
    /// The readable idempotency key.
    pub key: String,
    /// The failure's kind; `None` for an approval request.
    pub failure_kind: Option<FailureKind>,
    /// What the entry says.
    pub message: String,
    /// When, in Unix milliseconds.
    pub at_ms: Millis,
}

/// Told once per halted run (the store decides which call halted it first, across processes), and, if
/// the agent opts in, of every review-queue entry a call opens.
///
/// Both are called on the task of the failing call: they must not block. Hand slow work to a thread or
/// a task, as [`CommandAlert`] does.
pub trait AlertSink: Send + Sync + 'static {
    /// A run halted.
    fn alert(&self, halt: &HaltAlert);

    /// A call opened a review-queue entry (only when the agent opts in with
    /// [`AgentBuilder::alert_on_queue_entries`](crate::AgentBuilder::alert_on_queue_entries)). The
    /// default does nothing.
    fn queue_entry(&self, entry: &QueueAlert) {
        let _ = entry;
    }
}

impl<S: AlertSink + ?Sized> AlertSink for std::sync::Arc<S> {
    fn alert(&self, halt: &HaltAlert) {
        (**self).alert(halt)
    }

    fn queue_entry(&self, entry: &QueueAlert) {
        (**self).queue_entry(entry)
    }
}

/// The default sink: an `ERROR` event on the `actguard::alert` target.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAlert;

impl AlertSink for TracingAlert {
    fn alert(&self, halt: &HaltAlert) {
        tracing::error!(
            target: "actguard::alert",
            run_id = %halt.run_id,
            action = halt.action.as_deref().unwrap_or(""),
            record = halt.record.as_deref().unwrap_or(""),
            key = halt.key.as_deref().unwrap_or(""),
            failure_kind = halt.failure_kind.map_or("", FailureKind::as_str),
            log_head = halt.log_head.as_ref().map(ToString::to_string).unwrap_or_default(),
            "run halted: {}",
            halt.reason
        );
    }
}

/// Runs a program for each halt, with the [`HaltAlert`] as JSON on its standard input (a pager, a chat
/// hook, `logger`, ...). The program runs on its own thread: the failing call does not wait for it.
/// A program that cannot be started or exits with a failure is reported as a tracing error.
///
/// ```no_run
/// let sink = actguard::CommandAlert::new("/usr/local/bin/page-oncall").arg("--team=loan-ops");
/// let agent = actguard::Agent::builder().alert_sink(sink).build()?;
/// # Ok::<(), actguard::AgentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CommandAlert {
    program: OsString,
    args: Vec<OsString>,
}

impl CommandAlert {
    /// Runs `program` (looked up in `PATH` if it has no slash).
    pub fn new(program: impl Into<OsString>) -> Self {
        CommandAlert {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the program to the end with `halt` on stdin, on the current thread.
    fn run(&self, halt: &HaltAlert) -> Result<(), String> {
        let json = serde_json::to_vec(halt).map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", self.program))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that exits without reading its input is not an error of ours.
            let _ = stdin.write_all(&json);
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{:?} exited with {status}", self.program))
        }
    }
}

impl AlertSink for CommandAlert {
    fn alert(&self, halt: &HaltAlert) {
        let sink = self.clone();
        let run_id = halt.run_id;
        let halt = halt.clone();
        let spawned = std::thread::Builder::new()
            .name("actguard-alert".into())
            .spawn(move || {
                if let Err(e) = sink.run(&halt) {
                    tracing::error!(target: "actguard::alert", run_id = %halt.run_id, "alert command failed: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(target: "actguard::alert", run_id = %run_id, "cannot start the alert thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_gets_the_alert_as_json_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert.json");
        let sink = CommandAlert::new("sh")
            .arg("-c")
            .arg(format!("cat > '{}'", out.display()));
        let halt = HaltAlert {
            run_id: Uuid::nil(),
            reason: "forbidden".into(),
            action: Some("disburse".into()),
            record: Some("L-1".into()),
            key: Some("disburse:L-1:1".into()),
            failure_kind: Some(FailureKind::Security),
            at_ms: 42,
            log_head: Some(LogHead {
                seq: 7,
                hash: "ab".repeat(32),
            }),
        };
        sink.run(&halt).unwrap();
        let bytes = std::fs::read(out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["log_head"], format!("7:{}", "ab".repeat(32)));
        let got: HaltAlert = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got, halt);
    }

    #[test]
    fn alerting_does_not_wait_for_the_command() {
        let sink = CommandAlert::new("sh").arg("-c").arg("sleep 5");
        let halt = HaltAlert {
            run_id: Uuid::nil(),
            reason: "x".into(),
            action: None,
            record: None,
            key: None,
            failure_kind: None,
            at_ms: 0,
            log_head: None,
        };
        let start = std::time::Instant::now();
        sink.alert(&halt);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let sink = CommandAlert::new("/nonexistent/actguard-alert-program");
        let halt = HaltAlert {
            run_id: Uuid::nil(),
            reason: "x".into(),
            action: None,
            record: None,
            key: None,
            failure_kind: None,
            at_ms: 0,
            log_head: None,
        };
        assert!(sink.run(&halt).is_err());
    }
}
