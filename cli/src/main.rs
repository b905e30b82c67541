//! `actguard`: the operators' command (log, verify, queues, blast radius, manifest).
//!
//! Exit codes: 0 success; 1 error (missing store, wrong argument, unknown entry), and `manifest diff`
//! when the manifests differ; 2 `verify` found the action log tampered with (or an entry unreadable).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use actguard::Manifest;
use actguard_cli::{CliError, EXIT_ERROR, OpsCommand, StoreLocation, run_standalone};
use clap::{Parser, Subcommand};

/// Operate an actguard agent from its store: read the action log, verify it, work the review
/// queues, find a blast radius, render and compare manifests.
#[derive(Debug, Parser)]
#[command(name = "actguard", version, about, max_term_width = 100)]
struct Cli {
    /// The store: a SQLite file, sqlite:PATH, or a postgres:// URL.
    #[arg(
        long,
        global = true,
        env = actguard::STORE_ENV,
        default_value = actguard::DEFAULT_STORE_PATH,
        value_name = "PATH|URL"
    )]
    store: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Ops(OpsCommand),
    /// Manifests: the Markdown sign-off sheet, and the policy changes between two manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

#[derive(Debug, Subcommand)]
enum ManifestCommand {
    /// Writes the "five questions" sign-off sheet (Markdown) of a JSON manifest.
    Render {
        /// The manifest (JSON, as written by `Manifest::to_json`).
        manifest: PathBuf,
        /// Write the sheet to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Names each policy value changed from OLD to NEW (exit 1 if any changed, 0 if none).
    Diff {
        /// The old manifest (JSON).
        old: PathBuf,
        /// The new manifest (JSON).
        new: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; a usage error is an error like any other (exit 1), so
            // that exit 2 only ever means a tampered log.
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`actguard log | head`): nothing left to say.
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Manifest(cmd) => manifest(cmd, &mut out),
        Command::Ops(cmd) => {
            let location = StoreLocation::parse(&cli.store)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                // A command that only reads opens the store read-only: it never creates, upgrades or
                // writes the file, nor waits for an agent writing it.
                let store = if cmd.changes_store() {
                    location.open().await?
                } else {
                    location.open_read_only().await?
                };
                run_standalone(store, cmd, &mut out).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn manifest(cmd: ManifestCommand, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read the manifest {}: {e}", path.display()))
        })
    };
    match cmd {
        ManifestCommand::Render {
            manifest,
            out: file,
        } => {
            let sheet = Manifest::from_json(&read(&manifest)?)
                .map_err(|e| CliError::Usage(format!("{}: {e}", manifest.display())))?
                .to_markdown();
            match file {
                Some(path) => {
                    std::fs::write(&path, sheet).map_err(|e| {
                        CliError::Usage(format!("cannot write {}: {e}", path.display()))
                    })?;
                    writeln!(out, "wrote {}", path.display())?;
                }
                None => write!(out, "{sheet}")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Diff { old, new } => {
            let diff = Manifest::diff(&read(&old)?, &read(&new)?)?;
            if diff.is_empty() {
                writeln!(out, "no policy changes")?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "{diff}")?;
                Ok(ExitCode::from(EXIT_ERROR))
            }
        }
    }
}
