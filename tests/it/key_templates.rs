//! Rendered keys and records are injective: with two or more parts, a separator inside a part is
//! escaped, so two intents whose parts differ never share a key text (passed downstream) or a record
//! (the unit of the loop filter). With `key = "pay:{a}:{b}"`, `("x:y", "z")` and `("x", "y:z")` used
//! to render the same `pay:x:y:z`, and the second was skipped as a loop.

use std::collections::HashMap;

use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{Agent, Outcome, Run, agent_action};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// The collision of the report: no record, so the record is the key's text, and the default loop
/// filter applies to it.
#[agent_action(key = "pay:{a}:{b}", name = "pay_in_parts")]
async fn pay(
    run: &Run,
    #[dep] bank: &Downstream,
    a: &str,
    b: &str,
) -> Result<Receipt, DownstreamError> {
    let _ = (a, b);
    bank.write_for(run.attempt()).await
}

#[derive(Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Rendered {
    key: String,
    digest: String,
    record: String,
}

fn rendered(run: &Run) -> Rendered {
    let attempt = run.attempt();
    Rendered {
        key: attempt.key().to_owned(),
        digest: attempt.key_digest().to_owned(),
        record: attempt.record().to_owned(),
    }
}

/// Two parts, one separator, a record of two parts with another.
#[agent_action(key = "t2:{a}:{b}", record = "{a}/{b}", dedup = "none")]
async fn two(run: &Run, a: &str, b: &str) -> Result<Rendered, DownstreamError> {
    let _ = (a, b);
    Ok(rendered(run))
}

/// Three parts, separators of several characters, one holding `%` after its first.
#[agent_action(key = "t3:{a}::{b}-%{c}!", record = "r:{a}", dedup = "none")]
async fn three(run: &Run, a: &str, b: &str, c: &str) -> Result<Rendered, DownstreamError> {
    let _ = (a, b, c);
    Ok(rendered(run))
}

/// One part: nothing to escape, rendered as it always was.
#[agent_action(key = "one:{a}:", dedup = "none")]
async fn one(run: &Run, a: &str) -> Result<Rendered, DownstreamError> {
    let _ = a;
    Ok(rendered(run))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[tokio::test(start_paused = true)]
async fn the_colliding_pairs_render_two_keys_and_both_intents_act() {
    for [(a1, b1), (a2, b2)] in [[("x:y", "z"), ("x", "y:z")], [("", ":"), (":", "")]] {
        let agent = Agent::in_memory().unwrap();
        let bank = Downstream::new();
        let run = agent.start_run();
        let first = pay(&run, &bank, a1, b1).await.unwrap();
        let second = pay(&run, &bank, a2, b2).await.unwrap();
        assert_ne!(first.key, second.key, "{a1:?}/{b1:?} and {a2:?}/{b2:?}");
        assert_eq!(bank.total_effects(), 2, "both intents reached the bank");
        let outcomes: Vec<Outcome> = log(&agent).await.iter().map(|e| e.entry.outcome).collect();
        assert_eq!(outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    }
    let agent = Agent::in_memory().unwrap();
    let bank = Downstream::new();
    let run = agent.start_run();
    let keys = [
        pay(&run, &bank, "x:y", "z").await.unwrap().key,
        pay(&run, &bank, "x", "y:z").await.unwrap().key,
        pay(&run, &bank, "50%", "L-17").await.unwrap().key,
        pay(&run, &bank, "L-17", "3").await.unwrap().key,
    ];
    assert_eq!(
        keys.map(Option::unwrap),
        ["pay:x%3Ay:z", "pay:x:y%3Az", "pay:50%25:L-17", "pay:L-17:3"]
    );
}

/// A part without a separator character or `%` is rendered as it is.
fn plain_part() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.é日 ]{0,8}"
}

