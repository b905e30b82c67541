//! Times on the command line: RFC 3339 or relative (`2h` ago), shown in UTC.

use actguard::store::Millis;

use crate::CliError;

const MS_PER_DAY: i64 = 86_400_000;

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

/// Parses a point in time: RFC 3339 (`2026-11-28T10:00:00Z`, an offset, fractional seconds), a date
/// (`2026-11-28`, midnight UTC), `now`, or a duration ago (`2h`).
pub fn parse_time(text: &str, now_ms: Millis) -> Result<Millis, CliError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if let Some(d) = parse_duration(text) {
        return Ok(now_ms - d);
    }
    parse_rfc3339(text).ok_or_else(|| {
        CliError::Usage(format!(
            "cannot read the time `{text}`: give RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28) \
             or a duration ago (30m, 2h, 7d)"
        ))
    })
}

fn parse_rfc3339(text: &str) -> Option<Millis> {
    let b = text.as_bytes();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, mo, d) * MS_PER_DAY;
    if b.len() == 10 {
        return Some(day_ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, s) = (
        num(&text[11..13])?,
        num(&text[14..16])?,
        num(&text[17..19])?,
    );
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut frac_ms = 0;
    if let Some(f) = rest.strip_prefix('.') {
        let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
        let digits = &f[..end];
        if digits.is_empty() {
            return None;
        }
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = num(&ms)?;
        rest = &f[end..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(&o[1..3])? * 3_600_000 + num(&o[4..6])? * 60_000)
        }
        _ => return None,
    };
    Some(day_ms + ((h * 60 + mi) * 60 + s) * 1000 + frac_ms - offset_ms)
}

/// `2026-11-28T10:03:34.123Z`.
pub fn format_ms(ms: Millis) -> String {
    let (date, time) = split(ms);
    format!("{date}T{time}Z")
}

/// `2026-11-28 10:03:34` (UTC), for tables.
pub fn format_short(ms: Millis) -> String {
    let (date, time) = split(ms);
    format!("{date} {}", &time[..8])
}

fn split(ms: Millis) -> (String, String) {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{h:02}:{mi:02}:{s:02}.{milli:03}"),
    )
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

// Howard Hinnant's algorithms (proleptic Gregorian calendar, days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
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
}
