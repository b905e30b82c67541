//! Probes of the `serde_json` build: which of its features change what it writes.

use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};

use serde_json::Value;

/// Whether `serde_json::Map` iterates in key order (a `BTreeMap`: no `preserve_order`).
#[inline]
pub(super) fn maps_are_sorted() -> bool {
    static SORTED: Probe = Probe::new();
    SORTED.get(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|k| k == "a")
    })
}

/// Whether `serde_json` is built with `arbitrary_precision` (a parsed number keeps its text).
#[inline]
pub(super) fn numbers_keep_their_text() -> bool {
    static KEEP: Probe = Probe::new();
    KEEP.get(|| {
        serde_json::from_str::<Value>("1.50")
            .and_then(|v| serde_json::to_string(&v))
            .is_ok_and(|text| text == "1.50")
    })
}

/// A fact about the `serde_json` build, found out once: a relaxed load afterwards (computing it twice
/// in a race is harmless).
struct Probe(AtomicU8);

impl Probe {
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;

    const fn new() -> Self {
        Probe(AtomicU8::new(Self::UNKNOWN))
    }

    #[inline]
    fn get(&self, find_out: impl FnOnce() -> bool) -> bool {
        match self.0.load(AtomicOrdering::Relaxed) {
            Self::UNKNOWN => {
                let yes = find_out();
                let state = if yes { Self::YES } else { Self::NO };
                self.0.store(state, AtomicOrdering::Relaxed);
                yes
            }
            state => state == Self::YES,
        }
    }
}
