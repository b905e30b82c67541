//! The `tokio-postgres` classifier against the local PostgreSQL server: real SQLSTATEs, from a real
//! unique violation, a real serialization failure, a real permission refusal, go where their
//! classification says.

use crate::support::pg_support;

use std::time::Duration;

use actguard::store::QueueQuery;
use actguard::{ActionError, Classify, FailureKind, QueueKind, Run, Store, agent_action};
use actguard_tests::World;
use pg_support::{Schema, connect, fresh_schema_name, url};
use serde::{Deserialize, Serialize};

/// The downstream: a ledger table in a schema of its own.
struct Ledger {
    client: tokio_postgres::Client,
    /// A second session, for the concurrent write that makes the first one's transaction fail.
    other: tokio_postgres::Client,
    schema: Schema,
}

impl Ledger {
    async fn new() -> Ledger {
        let schema = Schema {
            url: url(),
            name: fresh_schema_name(),
        };
        let client = connect(&schema.url).await;
        let other = connect(&schema.url).await;
        let name = &schema.name;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {name};
                 CREATE TABLE {name}.invoices (id bigint PRIMARY KEY, cents bigint NOT NULL);
                 CREATE TABLE {name}.accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
                 INSERT INTO {name}.accounts VALUES (1, 1000);"
            ))
            .await
            .unwrap();
        Ledger {
            client,
            other,
            schema,
        }
    }

    fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.schema.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    id: i64,
    cents: i64,
}

#[agent_action(
    key = "record_invoice:{invoice.id}",
    record = "{invoice.id}",
    on_validation = route_owner,
    owner = "billing",
    on_conflict = escalate,
    expert = "ledger-team",
    on_security = halt
)]
async fn record_invoice(
    run: &Run,
    #[dep] ledger: &Ledger,
    invoice: &Invoice,
) -> Result<u64, tokio_postgres::Error> {
    let _ = run;
    ledger
        .client
        .execute(
            &format!("INSERT INTO {} VALUES ($1, $2)", ledger.t("invoices")),
            &[&invoice.id, &invoice.cents],
        )
        .await
}

/// Debits an account inside a REPEATABLE READ transaction. On its first attempt another session
/// debits the same account between the read and the write: the server refuses the write with a
/// serialization failure (40001), which is retried.
#[agent_action(
    key = "debit:{account}:{cents}",
    record = "{account}",
    retries = 2,
    backoff = "1ms..1ms",
    jitter = none
)]
async fn debit(
    run: &Run,
    #[dep] ledger: &Ledger,
    account: i64,
    cents: i64,
) -> Result<i64, tokio_postgres::Error> {
    let accounts = ledger.t("accounts");
    ledger
        .client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let outcome = async {
        let row = ledger
            .client
            .query_one(
                &format!("SELECT balance FROM {accounts} WHERE id = $1"),
                &[&account],
            )
            .await?;
        let balance: i64 = row.get(0);
        if run.attempt().number() == 1 {
            ledger
                .other
                .execute(
                    &format!("UPDATE {accounts} SET balance = balance - 1 WHERE id = $1"),
                    &[&account],
                )
                .await?;
        }
        ledger
            .client
            .execute(
                &format!("UPDATE {accounts} SET balance = $2 WHERE id = $1"),
                &[&account, &(balance - cents)],
            )
            .await?;
        ledger.client.batch_execute("COMMIT").await?;
        Ok(balance - cents)
    }
    .await;
    if outcome.is_err() {
        ledger.client.batch_execute("ROLLBACK").await?;
    }
    outcome
}

