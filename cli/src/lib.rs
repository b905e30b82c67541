//! The operator commands of actguard, as a library: the `actguard` binary is built on it, and an
//! agent's own binary mounts [`OpsCommand`] to get the commands that need the application's registry
//! (`queue replay`, `revert`) next to every read command.
//!
//! ```no_run
//! use actguard::Agent;
//! use actguard_cli::{OpsCommand, run_ops};
//! use clap::{Parser, Subcommand};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Runs the agent.
//!     Run,
//!     /// Operator commands: log, queues, replay, blast radius, revert.
//!     #[command(subcommand)]
//!     Ops(OpsCommand),
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let agent = Agent::builder().build().expect("the agent starts");
//!     match Cli::parse().command {
//!         Command::Run => std::process::ExitCode::SUCCESS,
//!         Command::Ops(cmd) => match run_ops(&agent, cmd).await {
//!             Ok(()) => std::process::ExitCode::SUCCESS,
//!             Err(e) => e.report(),
//!         },
//!     }
//! }
//! ```

mod checkpoint;
mod commands;
#[cfg(feature = "console")]
pub mod console;
pub mod display;
pub mod open;
pub mod table;
pub mod time;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use actguard::Outcome;
use actguard::store::{QueueKind, QueueStatus};
use actguard::{Agent, ChainError, HeadError, ManifestError, Store, StoreError};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use time::{DurationArg, TimeArg};

pub use commands::Ctx;
pub use open::StoreLocation;

/// Exit code of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed command (missing store, bad argument, unknown entry, ...), and of
/// `manifest diff` when the manifests differ.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `verify` when the action log was tampered with.
pub const EXIT_TAMPERED: u8 = 2;

/// Why a command failed. Its `Display` is the message shown after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The SQLite file does not exist (the command never creates one).
    #[error("no action store at {0}: run the agent first, or pass --store")]
    NoStore(String),
    /// A wrong argument: a store URL, a time, a filter.
    #[error("{0}")]
    Usage(String),
    /// Something asked for does not exist (a log entry, a queue entry, a run).
    #[error("{0}")]
    NotFound(String),
    /// The store could not be read or refused an operation.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The hash chain of the action log does not verify.
    #[error("the action log was tampered with: {0}")]
    Tampered(#[from] ChainError),
    /// The action log verifies but does not hold the head expected (`verify --expect-head`).
    #[error("the action log was tampered with: {0}")]
    HeadMismatch(#[from] HeadError),
    /// An action-log entry cannot even be read back (its stored form was damaged or edited by hand):
    /// the log does not verify.
    #[error("the action log does not verify: {0}")]
    LogUnreadable(String),
    /// The command re-runs application code, which only the agent's own binary has.
    #[error("{}", needs_registry_message(.0))]
    NeedsRegistry(&'static str),
    /// A manifest could not be read or compared.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// An operator operation was refused: the queue entry is not in a state that allows it.
    #[error("{0}")]
    Refused(String),
    /// An operation ran and did not succeed (a replay that failed again, records left unreverted).
    #[error("{0}")]
    Failed(String),
    /// Reading a file or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<actguard::ops::OpsError> for CliError {
    fn from(e: actguard::ops::OpsError) -> Self {
        match e {
            actguard::ops::OpsError::Store(StoreError::Conflict(m)) => {
                CliError::Refused(m.to_string())
            }
            actguard::ops::OpsError::Store(StoreError::NotFound(m)) => {
                CliError::NotFound(m.to_string())
            }
            actguard::ops::OpsError::Store(e) => CliError::Store(e),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl CliError {
    /// The process exit code for this error: [`EXIT_TAMPERED`] for a log that does not verify (tampered
    /// or unreadable), [`EXIT_ERROR`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Tampered(_) | CliError::HeadMismatch(_) | CliError::LogUnreadable(_) => {
                EXIT_TAMPERED
            }
            _ => EXIT_ERROR,
        }
    }

    /// Prints `error: <message>` to stderr and returns the exit code: what a `main` does with it.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", display::escape_lines(&self.to_string()));
        ExitCode::from(self.exit_code())
    }
}

fn needs_registry_message(command: &str) -> String {
    format!(
        "`{command}` re-runs actions with the application's code and resources, which this standalone \
         binary does not have: run it from the agent's own binary, which mounts the operator commands \
         (see docs/operators.md):\n\n    \
         #[derive(clap::Subcommand)]\n    \
         enum Command {{\n        \
         #[command(subcommand)]\n        \
         Ops(actguard_cli::OpsCommand),\n        \
         // ... the agent's own commands\n    \
         }}\n\n    \
         Command::Ops(cmd) => actguard_cli::run_ops(&agent, cmd).await?,\n\n\
         then: my-agent ops {command} ..."
    )
}

/// The operator commands. The `actguard` binary offers all of them (refusing `queue replay` and
/// `revert`, which need the application's registry); an agent's binary mounts them as a subcommand
/// and runs them with [`run_ops`].
#[derive(Debug, Clone, Subcommand)]
pub enum OpsCommand {
    /// Lists action-log entries (oldest first), filtered.
    Log(LogArgs),
    /// Shows one action-log entry in full, with its before and after state.
    Show(ShowArgs),
    /// Verifies the hash chain of the whole action log and that every row agrees with its hashed
    /// entry, and prints the head (`head: SEQ:HASH`) to keep outside the store (exit 2 if the log
    /// was tampered with, or does not hold the expected head).
    Verify(VerifyArgs),
    /// Lists the runs seen in the log: times, entries, outcomes, halted or not.
    Runs(RunsArgs),
    /// Review queues: list, show, claim, resolve, discard, replay.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Lists the records written by a selection of log entries, one per record and action: the
    /// state before the first write → after the last, and how many writes.
    BlastRadius(SelectArgs),
    /// Reverts a selection: runs each action's declared `compensate` action for exactly those
    /// records, once each, restoring the state before the first write (needs the application's
    /// registry).
    Revert(RevertArgs),
}

impl OpsCommand {
    /// Whether the command may change the store: `queue claim`, `resolve`, `discard`, `replay`,
    /// `approve` and `reject`,
    /// and `revert` without `--dry-run`. Every other command only reads it, and the `actguard` binary
    /// opens the store read-only for them.
    pub fn changes_store(&self) -> bool {
        match self {
            OpsCommand::Queue(q) => !matches!(q, QueueCommand::Ls(_) | QueueCommand::Show(_)),
            OpsCommand::Revert(args) => !args.dry_run,
            OpsCommand::Log(_)
            | OpsCommand::Show(_)
            | OpsCommand::Verify(_)
            | OpsCommand::Runs(_)
            | OpsCommand::BlastRadius(_) => false,
        }
    }
}

/// A parser of one of actguard's enums by its spelling (`dead_letter`, `open`, …): clap lists the
/// spellings in `--help` and refuses any other, and the argument arrives typed.
fn one_of<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    as_str: fn(T) -> &'static str,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(all.iter().map(|v| as_str(*v))).map(move |spelled| {
        *all.iter()
            .find(|v| as_str(**v) == spelled)
            .expect("clap accepts only the spellings listed")
    })
}

