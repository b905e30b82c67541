//! The `mcp_server` example, spawned as a desktop client would and driven with rmcp's client over
//! stdio: the tools' schemas and hints, a post made twice (one ledger write, the second answer
//! replayed), a void that waits for a person's approval (given through `actguard::ops` on the same
//! SQLite store), then acts once, and a void that a person rejects.

use std::path::{Path, PathBuf};
use std::process::Command;

use actguard::{Agent, SqliteStore, ops};
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The example's executable, built as this test's cargo builds it.
fn example_binary() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "mcp_server", "--message-format=json"])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "mcp_server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the example's executable")
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments as JsonObject),
        )
        .await
        .expect("the call gets an answer")
}

fn answer(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .expect("a structured answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_lists_the_tools_and_the_guard_answers_its_calls() {
    // The server's store is where ACTGUARD_STORE says, not in its working directory.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let store = dir.path().join("ledger.db");
    let exe = example_binary();
    let command = tokio::process::Command::new(exe).configure(|c| {
        c.current_dir(elsewhere.path())
            .env(actguard::STORE_ENV, &store);
    });
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();

    // tools/list: the tool actions, with their schemas and the hints of their policies.
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "get_invoice",
            "post_invoice",
            "remind_customer",
            "void_invoice"
        ]
    );
    let tool = |name: &str| tools.iter().find(|t| t.name == name).unwrap();
    let post = tool("post_invoice");
    assert_eq!(
        Value::Object((*post.input_schema).clone())["properties"]["amount_cents"]["type"],
        "integer"
    );
    assert_eq!(
        Value::Object((*post.input_schema).clone())["required"],
        json!(["invoice_id", "customer", "amount_cents"])
    );
    let hints = |name: &str| tool(name).annotations.clone().unwrap();
    assert_eq!(hints("get_invoice").read_only_hint, Some(true));
    assert_eq!(hints("post_invoice").idempotent_hint, Some(true));
    assert_eq!(hints("post_invoice").destructive_hint, Some(true));
    assert_eq!(hints("void_invoice").destructive_hint, Some(true));
    assert!(
        tool("void_invoice")
            .description
            .as_deref()
            .unwrap()
            .contains("A person approves each void first")
    );

    // Posted twice: one write in the ledger, the second answer replayed.
    let invoice = json!({ "invoice_id": "INV-1", "customer": "ACME", "amount_cents": 12500 });
    let first = call(&client, "post_invoice", invoice.clone()).await;
    assert_eq!(answer(&first)["outcome"], "succeeded");
    assert_eq!(first.is_error, Some(false));
    let second = call(&client, "post_invoice", invoice).await;
    assert_eq!(answer(&second)["outcome"], "replayed");
    assert_eq!(answer(&second)["value"], answer(&first)["value"]);
    let read = call(&client, "get_invoice", json!({ "invoice_id": "INV-1" })).await;
    assert_eq!(answer(&read)["value"]["writes"], 1);

    // A void waits for a person: nothing is done.
    let void = json!({ "invoice_id": "INV-1" });
    let waiting = call(&client, "void_invoice", void.clone()).await;
    assert_eq!(answer(&waiting)["outcome"], "awaiting_approval");
    assert_eq!(waiting.is_error, Some(true));
    let request = answer(&waiting)["queue_entry"].as_u64().unwrap();
    let read = call(&client, "get_invoice", json!({ "invoice_id": "INV-1" })).await;
    assert_eq!(answer(&read)["value"]["status"], "posted");

    // A person approves it, on the server's store.
    let operator = Agent::builder()
        .store(SqliteStore::open_existing(&store).unwrap())
        .build()
        .unwrap();
    ops::queue_approve(&operator, request, "alice")
        .await
        .unwrap();

    let voided = call(&client, "void_invoice", void.clone()).await;
    assert_eq!(answer(&voided)["outcome"], "succeeded", "{voided:?}");
    assert_eq!(answer(&voided)["value"]["status"], "void");
    let again = call(&client, "void_invoice", void).await;
    assert_eq!(answer(&again)["outcome"], "replayed");
    let read = call(&client, "get_invoice", json!({ "invoice_id": "INV-1" })).await;
    assert_eq!(answer(&read)["value"]["writes"], 2, "voided once");

    // Another void, rejected.
    let other = json!({ "invoice_id": "INV-2", "customer": "Globex", "amount_cents": 900 });
    call(&client, "post_invoice", other).await;
    let waiting = call(&client, "void_invoice", json!({ "invoice_id": "INV-2" })).await;
    let request = answer(&waiting)["queue_entry"].as_u64().unwrap();
    ops::queue_reject(&operator, request, "bob", "the customer paid")
        .await
        .unwrap();
    let rejected = call(&client, "void_invoice", json!({ "invoice_id": "INV-2" })).await;
    assert_eq!(answer(&rejected)["outcome"], "rejected");
    assert!(
        answer(&rejected)["message"]
            .as_str()
            .unwrap()
            .contains("the customer paid")
    );

    // Bad arguments are an answer, not a crash.
    let bad = call(
        &client,
        "post_invoice",
        json!({ "invoice_id": "INV-3", "customer": "ACME", "amount_cents": "ten" }),
    )
    .await;
    assert_eq!(answer(&bad)["outcome"], "invalid_arguments");

    // The decisions are in the log, with who made them.
    let log = operator
        .store()
        .log(&actguard::LogQuery::default())
        .await
        .unwrap();
    let messages: Vec<_> = log.iter().filter_map(|e| e.entry.message.clone()).collect();
    assert!(
        messages.iter().any(|m| m.contains("approved by alice")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("rejected by bob")),
        "{messages:?}"
    );
    client.cancel().await.unwrap();
    assert!(
        !elsewhere.path().join("actguard.db").exists(),
        "no store in the working directory"
    );
}
