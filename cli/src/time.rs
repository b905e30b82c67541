//! Times on the command line: RFC 3339 or relative (`2h` ago), shown in UTC.

use std::str::FromStr;

use actguard::store::Millis;

use crate::CliError;

const MS_PER_DAY: i64 = 86_400_000;

/// A duration on the command line: a number and a unit (`500ms`, `30s`, `15m`, `2h`, `7d`, `1w`).
/// Parsed by clap, so a bad value is refused before the command runs, naming the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Millis);

impl FromStr for DurationArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(DurationArg).ok_or_else(|| {
            format!("cannot read the duration `{text}`: write a number and a unit (30m, 2h, 7d)")
        })
    }
}

/// A point in time on the command line: RFC 3339 (`2026-11-28T10:00:00Z`, an offset, fractional
/// seconds), a date (`2026-11-28`, midnight UTC), `now`, or a duration ago (`2h`). A date that does
/// not exist (`2026-02-31`) is refused, not rolled over. Parsed by clap; [`TimeArg::resolve`] reads
/// it against the command's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// `now`.
    Now,
    /// A duration before now.
    Ago(Millis),
    /// A point in time, in Unix milliseconds.
    At(Millis),
}

impl FromStr for TimeArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "now" {
            return Ok(TimeArg::Now);
        }
        if let Some(d) = parse_duration(text) {
            return Ok(TimeArg::Ago(d));
        }
        let parsed = match text.parse::<jiff::Timestamp>() {
            Ok(t) => Ok(t),
            Err(e) if text.len() == 10 => text
                .parse::<jiff::civil::Date>()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
                .map(|z| z.timestamp())
                .map_err(|_| e),
            Err(e) => Err(e),
        };
        parsed.map(|t| TimeArg::At(t.as_millisecond())).map_err(|e| {
            format!(
                "cannot read the time `{text}` ({e}): give RFC 3339 (2026-11-28T10:00:00Z), a date \
                 (2026-11-28) or a duration ago (30m, 2h, 7d)"
            )
        })
    }
}

impl TimeArg {
    /// The time in Unix milliseconds, `now_ms` being now.
    pub fn resolve(self, now_ms: Millis) -> Result<Millis, CliError> {
        match self {
            TimeArg::Now => Ok(now_ms),
            TimeArg::At(ms) => Ok(ms),
            TimeArg::Ago(d) => now_ms.checked_sub(d).ok_or_else(|| {
                CliError::Usage(format!("the duration of {d} ms reaches before any time"))
            }),
        }
    }
}

/// Parses a duration: a number and a unit (`500ms`, `30s`, `15m`, `2h`, `7d`, `1w`).
pub fn parse_duration(text: &str) -> Option<Millis> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => MS_PER_DAY,
        "w" => 7 * MS_PER_DAY,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// Parses a point in time (see [`TimeArg`]) and resolves it against `now_ms`.
pub fn parse_time(text: &str, now_ms: Millis) -> Result<Millis, CliError> {
    text.parse::<TimeArg>()
        .map_err(CliError::Usage)?
        .resolve(now_ms)
}

/// The time of `ms` in UTC, or `None` beyond the years -9999..=9999.
fn utc(ms: Millis) -> Option<jiff::civil::DateTime> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(jiff::tz::TimeZone::UTC.to_datetime(t))
}

/// `2026-11-28T10:03:34.123Z`.
pub fn format_ms(ms: Millis) -> String {
    match utc(ms) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{ms} ms since 1970"),
    }
}

/// `2026-11-28 10:03:34` (UTC), for tables.
pub fn format_short(ms: Millis) -> String {
    match utc(ms) {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{ms} ms since 1970"),
    }
}

/// A duration in its largest whole unit under two: `45s`, `12m`, `3h`, `2d`.
pub fn format_age(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// Unix milliseconds now, from the system clock.
pub fn system_now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_format() {
        let t = parse_time("2026-11-28T10:03:34.123Z", 0).unwrap();
        assert_eq!(format_ms(t), "2026-11-28T10:03:34.123Z");
        assert_eq!(parse_time("2026-11-28T11:03:34.123+01:00", 0).unwrap(), t);
        assert_eq!(parse_time("2026-11-28 10:03:34.123Z", 0).unwrap(), t);
        assert_eq!(
            parse_time("2026-11-28", 0).unwrap(),
            parse_time("2026-11-28T00:00:00Z", 0).unwrap()
        );
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(parse_time("now", 5).unwrap(), 5);
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("2026-13-01", 0).is_err());
    }

    #[test]
    fn a_date_that_does_not_exist_is_refused() {
        assert!(parse_time("2026-02-31", 0).is_err());
        assert!(parse_time("2026-02-29T00:00:00Z", 0).is_err());
        assert!(parse_time("2028-02-29", 0).is_ok());
    }

    #[test]
    fn text_with_characters_of_several_bytes_is_an_error_not_a_panic() {
        for text in [
            "2026-11-2é",
            "2026-11-28T10:0é:00Z",
            "é",
            "2026-11-28T10:00:00+0é:00",
        ] {
            assert!(parse_time(text, 0).is_err(), "{text}");
        }
    }

    #[test]
    fn times_beyond_the_calendar_are_shown_as_milliseconds() {
        assert_eq!(format_ms(i64::MAX), format!("{} ms since 1970", i64::MAX));
        assert!(parse_time(&format!("{}d", i64::MAX / 86_400_000), i64::MIN / 2).is_err());
    }

    proptest::proptest! {
        /// Whatever is typed, parsing answers (a time or an error) and never panics.
        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,40}", now in proptest::num::i64::ANY) {
            let _ = parse_time(&text, now);
            let _ = parse_duration(&text);
            let _ = format_ms(now);
            let _ = format_short(now);
        }

        /// A time formatted is read back to the millisecond.
        #[test]
        fn a_formatted_time_reads_back(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            proptest::prop_assert_eq!(parse_time(&format_ms(ms), 0).unwrap(), ms);
        }
    }
}
