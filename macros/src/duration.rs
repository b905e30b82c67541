//! Durations written in the attribute: `"250ms"`, `"30s"`, `"2m"`, `"24h"`, `"7d"`, parsed at compile time.

/// A duration in milliseconds, or why the text is not one.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a duration: write a whole number followed by a unit, e.g. \"250ms\", \"30s\", \"2m\", \"24h\" or \"7d\""
        ));
    }
    let factor: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => {
            return Err(format!(
                "`{text}` has no unit: write `{number}ms`, `{number}s`, `{number}m`, `{number}h` or `{number}d`"
            ));
        }
        other => {
            let other = other.trim();
            return Err(format!(
                "`{other}` is not a duration unit (in `{text}`): use ms, s, m, h or d, e.g. \"250ms\", \"30s\", \"2m\", \"24h\", \"7d\""
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms"), Ok(250));
        assert_eq!(parse("30s"), Ok(30_000));
        assert_eq!(parse("2m"), Ok(120_000));
        assert_eq!(parse("24h"), Ok(86_400_000));
        assert_eq!(parse("7d"), Ok(604_800_000));
    }

    #[test]
    fn rejects_malformed_text() {
        assert!(parse("").is_err());
        assert!(parse("10").is_err());
        assert!(parse("ten s").is_err());
        assert!(parse("1.5h").is_err());
        assert!(parse("5 min").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }

    proptest::proptest! {
        /// Any text is a duration or an error, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,30}") {
            let _ = parse(&text);
        }

        /// Digits and units in any arrangement, numbers beyond `u64` included.
        #[test]
        fn any_duration_like_text_parses_or_is_refused(text in "[0-9 ]{0,25}(ms|s|m|h|d|x|µs)?[0-9]{0,2}") {
            let _ = parse(&text);
        }
    }
}