/// Any part: separators, `%`, hex digits, empty, any character.
fn any_part() -> impl Strategy<Value = String> {
    prop_oneof!["[:/%!3A-]{0,4}", "([:/%!3A-]|\\PC){0,8}", plain_part(),]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Two different argument tuples never render the same key text, digest or record; the same
    /// tuple always renders the same. Besides random tuples, each case tries the tuples a separator
    /// moved across the boundary of two parts would confuse (`("x:y", "z")` and `("x", "y:z")`).
    #[test]
    fn two_part_templates_render_injectively(
        x in any_part(), y in any_part(), z in any_part(),
        more in prop::collection::vec((any_part(), any_part()), 0..4),
    ) {
        let mut tuples = vec![
            (x.clone(), y.clone()),
            (format!("{x}:{y}"), z.clone()),
            (x.clone(), format!("{y}:{z}")),
            (format!("{x}/{y}"), z.clone()),
            (x.clone(), format!("{y}/{z}")),
            (format!("{x}:"), y.clone()),
            (x.clone(), format!(":{y}")),
        ];
        tuples.extend(more);
        let agent = Agent::in_memory().unwrap();
        let run = agent.start_run();
        let mut seen: HashMap<(String, String), Rendered> = HashMap::new();
        let mut keys = HashMap::new();
        let mut records = HashMap::new();
        let mut digests = HashMap::new();
        for (a, b) in tuples {
            let r = block_on(two(&run, &a, &b)).unwrap();
            if let Some(before) = seen.get(&(a.clone(), b.clone())) {
                prop_assert_eq!(before, &r);
                continue;
            }
            for (map, text) in [(&mut keys, &r.key), (&mut records, &r.record), (&mut digests, &r.digest)] {
                if let Some(other) = map.insert(text.clone(), (a.clone(), b.clone())) {
                    prop_assert!(false, "{:?} and {:?} both render {}", other, (a, b), text);
                }
            }
            seen.insert((a, b), r);
        }
    }

    #[test]
    fn three_part_templates_render_injectively(
        x in any_part(), y in any_part(), z in any_part(), w in any_part(),
        more in prop::collection::vec((any_part(), any_part(), any_part()), 0..4),
    ) {
        let mut tuples = vec![
            (x.clone(), y.clone(), z.clone()),
            (format!("{x}::{y}"), z.clone(), w.clone()),
            (x.clone(), format!("{y}::{z}"), w.clone()),
            (x.clone(), format!("{y}-%{z}"), w.clone()),
            (x.clone(), y.clone(), format!("{z}-%{w}")),
            (format!("{x}:"), format!(":{y}"), z.clone()),
        ];
        tuples.extend(more);
        let agent = Agent::in_memory().unwrap();
        let run = agent.start_run();
        let mut keys = HashMap::new();
        let mut digests = HashMap::new();
        for (a, b, c) in tuples {
            let r = block_on(three(&run, &a, &b, &c)).unwrap();
            let tuple = (a.clone(), b.clone(), c.clone());
            for (map, text) in [(&mut keys, &r.key), (&mut digests, &r.digest)] {
                if let Some(other) = map.insert(text.clone(), tuple.clone()) {
                    prop_assert_eq!(&other, &tuple, "both render {}", text);
                }
            }
            // The one-part record is not escaped.
            prop_assert_eq!(r.record, format!("r:{a}"));
        }
    }

    /// Parts without a separator character or `%` render unescaped, as before; a one-part template
    /// renders any part unescaped.
    #[test]
    fn plain_parts_render_as_they_are(x in plain_part(), y in plain_part(), z in plain_part(), w in any_part()) {
        let agent = Agent::in_memory().unwrap();
        let run = agent.start_run();
        let r = block_on(two(&run, &x, &y)).unwrap();
        prop_assert_eq!(r.key, format!("t2:{x}:{y}"));
        prop_assert_eq!(r.record, format!("{x}/{y}"));
        let r = block_on(three(&run, &x, &y, &z)).unwrap();
        prop_assert_eq!(r.key, format!("t3:{x}::{y}-%{z}!"));
        let r = block_on(one(&run, &w)).unwrap();
        prop_assert_eq!(r.key, format!("one:{w}:"));
    }
}
