//! With no store given, the agent keeps its claims and log in `actguard.db` in the working directory,
//! and they survive the process: a second agent on the same file replays instead of acting again.

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{Agent, DEFAULT_STORE_PATH, Outcome, Run, agent_action};

#[agent_action(key = "invoice:{number}", owner = "billing", expert = "billing")]
async fn send_invoice(
    run: &Run,
    #[dep] billing: &Downstream,
    number: u32,
) -> Result<Receipt, DownstreamError> {
    billing.write_for(run.attempt()).await
}

// The only test of this binary: it changes the working directory of the process.
#[tokio::test]
async fn the_default_store_is_the_sqlite_file_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let billing = Downstream::new();

    let first = {
        let agent = Agent::builder().build().unwrap();
        send_invoice(&agent.start_run(), &billing, 42)
            .await
            .unwrap()
    };
    assert!(dir.path().join(DEFAULT_STORE_PATH).is_file());

    let agent = Agent::builder().build().unwrap();
    let again = send_invoice(&agent.start_run(), &billing, 42)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        billing.writes(),
        1,
        "the second agent replayed the stored result"
    );
    let log = agent
        .store()
        .log(&actguard::LogQuery::default())
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = log.iter().map(|e| e.entry.outcome).collect();
    assert_eq!(outcomes, [Outcome::Succeeded, Outcome::Replayed]);
    assert_eq!(agent.verify().await.unwrap(), 2);
}
