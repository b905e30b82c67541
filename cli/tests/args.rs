//! Whatever an operator types, the command answers: a parse error, an error, or output; it never
//! panics. Arguments are drawn from the commands' own words and flags mixed with arbitrary text,
//! parsed as the binary parses them, and run against a store with a few entries.

use std::sync::Arc;

use actguard::log::NewLogEntry;
use actguard::{MemoryStore, Outcome, Store};
use actguard_cli::{OpsCommand, run_standalone};
use clap::Parser;
use proptest::prelude::*;

#[derive(Debug, Parser)]
struct Ops {
    #[command(subcommand)]
    command: OpsCommand,
}

const WORDS: &[&str] = &[
    "log",
    "show",
    "verify",
    "runs",
    "queue",
    "ls",
    "claim",
    "resolve",
    "discard",
    "replay",
    "blast-radius",
    "revert",
    "--run",
    "--action",
    "--record",
    "--outcome",
    "--since",
    "--until",
    "--limit",
    "--json",
    "--expect-head",
    "--queue",
    "--name",
    "--status",
    "--older-than",
    "--by",
    "--note",
    "--release",
    "--dry-run",
    "1",
    "0",
    "-1",
    "2h",
    "now",
    "2026-11-28",
    "succeeded",
    "owner",
    "dead_letter",
    "open",
    "1:00",
    "ship",
];

const COMMANDS: &[&str] = &[
    "log",
    "show",
    "verify",
    "runs",
    "queue ls",
    "queue show",
    "queue claim",
    "queue resolve",
    "queue discard",
    "queue replay",
    "blast-radius",
    "revert",
    "",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

async fn store() -> Arc<dyn Store> {
    let store = MemoryStore::new();
    for i in 1..=3u32 {
        store
            .append_log(&NewLogEntry {
                at_ms: 1_700_000_000_000 + i64::from(i),
                run_id: uuid::Uuid::from_u128(u128::from(i % 2)),
                action: "ship".into(),
                record: format!("O-{i}\u{1b}[2J").into(),
                key_text: format!("ship:O-{i}").into(),
                key_digest: format!("d{i}").into(),
                attempt: 1,
                retry: false,
                outcome: Outcome::Succeeded,
                failure_kind: None,
                route: None,
                message: None,
                queue_entry: None,
                before: Some(serde_json::json!({ "flag": "é\u{202e}" })),
                after: Some(serde_json::json!([1, 2.5, null])),
                fencing_token: Some(u64::from(i)),
                duration_ms: 1,
            })
            .await
            .unwrap();
    }
    Arc::new(store)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_arguments_are_answered_without_a_panic(
        command in prop::sample::select(COMMANDS),
        args in prop::collection::vec(token(), 0..7),
    ) {
        let argv = std::iter::once("actguard")
            .chain(command.split(' '))
            .map(str::to_owned)
            .chain(args);
        if let Ok(ops) = Ops::try_parse_from(argv) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut out = Vec::new();
                let _ = run_standalone(store().await, ops.command, &mut out).await;
            });
        }
    }
}