/// `log` filters.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Only this run (full id, or the short id shown in tables).
    #[arg(long)]
    pub run: Option<String>,
    /// Only this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this record.
    #[arg(long)]
    pub record: Option<String>,
    /// Only this outcome.
    #[arg(long, value_parser = one_of(&Outcome::ALL, Outcome::as_str))]
    pub outcome: Option<Outcome>,
    /// Entries at or after this time: RFC 3339, a date, or a duration ago (2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<TimeArg>,
    /// Entries before this time: RFC 3339, a date, or a duration ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<TimeArg>,
    /// Only the last N matching entries.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `verify` arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyArgs {
    /// The head printed by an earlier `verify` (SEQ:HASH): entry SEQ must still be in the log with
    /// this hash, or the log was cut short or rewritten (exit 2).
    #[arg(long, value_name = "SEQ:HASH", conflicts_with = "checkpoint")]
    pub expect_head: Option<actguard::LogHead>,
    /// A file of heads kept outside the store: its last head is expected (as `--expect-head`), and
    /// the head verified now is appended when it has moved. Run on a schedule (cron, a systemd
    /// timer) against a file on another machine or a write-once mount.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<std::path::PathBuf>,
}

/// `show` arguments.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The entry's sequence number (the `seq` column of `log`).
    pub seq: u64,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `runs` arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct RunsArgs {
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The review-queue commands.
#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// Lists queue entries (oldest first), filtered.
    Ls(QueueLsArgs),
    /// Shows one queue entry in full, with its payload.
    Show(QueueShowArgs),
    /// Takes an open entry, so others see someone is on it.
    Claim(QueueClaimArgs),
    /// Settles an entry with a note (the fix was made elsewhere); `--release` also frees its key, so
    /// the next call under it acts with the corrected data.
    Resolve(QueueResolveArgs),
    /// Drops an entry with a note (it must not be retried).
    Discard(QueueNoteArgs),
    /// Re-runs the entry's action with its stored payload, under the same key (needs the
    /// application's registry).
    Replay(QueueClaimArgs),
    /// Approves an approval request: the same key with the same payload then acts, once, before the
    /// approval expires.
    Approve(QueueClaimArgs),
    /// Rejects an approval request with a note: the key answers `rejected` from then on.
    Reject(QueueNoteArgs),
}

