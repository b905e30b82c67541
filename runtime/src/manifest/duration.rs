//! Durations as the manifest writes them (`"2m"`), and as the sign-off sheet spells them out
//! (`"2 minutes"`).

use std::time::Duration;

use super::sheet::count;

const UNITS: [(u128, &str, &str); 5] = [
    (86_400_000, "d", "day"),
    (3_600_000, "h", "hour"),
    (60_000, "m", "minute"),
    (1_000, "s", "second"),
    (1, "ms", "millisecond"),
];

/// A duration as the attribute writes it: `"100ms"`, `"30s"`, `"2m"`, `"24h"`, `"7d"` (the largest
/// unit that divides it; a single day is `"24h"`).
pub fn short_duration(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{}ns", d.as_nanos());
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "0ms".to_owned();
    }
    for (unit, suffix, _) in UNITS {
        if ms % unit == 0 && !(suffix == "d" && ms / unit == 1) {
            return format!("{}{suffix}", ms / unit);
        }
    }
    unreachable!("every whole number of milliseconds is divisible by 1")
}

/// `"2m"` → `"2 minutes"`; anything else is returned as is.
pub(super) fn long_duration_str(short: &str) -> String {
    let digits = short.trim_end_matches(|c: char| !c.is_ascii_digit());
    let suffix = &short[digits.len()..];
    match (digits.parse::<u128>(), UNITS.iter().find(|u| u.1 == suffix)) {
        (Ok(n), Some((_, _, word))) => count(n as usize, word),
        _ => short.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_in_the_largest_exact_unit() {
        let cases = [
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(24 * 3600), "24h"),
            (Duration::from_secs(7 * 24 * 3600), "7d"),
            (Duration::ZERO, "0ms"),
            (Duration::from_nanos(1500), "1500ns"),
        ];
        for (d, text) in cases {
            assert_eq!(short_duration(d), text, "{d:?}");
        }
        assert_eq!(long_duration_str("2m"), "2 minutes");
        assert_eq!(long_duration_str("1h"), "1 hour");
        assert_eq!(long_duration_str("100ms"), "100 milliseconds");
        assert_eq!(long_duration_str("1500ns"), "1500ns");
    }
}
