//! The wrong priority flags incident and the revert of a record written several times
//! (`shipment_priority_scenario.rs`) against `PostgresStore`, in a fresh schema (dropped at the end).
//! Needs a server: `ACTGUARD_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.

use crate::support::pg_support;
use crate::support::shipment_priority_scenario as scenario;

use std::sync::Arc;

// Real time, not paused: a paused clock can fire the connection pool's timeouts while it waits on the
// network.
#[tokio::test]
async fn a_faulty_batch_is_found_and_reverted_exactly_in_postgres() {
    let (pg, _schema) = pg_support::fresh_store().await;
    scenario::incident(Arc::new(pg)).await;
}

#[tokio::test]
async fn revert_restores_the_state_before_the_runs_first_write_in_postgres() {
    let (pg, _schema) = pg_support::fresh_store().await;
    scenario::revert_restores_the_state_before_the_runs_first_write(Arc::new(pg)).await;
}
