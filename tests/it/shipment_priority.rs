//! The wrong priority flags incident and the revert of a record written several times
//! (`shipment_priority_scenario.rs`) against the memory store and the embedded SQLite store.

use crate::support::shipment_priority_scenario as scenario;

use std::sync::Arc;

use actguard::{MemoryStore, SqliteStore};

#[tokio::test(start_paused = true)]
async fn a_faulty_batch_is_found_and_reverted_exactly_in_memory() {
    scenario::incident(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(start_paused = true)]
async fn a_faulty_batch_is_found_and_reverted_exactly_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    scenario::incident(Arc::new(store)).await;
}

#[tokio::test(start_paused = true)]
async fn revert_restores_the_state_before_the_runs_first_write_in_memory() {
    scenario::revert_restores_the_state_before_the_runs_first_write(Arc::new(MemoryStore::new()))
        .await;
}

#[tokio::test(start_paused = true)]
async fn revert_restores_the_state_before_the_runs_first_write_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    scenario::revert_restores_the_state_before_the_runs_first_write(Arc::new(store)).await;
}
