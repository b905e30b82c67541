//! Canonical JSON: the one byte form of a value that payload fingerprints, stored payloads
//! ([`PayloadJson`](crate::PayloadJson)), the action log's hash chain, [`Redacted`](crate::Redacted)
//! digests and the manifest digest are computed from.
//!
//! Those bytes are compared and hashed across processes, machines and releases: a completed key
//! replays only if the payload's fingerprint is the one stored with it, and a log verifies only if
//! every entry hashes as it did when it was written. So they are written here, by actguard, for any
//! `T: Serialize`, and do not depend on how `serde_json` is built. Cargo unifies features across a
//! whole dependency graph: one crate enabling `serde_json/preserve_order` (objects keep insertion
//! order) or `serde_json/arbitrary_precision` (numbers keep their literal text) anywhere in an
//! application changes what `serde_json` writes, but not what this module writes.
//!
//! # The form
//!
//! It is byte for byte what release 0.1 wrote by serializing a `serde_json::Value` with a plain
//! `serde_json` build (no `preserve_order`, no `arbitrary_precision`; `float_roundtrip`, which
//! actguard enables, only affects parsing), so stores written by it keep replaying and verifying:
//!
//! - **Compact**: no whitespace.
//! - **Objects** (maps, structs, struct variants, `Value` objects) have their members sorted by the
//!   UTF-8 bytes of their keys, at every level. A key given twice keeps its last value (as a map
//!   insert does). Struct fields are written in that order too, not in declaration order.
//! - **Keys** that are not strings are written as `serde_json` writes map keys: integers in
//!   decimal, `bool` as `"true"`/`"false"`, `char` as a string, unit variants by name, floats as
//!   their shortest round-trip text (an `f32` key as an `f32`); finite floats only. Anything else
//!   as a key is an error.
//! - **Strings** escape `"` as `\"`, `\` as `\\`, the control characters U+0008, U+0009, U+000A,
//!   U+000C and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`, every other one below U+0020 as `\u00xx`
//!   (lowercase hex); everything else, U+007F and all non-ASCII characters included, is written as
//!   is (UTF-8).
//! - **Integers** in decimal. A 128-bit integer must fit in `u64` or `i64` (else an error, as
//!   `serde_json::to_value` gives).
//! - **Floats** as an `f64` (an `f32` is widened first, as `serde_json::to_value` does): the
//!   shortest text that reads back as the same `f64`, with a `.0` on integral values and an
//!   exponent outside `1e-5 ≤ |x| < 1e16`: `1.0`, `0.1`, `-0.0`, `1e-7`, `1e+16`, `1e+21`,
//!   `5e-324`, `1.7976931348623157e+308`. Written by [`zmij`], the formatter `serde_json` itself
//!   uses. Non-finite floats (`NaN`, `±inf`) are `null` (a guarded call's payload, result and
//!   captured states refuse them instead: see [`limits`](crate::limits)).
//! - `None`, `()` and unit structs are `null`; newtypes are their content; sequences, tuples and
//!   bytes are arrays; a unit variant is its name as a string, other variants an object with one
//!   member named after the variant (`serde`'s externally tagged form).
//! - A `serde_json::Number` in its `arbitrary_precision` form (its literal text) is written as a
//!   plain build would have read that text: a `u64` if it is a non-negative integer that fits, an
//!   `i64` if it is a negative integer that fits (`-0` is the float `-0.0`), otherwise the nearest
//!   `f64`. A `serde_json::value::RawValue` is parsed and written canonically.
//!
//! # Depth
//!
//! [`write()`] follows a value's serialization at most [`MAX_WRITE_DEPTH`] levels of arrays and
//! objects down, then stops with an error: a recursive structure however deep never exhausts the
//! stack. A guarded call's payload, result and captured states are written within the tighter
//! [limits](crate::limits) of what a store keeps.
//!
//! # RFC 8785 (JCS)
//!
//! [RFC 8785](https://www.rfc-editor.org/rfc/rfc8785) is the reference for canonical JSON; this form
//! follows it (compact, sorted members, the same string escapes, shortest round-trip floats,
//! non-ASCII characters unescaped) except where compatibility with the stores release 0.1 wrote
//! requires otherwise:
//!
//! - **Key order**: RFC 8785 sorts members by the UTF-16 code units of their keys; this form sorts
//!   by UTF-8 bytes (a `BTreeMap<String, _>`'s order). The two differ only between keys that hold
//!   characters above U+FFFF and characters in U+E000..=U+FFFF: `"\u{ff61}"` sorts before
//!   `"\u{1f600}"` here, after it in RFC 8785.
//! - **Numbers**: RFC 8785 treats every number as an IEEE 754 double and writes it as ECMAScript's
//!   `Number.prototype.toString` does; this form writes `serde_json`'s numbers as `serde_json`
//!   writes them. Integers are exact over the whole `u64` and `i64` ranges (not only up to 2^53)
//!   and have no `.0`; floats keep a `.0` when integral and use exponent notation outside
//!   `1e-5 ≤ |x| < 1e16` (ECMAScript: outside `1e-6 ≤ |x| < 1e21`). So `1.0`, `1e+16`, `1e-6`,
//!   `-0.0` here are `1`, `10000000000000000`, `0.000001`, `0` in RFC 8785; `1e+21`, `1e-7`,
//!   `0.1`, `5e-324` are the same in both.
//! - **Non-finite** floats become `null` (RFC 8785 rejects them).
//!
//! The form does not depend on the `serde_json` release either: floats are formatted here by
//! `zmij`. `serde_json` releases before its switch from `ryu` to `zmij` (late 2025) wrote a positive
//! exponent without its sign (`1e21`, not `1e+21`); the form is the `zmij` one, what release 0.1
//! wrote with the `serde_json` of its lockfile.

