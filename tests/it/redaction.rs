//! `Redacted` values are stored as keyed digests: a low-entropy secret cannot be brute-forced from
//! what the store keeps without the key; each store has its own key, kept across reopening it (so
//! replay and `KeyReused` still work); an agent given a key uses it instead of the store's.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use actguard::{
    ActionError, Agent, AgentError, Classify, MemoryStore, Ran, Redacted, RedactionKey,
    RedactionKeyError, Run, SqliteStore, Store, agent_action,
};
use sha2::{Digest, Sha256};

static UNLOCKS: AtomicUsize = AtomicUsize::new(0);

// The bank never fails in these tests.
#[allow(dead_code)]
#[derive(Debug, Classify, thiserror::Error)]
enum BankError {
    #[error("the bank timed out")]
    #[classify(transient)]
    Timeout,
}

/// Unlocks a card with its PIN: the PIN is payload (fingerprinted, stored), never part of the key.
#[agent_action(key = "unlock:{card}", dedup = "none")]
async fn unlock(run: &Run, card: u64, pin: &Redacted<String>) -> Result<u64, BankError> {
    UNLOCKS.fetch_add(1, Ordering::SeqCst);
    run.attempt().before(pin);
    assert_eq!(pin.len(), 4, "the body sees the value in clear");
    Ok(card)
}

fn pin(digits: &str) -> Redacted<String> {
    Redacted::new(digits.to_owned())
}

fn agent(store: impl Store) -> Agent {
    Agent::builder().store(store).build().unwrap()
}

fn agent_on(path: &Path) -> Agent {
    agent(SqliteStore::open(path).unwrap())
}

/// The PIN's digest as the store keeps it in the payload of `card`'s key.
async fn stored_pin(agent: &Agent, card: u64) -> String {
    let entries = agent
        .store()
        .log(&actguard::LogQuery::default())
        .await
        .unwrap();
    let entry = entries
        .iter()
        .rev()
        .find(|e| e.entry.key_text.as_str() == format!("unlock:{card}"))
        .expect("the call is logged");
    let key = agent
        .store()
        .key_state(&entry.entry.key_digest)
        .await
        .unwrap()
        .expect("the key is stored");
    key.payload["pin"].as_str().unwrap().to_owned()
}

/// Every 4-digit PIN, as a release storing unkeyed digests did and as its bare hex: a brute force of
/// 10 000 hashes, which finds the PIN in an unkeyed digest in well under a second.
fn brute_force_unkeyed(stored: &str) -> Option<String> {
    (0..10_000).map(|n| format!("{n:04}")).find(|guess| {
        let canonical = actguard::canonical::to_vec(guess).unwrap();
        let hex = hex::encode(Sha256::digest(&canonical));
        stored == format!("sha256:{hex}") || stored.contains(&hex)
    })
}

#[tokio::test]
async fn a_pin_cannot_be_brute_forced_from_the_stored_payload_without_the_key() {
    let agent = agent(MemoryStore::new());
    let run = agent.start_run();
    assert_eq!(unlock(&run, 7, &pin("4821")).await.unwrap(), 7);
    let stored = stored_pin(&agent, 7).await;
    assert!(stored.starts_with("hmac-sha256:"), "{stored}");
    assert!(!stored.contains("4821"));
    assert_eq!(brute_force_unkeyed(&stored), None);
    // The same brute force with the store's key finds it: the key is what protects the PIN.
    let key = agent.redaction_key();
    let found: Vec<String> = (0..10_000)
        .map(|n| format!("{n:04}"))
        .filter(|guess| pin(guess).digest_with(key) == stored)
        .collect();
    assert_eq!(found, ["4821"]);
    // The state captured with `before` is kept the same way.
    let log = agent
        .store()
        .log(&actguard::LogQuery::default())
        .await
        .unwrap();
    let before = log.last().unwrap().entry.before.clone().unwrap();
    assert_eq!(before, serde_json::json!(stored));
}

