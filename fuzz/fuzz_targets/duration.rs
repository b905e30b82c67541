//! The attribute's duration parser (`"250ms"`, `"24h"`): a duration or an error, never a panic; a
//! parsed duration displays as text that parses back to it.
#![no_main]

#[allow(dead_code)]
#[path = "../../macros/src/duration.rs"]
mod duration;

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(ms) = duration::parse(text) {
        assert_eq!(duration::parse(&duration::display(ms)), Ok(ms));
    }
});
