//! Times and durations on the command line: a time or an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, i64)| {
    let (text, now) = input;
    let _ = actguard_cli::time::parse_time(text, now);
    let _ = actguard_cli::time::parse_duration(text);
    let _ = actguard_cli::time::format_ms(now);
    let _ = text.parse::<actguard::LogHead>();
});