#[tokio::test]
async fn two_stores_give_one_value_different_digests() {
    let (a, b) = (agent(MemoryStore::new()), agent(MemoryStore::new()));
    for agent in [&a, &b] {
        unlock(&agent.start_run(), 1, &pin("0000")).await.unwrap();
    }
    let (in_a, in_b) = (stored_pin(&a, 1).await, stored_pin(&b, 1).await);
    assert_ne!(in_a, in_b);
    assert_ne!(a.redaction_key().id(), b.redaction_key().id());

    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c, d) = (
        agent_on(&dirs.0.path().join("actguard.db")),
        agent_on(&dirs.1.path().join("actguard.db")),
    );
    for agent in [&c, &d] {
        unlock(&agent.start_run(), 1, &pin("0000")).await.unwrap();
    }
    assert_ne!(stored_pin(&c, 1).await, stored_pin(&d, 1).await);
}

#[tokio::test]
async fn the_same_store_keeps_its_digests_across_reopening_so_calls_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let first = agent_on(&path);
    unlock(&first.start_run(), 3, &pin("1234")).await.unwrap();
    let stored = stored_pin(&first, 3).await;
    drop(first);

    // Another process opening the same file: same key, same digest, so the call replays.
    let again = agent_on(&path);
    assert_eq!(pin("1234").digest_with(again.redaction_key()), stored);
    let ran = UNLOCKS.load(Ordering::SeqCst);
    let run = again.start_run();
    assert_eq!(unlock(&run, 3, &pin("1234")).await.unwrap(), 3);
    // Another PIN under the same key is another intent.
    match unlock(&run, 3, &pin("9999")).await {
        Err(e @ ActionError::KeyReused { .. }) => assert_eq!(e.ran(), Ran::No),
        other => panic!("expected KeyReused: {other:?}"),
    }
    // Nothing ran: the replay answered from the store, the reused key was refused.
    assert_eq!(UNLOCKS.load(Ordering::SeqCst), ran);
}

#[tokio::test]
async fn an_explicit_key_overrides_the_stores() {
    let store = MemoryStore::new();
    let store_key = store.redaction_key().unwrap();
    let given = RedactionKey::new(*b"kept in a secret manager, 32 b..").unwrap();
    let agent = Agent::builder()
        .store(store)
        .redaction_key(given.clone())
        .build()
        .unwrap();
    assert_eq!(agent.redaction_key().id(), given.id());
    unlock(&agent.start_run(), 5, &pin("2580")).await.unwrap();
    let stored = stored_pin(&agent, 5).await;
    assert_eq!(stored, pin("2580").digest_with(&given));
    assert_ne!(stored, pin("2580").digest_with(&store_key));
}

#[test]
fn a_key_named_by_the_environment_must_be_there() {
    let built = Agent::builder()
        .store(MemoryStore::new())
        .redaction_key_from_env("ACTGUARD_TEST_REDACTION_KEY_THAT_IS_NEVER_SET")
        .build();
    match built {
        Err(AgentError::RedactionKey(RedactionKeyError::NotSet { var })) => {
            assert_eq!(var, "ACTGUARD_TEST_REDACTION_KEY_THAT_IS_NEVER_SET")
        }
        other => panic!("expected a missing key: {other:?}"),
    }
}

/// Serialized by the application itself, outside any guarded call, a `Redacted` is marked and keyed
/// with this process's key: never the stored digest, never the value.
#[test]
fn outside_a_guarded_call_a_redacted_value_is_marked_and_not_the_stored_digest() {
    let agent = agent(MemoryStore::new());
    let text = serde_json::to_string(&pin("4821")).unwrap();
    assert!(text.starts_with("\"redacted:"), "{text}");
    assert_eq!(brute_force_unkeyed(text.trim_matches('"')), None);
    assert_ne!(
        text.trim_matches('"'),
        pin("4821").digest_with(agent.redaction_key())
    );
    // Inside the agent's scope it is the stored form.
    let scoped = agent
        .redaction_key()
        .scope(|| serde_json::to_value(pin("4821")).unwrap());
    assert_eq!(scoped, pin("4821").digest_with(agent.redaction_key()));
}
