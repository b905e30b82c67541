//! Numbers: integers, floats, and the numbers of `serde_json`'s `Value` and of its
//! `arbitrary_precision` form, written as a plain build writes them.

use serde_json::Error;

use super::error;
use super::probe::numbers_keep_their_text;

/// A `serde_json::Number` as a plain build writes it.
pub(super) fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if numbers_keep_their_text() {
        // The text of a number that serde_json parsed or wrote: always a valid JSON number.
        write_number_text(out, &n.to_string()).expect("a serde_json number is valid JSON");
    } else if let Some(u) = n.as_u64() {
        write_integer(out, u);
    } else if let Some(i) = n.as_i64() {
        write_integer(out, i);
    } else {
        write_f64(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

pub(super) fn write_integer<I: itoa::Integer>(out: &mut Vec<u8>, i: I) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

pub(super) fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A number in `serde_json`'s `arbitrary_precision` form (its literal JSON text), written as a
/// plain build would have parsed it: `u64`, negative `i64`, else `f64`.
pub(super) fn write_number_text(out: &mut Vec<u8>, text: &str) -> Result<(), Error> {
    if !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        if text.starts_with('-') {
            // A plain build reads `-0` as the float -0.0.
            if let Ok(i) = text.parse::<i64>()
                && i < 0
            {
                write_integer(out, i);
                return Ok(());
            }
        } else if let Ok(u) = text.parse::<u64>() {
            write_integer(out, u);
            return Ok(());
        }
    }
    let f: f64 = text
        .parse()
        .map_err(|_| error(&format!("invalid number `{text}`")))?;
    write_f64(out, f);
    Ok(())
}
