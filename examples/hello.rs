//! The smallest guarded action: one write, one run, then the action log.
//!
//! `cargo run --example hello`

use actguard::{Agent, Classify, LogQuery, MemoryStore, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Debug, Classify, thiserror::Error)]
enum GreetError {
    #[error("the greeting service is unavailable")]
    #[classify(transient)]
    Unavailable,
}

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    to: String,
    text: String,
}

/// Sends a greeting once per person: the key names the intent, `run.attempt().key()` goes downstream.
#[agent_action(key = "greet:{to}", retries = 3, backoff = "10ms..1s")]
async fn greet(run: &Run, to: &str) -> Result<Greeting, GreetError> {
    let attempt = run.attempt();
    println!(
        "attempt {}: greeting {to} under key {}",
        attempt.number(),
        attempt.key()
    );
    if attempt.number() == 1 {
        // The first attempt meets an outage: a transient failure, retried after a short backoff.
        return Err(GreetError::Unavailable);
    }
    Ok(Greeting {
        to: to.to_owned(),
        text: format!("hello, {to}"),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agent = Agent::builder().store(MemoryStore::new()).build()?;
    let run = agent.start_run();

    let first = greet(&run, "world").await?;
    println!("first call:  {first:?}");
    // The same key again: the stored result comes back, the body does not run.
    let again = greet(&run, "world").await?;
    println!("second call: {again:?}");

    println!("\naction log:");
    for e in agent.store().log(&LogQuery::default()).await? {
        println!(
            "  #{} {} {} key={} attempt={} outcome={} hash={}",
            e.seq,
            e.entry.run_id,
            e.entry.action,
            e.entry.key_text,
            e.entry.attempt,
            e.entry.outcome.as_str(),
            &e.hash[..12]
        );
    }
    println!("chain verified: {} entries", agent.verify().await?);
    Ok(())
}