async fn queue(w: &World, kind: QueueKind) -> Vec<actguard::QueueEntry> {
    w.store
        .queue_entries(&QueueQuery {
            kind: Some(kind),
            ..QueueQuery::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_unique_violation_is_a_conflict_for_the_expert() {
    let ledger = Ledger::new().await;
    ledger
        .client
        .execute(
            &format!("INSERT INTO {} VALUES (7, 1)", ledger.t("invoices")),
            &[],
        )
        .await
        .unwrap();
    let w = World::new();
    let run = w.agent.start_run();
    let invoice = Invoice { id: 7, cents: 500 };
    match record_invoice(&run, &ledger, &invoice).await {
        Err(ActionError::Routed { kind, queue, error }) => {
            assert_eq!(error.code().map(|c| c.code()), Some("23505"));
            assert_eq!(kind, FailureKind::Conflict);
            assert_eq!(queue.name, "ledger-team");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(queue(&w, QueueKind::Expert).await.len(), 1);
}

#[tokio::test]
async fn a_serialization_failure_is_retried_and_the_retry_succeeds() {
    let ledger = Ledger::new().await;
    let w = World::new();
    let run = w.agent.start_run();
    // 1000, less 1 by the other session, less 100 by the retry.
    assert_eq!(debit(&run, &ledger, 1, 100).await.unwrap(), 899);
    let log = actguard::testing::log(&w.agent).await;
    let first = &log[0].entry;
    assert_eq!(first.failure_kind, Some(FailureKind::Transient));
    assert!(
        first
            .message
            .as_deref()
            .unwrap()
            .contains("could not serialize access"),
        "{first:?}"
    );
    assert_eq!(log.len(), 2, "one failed attempt, one success");
}

#[tokio::test]
async fn a_data_exception_is_validation_and_an_insufficient_privilege_halts_the_run() {
    let ledger = Ledger::new().await;
    let error = ledger
        .client
        .query_one("SELECT 1 / 0", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22012"));
    assert_eq!(error.classify(), FailureKind::Validation);
    assert_eq!(
        error.note().unwrap(),
        "the server said: division by zero [SQLSTATE 22012]"
    );

    // A role with no privilege on the ledger (roles belong to the cluster: made once, kept).
    ledger
        .client
        .batch_execute(
            "DO $$ BEGIN
                 CREATE ROLE actguard_classify_nobody NOLOGIN;
             EXCEPTION WHEN duplicate_object THEN NULL;
             END $$;
             SET ROLE actguard_classify_nobody",
        )
        .await
        .unwrap();
    let w = World::new();
    let run = w.agent.start_run();
    let err = record_invoice(&run, &ledger, &Invoice { id: 8, cents: 1 })
        .await
        .unwrap_err();
    let ActionError::SecurityHalt { .. } = &err else {
        panic!("{err:?}");
    };
    let halts = w.alerts.alerts();
    assert_eq!(halts.len(), 1);
    assert!(
        halts[0].reason.contains("permission denied"),
        "{:?}",
        halts[0]
    );
    ledger.client.batch_execute("RESET ROLE").await.unwrap();
}

#[tokio::test]
async fn a_connection_ended_by_the_server_is_transient_and_may_have_applied() {
    let ledger = Ledger::new().await;
    let pid: i32 = ledger
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    ledger
        .other
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // The server ends the session (57P01, or the connection is found closed).
    let mut error = None;
    for _ in 0..50 {
        match ledger.client.simple_query("SELECT 1").await {
            Err(e) => {
                error = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let error = error.expect("the terminated session fails");
    assert_eq!(error.classify(), FailureKind::Transient, "{error:?}");
    assert!(
        error
            .note()
            .unwrap()
            .contains("may have reached the server"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_error_the_classifier_does_not_know_fails_closed_and_says_so() {
    let ledger = Ledger::new().await;
    let error = ledger
        .client
        .query_one("SELECT * FROM no_such_table_anywhere", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    assert_eq!(error.classify(), FailureKind::Validation);
    assert_eq!(
        error.note().unwrap(),
        "the server said: relation \"no_such_table_anywhere\" does not exist [SQLSTATE 42P01]; \
         not recognized: SQLSTATE 42P01; classified as a validation failure (fail closed: not retried)"
    );
}
