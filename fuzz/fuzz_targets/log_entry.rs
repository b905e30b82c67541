//! A stored log entry, read back: any text is an entry or an error, never a panic; an entry read is
//! written again as canonical JSON that reads back to the same entry with the same hash.
#![no_main]

use actguard::log::{NewLogEntry, canonical_json, entry_hash};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(entry) = serde_json::from_slice::<NewLogEntry>(bytes) else {
        return;
    };
    let canonical = canonical_json(&entry);
    let again: NewLogEntry = serde_json::from_str(&canonical).expect("canonical JSON reads back");
    assert_eq!(canonical_json(&again), canonical);
    assert_eq!(entry_hash(1, "", &again), entry_hash(1, "", &entry));
});