mod escape;
mod number;
mod probe;
mod refusal;
mod ser;
mod sort;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::{Error, Value};

use crate::limits::{Limits, Unstorable};
use escape::write_string;
use number::write_number;
use probe::{maps_are_sorted, numbers_keep_their_text};
use refusal::{Refusal, Refused};
use ser::Writer;

/// The canonical JSON of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value)?;
    Ok(out)
}

/// The canonical JSON of `value`, as a string.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let bytes = to_vec(value)?;
    Ok(String::from_utf8(bytes).expect("canonical JSON is UTF-8"))
}

/// The deepest nesting of arrays and objects [`write()`] writes: deeper, it stops with an error
/// rather than follow a value's serialization down (a recursive structure could exhaust the stack);
/// `serde_json` reads no deeper by default either.
pub const MAX_WRITE_DEPTH: usize = 128;

/// Appends the canonical JSON of `value` to `out`. On an error, `out` may hold part of it. A value
/// nested deeper than [`MAX_WRITE_DEPTH`] levels is an error.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    let mut w = Writer::new(out, MAX_WRITE_DEPTH, usize::MAX, false);
    value.serialize(&mut w)
}

/// Appends the canonical JSON of `value` to `out`, checked against `limits` as it is written: at most
/// `limits.max_depth` levels (the value's serialization is not followed deeper), `out` no longer than
/// `limits.max_bytes`, and no non-finite float. `root` names the value in the path of a refusal
/// (`instr`, `result`), `what` in its message (`the payload parameter `instr``), built only then.
pub(crate) fn write_limited<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    limits: Limits,
    root: &str,
    what: impl FnOnce() -> String,
) -> Result<(), Unstorable> {
    let mut w = Writer::new(out, limits.max_depth, limits.max_bytes, true);
    let written = value.serialize(&mut w);
    let too_large = w.out.len() > limits.max_bytes;
    // A refusal stands even if the value's own `Serialize` dropped the error on its way up.
    let refusal = match w.refused.take() {
        Some(r) => Some(r),
        None if too_large => Some(Refusal::new(Refused::Large)),
        None => None,
    };
    if let Some(r) = refusal {
        return Err(Unstorable::Refused(r.into_error(root, what(), limits)));
    }
    written.map_err(Unstorable::Serialize)
}

/// Appends `s` as a canonical JSON string (quoted and escaped) to `out`.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_string(out, s);
}

/// Appends the canonical JSON of a `serde_json::Value` to `out`: the bytes [`write()`] writes for it,
/// written by walking the value rather than through `serde`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            if maps_are_sorted() {
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    write_value(out, v);
                }
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    write_value(out, v);
                }
            }
            out.push(b'}');
        }
    }
}

/// `value` as a `serde_json::Value` that writes the same canonical JSON in every build.
///
/// In a plain `serde_json` build this is `serde_json::to_value`. Under `arbitrary_precision`,
/// `serde_json::to_value` keeps an `f32`'s own shortest text (`0.1`) where a plain build widens it to
/// an `f64` (`0.10000000149011612`) and accepts 128-bit integers a plain build refuses: the value is
/// then built from its canonical JSON instead, so that it holds what a plain build would.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    if numbers_keep_their_text() {
        serde_json::from_slice(&to_vec(value)?)
    } else {
        serde_json::to_value(value)
    }
}

fn error(message: &str) -> Error {
    <Error as serde::ser::Error>::custom(message)
}
