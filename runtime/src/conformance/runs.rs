//! Runs: halting a run and reading its state.

use super::{T0, id};
use crate::store::{RunState, Store};

/// `halt_run` answers `true` once, then `false`, so the alert goes out once.
pub async fn halt_run_is_true_only_the_first_time(store: &dyn Store) {
    let run = id();
    assert!(store.halt_run(run, "forbidden", T0).await.unwrap());
    assert!(
        !store
            .halt_run(run, "forbidden again", T0 + 1)
            .await
            .unwrap()
    );
    assert!(!store.halt_run(run, "and again", T0 + 2).await.unwrap());
    assert!(store.halt_run(id(), "another run", T0 + 3).await.unwrap());
}

/// A run is active until halted; the first halt's reason and time are kept.
pub async fn run_state_reports_halt(store: &dyn Store) {
    let run = id();
    assert_eq!(store.run_state(run).await.unwrap(), RunState::Active);
    store.halt_run(run, "token leaked", T0 + 5).await.unwrap();
    store.halt_run(run, "second reason", T0 + 9).await.unwrap();
    assert_eq!(
        store.run_state(run).await.unwrap(),
        RunState::Halted {
            reason: "token leaked".to_owned(),
            at_ms: T0 + 5
        }
    );
    assert_eq!(store.run_state(id()).await.unwrap(), RunState::Active);
}
