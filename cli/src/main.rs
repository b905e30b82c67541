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
    /// Serves the review console, a web page for the people in the loop: queues, entries and their
    /// operations, runs, blast radius, verification.
    #[cfg(feature = "console")]
    Serve(ServeArgs),
}

/// `serve` arguments.
#[cfg(feature = "console")]
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: std::net::SocketAddr,
    /// A file whose first line is the console token (else ACTGUARD_CONSOLE_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// No authentication: allowed on a loopback address only.
    #[arg(long, conflicts_with = "token_file")]
    no_auth: bool,
    /// With `Authorization: Bearer TOKEN` (a trusted proxy), the person's name is this header's value.
    #[arg(long, value_name = "HEADER")]
    user_header: Option<String>,
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
        #[cfg(feature = "console")]
        Command::Serve(args) => serve(&cli.store, args),
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

/// The environment variable holding the console token.
#[cfg(feature = "console")]
const TOKEN_ENV: &str = "ACTGUARD_CONSOLE_TOKEN";

#[cfg(feature = "console")]
fn serve(store: &str, args: ServeArgs) -> Result<ExitCode, CliError> {
    use actguard_cli::console::{Access, Console};
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    CliError::Usage(format!(
                        "cannot read the token file {}: {e}",
                        path.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        None => std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_owned()),
    };
    let access = match (token, args.no_auth) {
        (_, true) if !args.addr.ip().is_loopback() => {
            return Err(CliError::Usage(format!(
                "--no-auth serves without authentication, so only on a loopback address, not {}",
                args.addr
            )));
        }
        (_, true) => Access::open(),
        (Some(token), false) if token.chars().count() >= 16 => Access::Token {
            token,
            user_header: args.user_header,
        },
        (Some(_), false) => {
            return Err(CliError::Usage(
                "the console token is shorter than 16 characters: use a long random one".to_owned(),
            ));
        }
        (None, false) => {
            return Err(CliError::Usage(format!(
                "the console needs a token: set {TOKEN_ENV} or pass --token-file FILE \
                 (or --no-auth, on a loopback address only)"
            )));
        }
    };
    let location = StoreLocation::parse(store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = location.open().await?;
        let agent = actguard::Agent::builder()
            .shared_store(store.clone())
            .build()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        Console::new(store, agent, access).serve(args.addr).await
    })?;
    Ok(ExitCode::SUCCESS)
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