/// `queue ls` filters.
#[derive(Debug, Clone, Default, Args)]
pub struct QueueLsArgs {
    /// Only this kind of queue.
    #[arg(long, value_parser = one_of(&QueueKind::ALL, QueueKind::as_str))]
    pub queue: Option<QueueKind>,
    /// Only the queue of this name (an action's `owner` or `expert`, or `dead-letter`).
    #[arg(long)]
    pub name: Option<String>,
    /// Only this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries in this state.
    #[arg(long, value_parser = one_of(&QueueStatus::ALL, QueueStatus::as_str))]
    pub status: Option<QueueStatus>,
    /// Only entries created at least this long ago (30m, 2h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<DurationArg>,
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `queue show` arguments.
#[derive(Debug, Clone, Args)]
pub struct QueueShowArgs {
    /// The queue entry id.
    pub id: u64,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `queue claim` / `queue replay` / `queue approve` arguments.
#[derive(Debug, Clone, Args)]
pub struct QueueClaimArgs {
    /// The queue entry id.
    pub id: u64,
    /// Who acts (recorded in the action log).
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

/// `queue resolve` arguments.
#[derive(Debug, Clone, Args)]
pub struct QueueResolveArgs {
    #[command(flatten)]
    pub note: QueueNoteArgs,
    /// Also release the entry's key: the next call under it acts again, with any payload (the
    /// corrected source data), instead of answering this entry. Without it the key stays failed.
    #[arg(long)]
    pub release: bool,
}

/// `queue resolve` / `queue discard` / `queue reject` arguments.
#[derive(Debug, Clone, Args)]
pub struct QueueNoteArgs {
    /// The queue entry id.
    pub id: u64,
    /// Why (recorded in the action log).
    #[arg(long)]
    pub note: String,
    /// Who acts (recorded in the action log).
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

/// A selection of log entries, for `blast-radius` and `revert`.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Entries of this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Entries of this run (full id, or the short id shown in tables).
    #[arg(long)]
    pub run: Option<String>,
    /// Entries on this record.
    #[arg(long)]
    pub record: Option<String>,
    /// Entries at or after this time: RFC 3339, a date, or a duration ago (2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<TimeArg>,
    /// Entries before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<TimeArg>,
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `revert` arguments.
#[derive(Debug, Clone, Args)]
pub struct RevertArgs {
    /// Which entries to revert.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who acts (recorded in the action log).
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

/// Runs an operator command against the agent's store, with the agent's registry and resources (so
/// `queue replay` and `revert` work), printing to stdout.
///
/// Mount [`OpsCommand`] in the agent's own binary:
///
/// ```no_run
/// # use actguard::Agent;
/// #[derive(clap::Parser)]
/// struct Cli {
///     #[command(subcommand)]
///     command: Command,
/// }
///
/// #[derive(clap::Subcommand)]
/// enum Command {
///     /// Runs the agent.
///     Run,
///     /// Operator commands: `my-agent ops queue replay 17`, `my-agent ops revert --action flag_priority --run <id> --dry-run`.
///     #[command(subcommand)]
///     Ops(actguard_cli::OpsCommand),
/// }
///
/// # async fn main_(agent: Agent) -> std::process::ExitCode {
/// use clap::Parser;
/// match Cli::parse().command {
///     Command::Run => { /* agent.start_run() ... */ }
///     Command::Ops(cmd) => {
///         if let Err(e) = actguard_cli::run_ops(&agent, cmd).await {
///             return e.report(); // `error: ...` on stderr, exit 1 (2: tampered log)
///         }
///     }
/// }
/// std::process::ExitCode::SUCCESS
/// # }
/// ```
pub async fn run_ops(agent: &Agent, cmd: OpsCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    run_ops_to(agent, cmd, &mut out).await
}

/// [`run_ops`], writing to `out`.
pub async fn run_ops_to(
    agent: &Agent,
    cmd: OpsCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ctx = Ctx {
        store: agent.store().clone(),
        agent: Some(agent.clone()),
        now_ms: agent.clock().now_ms(),
    };
    ctx.run(cmd, out).await
}

/// Runs an operator command against `store` without an application registry (what the standalone
/// binary does): `queue replay` and `revert` answer [`CliError::NeedsRegistry`].
pub async fn run_standalone(
    store: Arc<dyn Store>,
    cmd: OpsCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ctx = Ctx {
        store,
        agent: None,
        now_ms: time::system_now_ms(),
    };
    ctx.run(cmd, out).await
}
