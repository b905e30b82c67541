//! actguard under `serde_json` with `preserve_order` and `arbitrary_precision`: the same canonical
//! JSON, hence the same fingerprints, log hashes and manifest digest, as a plain build (pinned in
//! `tests/fixtures/compat.rs`, which the workspace's `compat_store` test checks too), and the store
//! written by release 0.1 replays and verifies.

#[path = "../../tests/fixtures/compat.rs"]
mod compat;

use std::path::PathBuf;

use actguard::{PayloadJson, canonical};
use serde_json::{Map, Value, json};

/// The workspace's `tests` directory, where the fixture lives.
fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// The build really has both features: otherwise this crate proves nothing.
#[test]
fn serde_json_keeps_insertion_order_and_number_text() {
    let mut map = Map::new();
    map.insert("b".into(), json!(1));
    map.insert("a".into(), json!(2));
    assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "a"], "preserve_order");
    assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"b":1,"a":2}"#);

    let parsed: Value = serde_json::from_str("[1.50,1e3,18446744073709551616,-0]").unwrap();
    assert_eq!(
        parsed.to_string(),
        "[1.50,1e+3,18446744073709551616,-0]",
        "arbitrary_precision"
    );
    // What a plain build would read: the form canonical JSON writes.
    assert_eq!(
        canonical::to_string(&parsed).unwrap(),
        "[1.5,1000.0,1.8446744073709552e+19,-0.0]"
    );
}

#[test]
fn fingerprints_log_hashes_and_the_manifest_digest_are_those_of_a_plain_build() {
    compat::check_pinned(&tests_dir());
}

#[test]
fn canonical_json_is_that_of_a_plain_build() {
    let text =
        r#"{"z":{"y":1.0,"x":0.1e1},"a":[1e21,-0.0,123456789012345678901234567890],"é":"\u0001"}"#;
    let value: Value = serde_json::from_str(text).unwrap();
    let expected =
        r#"{"a":[1e+21,-0.0,1.2345678901234568e+29],"z":{"x":1.0,"y":1.0},"é":"\u0001"}"#;
    assert_eq!(canonical::to_string(&value).unwrap(), expected);
    let mut walked = Vec::new();
    canonical::write_value(&mut walked, &value);
    assert_eq!(String::from_utf8(walked).unwrap(), expected);
    assert_eq!(PayloadJson::new(&value).as_str(), expected);
    // Read back from a store, a payload is canonical again.
    let stored: PayloadJson = serde_json::from_str(text).unwrap();
    assert_eq!(stored.as_str(), expected);
    // `serde_json::to_value` of an f32 holds its own text here; `canonical::to_value` widens it as a
    // plain build does.
    assert_eq!(serde_json::to_value(0.1f32).unwrap().to_string(), "0.1");
    assert_eq!(
        canonical::to_value(&0.1f32).unwrap().to_string(),
        "0.10000000149011612"
    );
    assert!(canonical::to_value(&(u128::from(u64::MAX) + 1)).is_err());
}

#[tokio::test]
async fn the_store_written_by_release_0_1_replays_and_verifies() {
    let copy = compat::copy_of_store(&tests_dir());
    compat::replay_store(&copy).await;
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

/// A JSON tree in an order of its own: maps keep the order they were generated in.
#[derive(Debug, Clone)]
enum Tree {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    S(String),
    List(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::U(n) => s.serialize_u64(*n),
            Tree::I(n) => s.serialize_i64(*n),
            Tree::F(f) => s.serialize_f64(*f),
            Tree::S(t) => s.serialize_str(t),
            Tree::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Tree::Map(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Tree {
    /// What a plain build writes, spelled out: members sorted by key (the last of equal keys wins,
    /// as in a map), each scalar as `serde_json` writes it on its own.
    fn expected(&self) -> String {
        match self {
            Tree::Null => "null".into(),
            Tree::Bool(b) => b.to_string(),
            Tree::U(n) => n.to_string(),
            Tree::I(n) => n.to_string(),
            Tree::F(f) => serde_json::to_string(f).unwrap(),
            Tree::S(t) => serde_json::to_string(t).unwrap(),
            Tree::List(items) => {
                let items: Vec<String> = items.iter().map(Tree::expected).collect();
                format!("[{}]", items.join(","))
            }
            Tree::Map(members) => {
                let sorted: std::collections::BTreeMap<&str, &Tree> =
                    members.iter().map(|(k, v)| (k.as_str(), v)).collect();
                let members: Vec<String> = sorted
                    .iter()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v.expected()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }
}

fn any_tree() -> impl proptest::strategy::Strategy<Value = Tree> {
    use proptest::prelude::*;
    let key = prop_oneof!["[a-d]{0,2}", any::<String>()];
    let leaf = prop_oneof![
        Just(Tree::Null),
        any::<bool>().prop_map(Tree::Bool),
        any::<u64>().prop_map(Tree::U),
        any::<i64>().prop_map(Tree::I),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Tree::F),
        any::<String>().prop_map(Tree::S),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Tree::List),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(Tree::Map),
        ]
    })
}

proptest::proptest! {
    /// With `preserve_order` and `arbitrary_precision` on, canonical JSON of any value, written through
    /// `serde` or through a `serde_json::Value` (which keeps insertion order here), is what a plain
    /// build writes; and it reads back to a value that is written the same again.
    #[test]
    fn canonical_json_of_any_value_is_that_of_a_plain_build(tree in any_tree()) {
        let expected = tree.expected();
        proptest::prop_assert_eq!(canonical::to_string(&tree).unwrap(), expected.clone());
        let value = serde_json::to_value(&tree).unwrap();
        proptest::prop_assert_eq!(canonical::to_string(&value).unwrap(), expected.clone());
        let read: Value = serde_json::from_str(&expected).unwrap();
        proptest::prop_assert_eq!(canonical::to_string(&read).unwrap(), expected);
    }
}
