//! Canonical JSON: any JSON value is written as canonical JSON that reads back to the same value and
//! is written again byte for byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    let Ok(written) = actguard::canonical::to_vec(&value) else {
        return;
    };
    let again: serde_json::Value = serde_json::from_slice(&written).expect("reads back");
    assert_eq!(actguard::canonical::to_vec(&again).unwrap(), written);
});
