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

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::{Error, Value};

use crate::limits::{LimitError, Limits, Unstorable};

/// The name under which `serde_json` serializes a `Number` when `arbitrary_precision` is on: a struct
/// with one field of that name holding the number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";
/// The same for a `RawValue` (`raw_value` feature): one field holding the raw JSON text.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

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

/// [`write_str`]; answers whether anything in `s` was escaped.
#[inline]
fn write_string(out: &mut Vec<u8>, s: &str) -> bool {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let escaped = needs_escape(bytes);
    if escaped {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
    escaped
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

/// A `serde_json::Number` as a plain build writes it.
fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
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

/// Whether `serde_json::Map` iterates in key order (a `BTreeMap`: no `preserve_order`).
#[inline]
fn maps_are_sorted() -> bool {
    static SORTED: Probe = Probe::new();
    SORTED.get(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|k| k == "a")
    })
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

/// Whether `serde_json` is built with `arbitrary_precision` (a parsed number keeps its text).
#[inline]
fn numbers_keep_their_text() -> bool {
    static KEEP: Probe = Probe::new();
    KEEP.get(|| {
        serde_json::from_str::<Value>("1.50")
            .and_then(|v| serde_json::to_string(&v))
            .is_ok_and(|text| text == "1.50")
    })
}

/// A fact about the `serde_json` build, found out once: a relaxed load afterwards (computing it twice
/// in a race is harmless).
struct Probe(AtomicU8);

impl Probe {
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;

    const fn new() -> Self {
        Probe(AtomicU8::new(Self::UNKNOWN))
    }

    #[inline]
    fn get(&self, find_out: impl FnOnce() -> bool) -> bool {
        match self.0.load(AtomicOrdering::Relaxed) {
            Self::UNKNOWN => {
                let yes = find_out();
                let state = if yes { Self::YES } else { Self::NO };
                self.0.store(state, AtomicOrdering::Relaxed);
                yes
            }
            state => state == Self::YES,
        }
    }
}

/// Whether `serde_json` would escape anything in `bytes`: a `"`, a `\` or a control character
/// (below 0x20). Eight bytes at a time.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `x` is zero (the classic test: exact as to whether any byte is).
    fn has_zero(x: u64) -> bool {
        x.wrapping_sub(ONES) & !x & HIGH != 0
    }
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // A byte below 0x20 has its three high bits clear: `x & 0xe0..` has a zero byte.
        if has_zero(x & (0xe0 * ONES))
            || has_zero(x ^ (u64::from(b'"') * ONES))
            || has_zero(x ^ (u64::from(b'\\') * ONES))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The contents of a string with its escapes, without the quotes.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The bytes of a string written by [`write_escaped`], unescaped: what its keys are sorted by.
struct Unescaped<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        if b != b'\\' {
            self.at += 1;
            return Some(b);
        }
        let (byte, len) = match self.bytes[self.at + 1] {
            b'b' => (0x08, 2),
            b't' => (0x09, 2),
            b'n' => (0x0a, 2),
            b'f' => (0x0c, 2),
            b'r' => (0x0d, 2),
            b'u' => {
                // `\u00xx`: only control characters are written so.
                let hex = |d: u8| match d {
                    b'0'..=b'9' => d - b'0',
                    _ => d - b'a' + 10,
                };
                (
                    hex(self.bytes[self.at + 4]) << 4 | hex(self.bytes[self.at + 5]),
                    6,
                )
            }
            other => (other, 2),
        };
        self.at += len;
        Some(byte)
    }
}

/// One member of an object being written: `"key":value` is `out[start..end]`, the key's contents
/// (escaped, without quotes) `out[start + 1..key_end - 1]`.
#[derive(Debug, Clone, Copy)]
struct Member {
    start: usize,
    key_end: usize,
    end: usize,
    /// Whether the key holds an escape (its bytes are then compared unescaped).
    escaped: bool,
}

impl Member {
    fn key<'a>(&self, out: &'a [u8]) -> &'a [u8] {
        &out[self.start + 1..self.key_end - 1]
    }
}

/// The order of two members' keys: by the UTF-8 bytes of the keys themselves, not of their escapes.
fn key_order(out: &[u8], a: &Member, b: &Member) -> Ordering {
    let (ka, kb) = (a.key(out), b.key(out));
    if a.escaped || b.escaped {
        Unescaped { bytes: ka, at: 0 }.cmp(Unescaped { bytes: kb, at: 0 })
    } else if ka.len() <= 16 && kb.len() <= 16 {
        // Most keys are short: compared in place rather than by a call to `memcmp`.
        for (x, y) in ka.iter().zip(kb) {
            if x != y {
                return x.cmp(y);
            }
        }
        ka.len().cmp(&kb.len())
    } else {
        ka.cmp(kb)
    }
}

/// The members of the object whose `{` is at `out[start]` and whose last member ends `out` (its `}`
/// not written yet), found again by scanning: this module's own compact output.
fn scan_members(out: &[u8], start: usize, members: &mut Vec<Member>) {
    let mut at = start + 1;
    while at < out.len() {
        let (key_end, escaped) = skip_string(out, at);
        let end = skip_value(out, key_end + 1);
        members.push(Member {
            start: at,
            key_end,
            end,
            escaped,
        });
        at = end + 1;
    }
}

/// The end of the string that starts at `out[at]`, and whether it holds an escape.
fn skip_string(out: &[u8], at: usize) -> (usize, bool) {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        match out[i] {
            b'"' => return (i + 1, escaped),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// The end of the value that starts at `out[at]`.
fn skip_value(out: &[u8], at: usize) -> usize {
    match out[at] {
        b'"' => skip_string(out, at).0,
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match out[i] {
                    b'"' => {
                        i = skip_string(out, i).0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`.
        _ => out[at..]
            .iter()
            .position(|&b| b == b',')
            .map_or(out.len(), |n| at + n),
    }
}

/// The serializer: writes canonical JSON into `out`.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Arrays and objects open around what is being written.
    depth: usize,
    max_depth: usize,
    /// The length `out` may not exceed (checked after each element and member).
    max_len: usize,
    /// Refuse non-finite floats (a limited write) rather than write `null`.
    finite: bool,
    /// What a write refused, with the path to it gathered as the error travels up.
    refused: Option<Refusal>,
}

/// Why a write stopped, and where: the path from the refused value up to the root, innermost first.
#[derive(Debug)]
struct Refusal {
    refused: Refused,
    path: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
enum Refused {
    Deep,
    Large,
    NonFinite(&'static str),
}

/// One step of a path: an array index or an object key.
#[derive(Debug)]
enum Step {
    Index(usize),
    Key(String),
}

impl Refusal {
    fn new(refused: Refused) -> Self {
        Refusal {
            refused,
            path: Vec::new(),
        }
    }

    fn into_error(self, root: &str, what: String, limits: Limits) -> LimitError {
        /// Steps shown at each end of a longer path (one too deep has more than `MAX_DEPTH`).
        const SHOWN: usize = 8;
        let mut path = root.to_owned();
        let steps = self.path.len();
        for (i, step) in self.path.iter().rev().enumerate() {
            if steps > 2 * SHOWN && (SHOWN..steps - SHOWN).contains(&i) {
                if i == SHOWN {
                    path.push('…');
                }
                continue;
            }
            match step {
                Step::Index(i) => {
                    path.push('[');
                    path.push_str(itoa::Buffer::new().format(*i));
                    path.push(']');
                }
                Step::Key(k)
                    if !k.is_empty() && k.chars().all(|c| c == '_' || c.is_alphanumeric()) =>
                {
                    path.push('.');
                    path.push_str(k);
                }
                Step::Key(k) => {
                    path.push('[');
                    path.push_str(&serde_json::to_string(k).unwrap_or_default());
                    path.push(']');
                }
            }
        }
        match self.refused {
            Refused::Deep => LimitError::TooDeep {
                what,
                path,
                max: limits.max_depth,
            },
            Refused::Large => LimitError::TooLarge {
                what,
                kind: limits.kind,
                max: limits.max_bytes,
            },
            Refused::NonFinite(value) => LimitError::NonFinite { what, path, value },
        }
    }
}

impl<'o> Writer<'o> {
    fn new(out: &'o mut Vec<u8>, max_depth: usize, max_bytes: usize, finite: bool) -> Self {
        Writer {
            out,
            depth: 0,
            max_depth,
            max_len: max_bytes,
            finite,
            refused: None,
        }
    }

    /// Stops the write: records why, and answers the error that carries it up.
    fn refuse(&mut self, refused: Refused) -> Error {
        let message = match refused {
            Refused::Deep => format!("nested more than {} levels deep", self.max_depth),
            Refused::Large => format!("larger than {} bytes", self.max_len),
            Refused::NonFinite(v) => format!("{v} is not a JSON number"),
        };
        self.refused = Some(Refusal::new(refused));
        error(&message)
    }

    /// Opens `levels` arrays or objects (a variant with data opens two: `{"V":[`).
    fn enter(&mut self, levels: usize) -> Result<(), Error> {
        self.depth += levels;
        if self.depth > self.max_depth {
            return Err(self.refuse(Refused::Deep));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth -= levels;
    }

    /// After an element or member: stops once `out` is longer than allowed.
    fn check_len(&mut self) -> Result<(), Error> {
        if self.out.len() > self.max_len {
            return Err(self.refuse(Refused::Large));
        }
        Ok(())
    }

    /// On the way up from an error: the step it came through, if it is a refusal.
    fn step(&mut self, step: impl FnOnce() -> Step) {
        if let Some(r) = &mut self.refused {
            r.path.push(step());
        }
    }

    fn float(&mut self, f: f64) -> Result<(), Error> {
        if self.finite && !f.is_finite() {
            let value = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            return Err(self.refuse(Refused::NonFinite(value)));
        }
        write_f64(self.out, f);
        Ok(())
    }
}

fn error(message: &str) -> Error {
    <Error as ser::Error>::custom(message)
}

fn write_integer<I: itoa::Integer>(out: &mut Vec<u8>, i: I) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A number in `serde_json`'s `arbitrary_precision` form (its literal JSON text), written as a
/// plain build would have parsed it: `u64`, negative `i64`, else `f64`.
fn write_number_text(out: &mut Vec<u8>, text: &str) -> Result<(), Error> {
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

impl<'w, 'o> ser::Serializer for &'w mut Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'w, 'o>;
    type SerializeTuple = Array<'w, 'o>;
    type SerializeTupleStruct = Array<'w, 'o>;
    type SerializeTupleVariant = Array<'w, 'o>;
    type SerializeMap = Object<'w, 'o>;
    type SerializeStruct = Struct<'w, 'o>;
    type SerializeStructVariant = Object<'w, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if u64::try_from(v).is_err() && i64::try_from(v).is_err() {
            return Err(error("number out of range"));
        }
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        let v = u64::try_from(v).map_err(|_| error("number out of range"))?;
        write_integer(self.out, v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.enter(1)?;
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_integer(self.out, *b);
        }
        self.out.push(b']');
        self.leave(1);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.enter(1)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        if let Err(e) = value.serialize(&mut *self) {
            self.step(|| Step::Key(variant.to_owned()));
            return Err(e);
        }
        self.out.push(b'}');
        self.leave(1);
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'w, 'o>, Error> {
        self.enter(1)?;
        self.out.push(b'[');
        Ok(Array {
            w: self,
            len: 0,
            variant: None,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Array<'w, 'o>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Array<'w, 'o>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'w, 'o>, Error> {
        self.enter(2)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            w: self,
            len: 0,
            variant: Some(variant),
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'w, 'o>, Error> {
        self.enter(1)?;
        Ok(Object::begin(self, None))
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Struct<'w, 'o>, Error> {
        Ok(match name {
            NUMBER_TOKEN => Struct::Number(self),
            RAW_VALUE_TOKEN => Struct::RawValue(self),
            _ => {
                self.enter(1)?;
                Struct::Object(Object::begin(self, None))
            }
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'w, 'o>, Error> {
        self.enter(2)?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        Ok(Object::begin(self, Some(variant)))
    }
}

/// A sequence, tuple or tuple variant being written.
struct Array<'w, 'o> {
    w: &'w mut Writer<'o>,
    /// The elements written so far.
    len: usize,
    /// Inside `{"variant":…}`: closed with `]}`.
    variant: Option<&'static str>,
}

impl Array<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.len > 0 {
            self.w.out.push(b',');
        }
        if let Err(e) = value.serialize(&mut *self.w) {
            self.w.step(|| Step::Index(self.len));
            if let Some(variant) = self.variant {
                self.w.step(|| Step::Key(variant.to_owned()));
            }
            return Err(e);
        }
        self.len += 1;
        self.w.check_len()
    }

    fn finish(self) -> Result<(), Error> {
        self.w.out.push(b']');
        if self.variant.is_some() {
            self.w.out.push(b'}');
            self.w.leave(2);
        } else {
            self.w.leave(1);
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// An object being written: its members as they come, put in key order at the end if they did not
/// come in it. In order (a `serde_json::Value` of a plain build, a struct whose fields are declared
/// in order), nothing is recorded but the last key.
struct Object<'w, 'o> {
    w: &'w mut Writer<'o>,
    /// Where its `{` is in `out`.
    start: usize,
    /// The members written so far.
    count: usize,
    /// The last member written.
    last: Option<Member>,
    /// The member whose key was written and whose value comes next: (start, key end, escaped).
    pending: Option<(usize, usize, bool)>,
    /// A member came with a key not after the one before it.
    unsorted: bool,
    /// Inside `{"variant":…}`: closed with `}}`.
    variant: Option<&'static str>,
}

impl<'w, 'o> Object<'w, 'o> {
    /// Begins an object (the writer has entered its level, or both levels of a variant).
    fn begin(w: &'w mut Writer<'o>, variant: Option<&'static str>) -> Self {
        let start = w.out.len();
        w.out.push(b'{');
        Object {
            w,
            start,
            count: 0,
            last: None,
            pending: None,
            unsorted: false,
            variant,
        }
    }

    /// Before a member's key: its separator; returns where the member starts.
    fn member_start(&mut self) -> usize {
        if self.count > 0 {
            self.w.out.push(b',');
        }
        self.w.out.len()
    }

    /// On the way up from a refused member of a variant's object: the variant's step.
    fn variant_step(&mut self) {
        if let Some(variant) = self.variant {
            self.w.step(|| Step::Key(variant.to_owned()));
        }
    }

    /// After a member's value.
    fn member_end(&mut self, start: usize, key_end: usize, escaped: bool) {
        let member = Member {
            start,
            key_end,
            end: self.w.out.len(),
            escaped,
        };
        if !self.unsorted
            && let Some(last) = &self.last
            && key_order(self.w.out, last, &member) != Ordering::Less
        {
            self.unsorted = true;
        }
        self.last = Some(member);
        self.count += 1;
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let start = self.member_start();
        let escaped = write_string(self.w.out, key);
        let key_end = self.w.out.len();
        self.w.out.push(b':');
        if let Err(e) = value.serialize(&mut *self.w) {
            self.w.step(|| Step::Key(key.to_owned()));
            self.variant_step();
            return Err(e);
        }
        self.member_end(start, key_end, escaped);
        self.w.check_len()
    }

    fn finish(self) -> Result<(), Error> {
        let out = &mut *self.w.out;
        if self.unsorted {
            let mut members = Vec::with_capacity(self.count);
            scan_members(out, self.start, &mut members);
            debug_assert_eq!(members.len(), self.count);
            // Stable: of members with equal keys, the last given is last, and kept.
            members.sort_by(|a, b| key_order(out, a, b));
            // The sorted object is written after the unsorted one, then moved in its place.
            let sorted = out.len();
            out.push(b'{');
            for (i, m) in members.iter().enumerate() {
                if members
                    .get(i + 1)
                    .is_some_and(|next| key_order(out, m, next) == Ordering::Equal)
                {
                    continue;
                }
                if out.len() > sorted + 1 {
                    out.push(b',');
                }
                out.extend_from_within(m.start..m.end);
            }
            out.push(b'}');
            out.copy_within(sorted.., self.start);
            out.truncate(self.start + (out.len() - sorted));
        } else {
            out.push(b'}');
        }
        if self.variant.is_some() {
            out.push(b'}');
            self.w.leave(2);
        } else {
            self.w.leave(1);
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let start = self.member_start();
        let mut escaped = false;
        key.serialize(KeyWriter {
            out: &mut *self.w.out,
            escaped: &mut escaped,
        })?;
        self.pending = Some((start, self.w.out.len(), escaped));
        self.w.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let (start, key_end, escaped) = self
            .pending
            .take()
            .expect("serialize_value called before serialize_key");
        if let Err(e) = value.serialize(&mut *self.w) {
            let key = &self.w.out[start + 1..key_end - 1];
            let key = String::from_utf8_lossy(key).into_owned();
            self.w.step(|| Step::Key(key));
            return Err(e);
        }
        self.member_end(start, key_end, escaped);
        self.w.check_len()
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// A struct being written: an object, or one of `serde_json`'s private forms of a number
/// (`arbitrary_precision`) or of raw JSON (`raw_value`).
enum Struct<'w, 'o> {
    Object(Object<'w, 'o>),
    Number(&'w mut Writer<'o>),
    RawValue(&'w mut Writer<'o>),
}

/// The levels of arrays and objects in a value `serde_json` parsed (so at most as many as it reads).
fn value_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The text held by the field of a private `serde_json` form.
fn private_text<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    match serde_json::to_value(value)? {
        Value::String(s) => Ok(s),
        _ => Err(error("a serde_json number or raw value holds its text")),
    }
}

impl ser::SerializeStruct for Struct<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        match self {
            Struct::Object(o) => o.field(key, value),
            Struct::Number(w) if key == NUMBER_TOKEN => {
                let text = private_text(value)?;
                // Out of a float's range (`1e400`): infinite, refused by a limited write.
                if let Ok(f) = text.parse::<f64>() {
                    if w.finite && !f.is_finite() {
                        return w.float(f);
                    }
                }
                write_number_text(w.out, &text)
            }
            Struct::RawValue(w) if key == RAW_VALUE_TOKEN => {
                // Parsed by `serde_json`, so at most as deep as it reads: its levels count here too.
                let raw: Value = serde_json::from_str(&private_text(value)?)?;
                let levels = value_depth(&raw);
                w.enter(levels)?;
                write_value(w.out, &raw);
                w.leave(levels);
                Ok(())
            }
            Struct::Number(_) | Struct::RawValue(_) => Err(error(
                "unexpected field in a serde_json number or raw value",
            )),
        }
    }

    fn end(self) -> Result<(), Error> {
        match self {
            Struct::Object(o) => o.finish(),
            Struct::Number(_) | Struct::RawValue(_) => Ok(()),
        }
    }
}

/// Writes an object's key: a string, or what `serde_json` turns into one.
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Set when the key needed escaping.
    escaped: &'a mut bool,
}

fn key_must_be_a_string() -> Error {
    error("key must be a string")
}

impl KeyWriter<'_> {
    fn quoted(self, text: &[u8]) -> Result<(), Error> {
        self.out.push(b'"');
        self.out.extend_from_slice(text);
        self.out.push(b'"');
        Ok(())
    }

    fn integer<I: itoa::Integer>(self, i: I) -> Result<(), Error> {
        self.quoted(itoa::Buffer::new().format(i).as_bytes())
    }
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(if v { b"true" } else { b"false" })
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(error("float key must be finite (got NaN or +/-inf)"));
        }
        self.quoted(zmij::Buffer::new().format_finite(v).as_bytes())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(error("float key must be finite (got NaN or +/-inf)"));
        }
        self.quoted(zmij::Buffer::new().format_finite(v).as_bytes())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        *self.escaped = write_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        *self.escaped = write_string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        *self.escaped = write_string(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::ser::{SerializeMap, SerializeStruct};
    use serde_json::json;

    use super::*;

    /// These tests compare with `serde_json` itself where it is the reference: a plain build (this
    /// workspace's), whose `Map` is sorted and whose numbers are binary.
    fn assert_plain_serde_json() {
        let mut map = serde_json::Map::new();
        map.insert("b".into(), json!(1));
        map.insert("a".into(), json!(2));
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "serde_json is built with preserve_order"
        );
        assert!(
            !numbers_keep_their_text(),
            "serde_json is built with arbitrary_precision"
        );
    }

    /// What release 0.1 wrote for `value`: the plain build's bytes of its `serde_json::Value`.
    fn via_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&serde_json::to_value(value)?)
    }

    fn canonical(value: &impl Serialize) -> String {
        to_string(value).unwrap()
    }

    #[test]
    fn needs_escape_finds_what_serde_json_escapes() {
        for b in 0u8..=255 {
            for at in [0, 3, 8, 13, 17] {
                let mut bytes = b"abcdefghijklmnopqrs".to_vec();
                bytes[at] = b;
                let escaped = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(needs_escape(&bytes), escaped, "byte {b:#x} at {at}");
            }
        }
        assert!(!needs_escape(b""));
        assert!(!needs_escape("clé:é€".as_bytes()));
    }

    /// The escapes, spelled out: every control character, the quote and the backslash; U+007F and
    /// non-ASCII characters as they are.
    #[test]
    fn strings_escape_exactly_quote_backslash_and_control_characters() {
        let all: String = (0u8..0x20).map(char::from).collect();
        assert_eq!(
            canonical(&all),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\
             \\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\
             \\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        assert_eq!(
            canonical(&"a\"b\\c/d\u{7f}é日本🦀\u{2028}"),
            "\"a\\\"b\\\\c/d\u{7f}é日本🦀\u{2028}\""
        );
        assert_eq!(canonical(&'"'), "\"\\\"\"");
        for b in 0u8..=0x7f {
            let s = format!("x{}y", char::from(b));
            assert_eq!(canonical(&s), serde_json::to_string(&s).unwrap(), "{b:#x}");
        }
    }

    /// Floats, spelled out: these bytes are in stored fingerprints.
    #[test]
    fn floats_are_written_as_release_0_1_wrote_them() {
        for (f, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e-5, "0.00001"),
            (1.5e-5, "0.000015"),
            (1e-6, "1e-6"),
            (0.0001, "0.0001"),
            (1e-7, "1e-7"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1e21, "1e+21"),
            (123456.789, "123456.789"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            assert_eq!(canonical(&f), text, "{f:?}");
        }
        // An f32 is widened to an f64, as `serde_json::to_value` does.
        assert_eq!(canonical(&0.1f32), "0.10000000149011612");
        assert_eq!(canonical(&f32::NAN), "null");
        assert_eq!(canonical(&16777217.0f32), "16777216.0");
    }

    #[test]
    fn integers_are_written_in_decimal_and_128_bit_ones_must_fit_64_bits() {
        assert_eq!(canonical(&u64::MAX), "18446744073709551615");
        assert_eq!(canonical(&i64::MIN), "-9223372036854775808");
        assert_eq!(canonical(&u128::from(u64::MAX)), "18446744073709551615");
        assert_eq!(canonical(&i128::from(i64::MIN)), "-9223372036854775808");
        assert_eq!(canonical(&(-1i8, 0u8, 255u8)), "[-1,0,255]");
        for bad in [
            to_vec(&(u128::from(u64::MAX) + 1)),
            to_vec(&(i128::from(i64::MIN) - 1)),
        ] {
            assert_eq!(bad.unwrap_err().to_string(), "number out of range");
        }
        assert_plain_serde_json();
        assert!(serde_json::to_value(u128::from(u64::MAX) + 1).is_err());
    }

    /// Keys are sorted by their UTF-8 bytes, compared unescaped: not RFC 8785's UTF-16 order.
    #[test]
    fn keys_sort_by_their_utf8_bytes() {
        let map: HashMap<&str, u8> = [
            ("\u{1f600}", 1),
            ("\u{ff61}", 2),
            ("a#", 3),
            ("a\"", 4),
            ("a", 5),
            ("a\n", 6),
            ("Z", 7),
            ("", 8),
            ("\u{1}", 9),
            ("é", 10),
            ("a\\", 11),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            canonical(&map),
            "{\"\":8,\"\\u0001\":9,\"Z\":7,\"a\":5,\"a\\n\":6,\"a\\\"\":4,\"a#\":3,\"a\\\\\":11,\
             \"é\":10,\"\u{ff61}\":2,\"\u{1f600}\":1}"
        );
    }

    #[derive(Serialize)]
    struct Inner {
        zeta: f32,
        alpha: Option<String>,
        #[serde(rename = "mid\"dle")]
        middle: Vec<u8>,
    }

    #[derive(Serialize)]
    enum Shape {
        Point,
        Circle(f64),
        Pair(i32, i32),
        Rect { w: u32, h: u32, a: () },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Meters(f64);

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        Zebra,
        Apple,
    }

    #[derive(Serialize)]
    struct Outer {
        z: Inner,
        shapes: Vec<Shape>,
        b: BTreeMap<i64, Unit>,
        flags: BTreeMap<bool, char>,
        kinds: BTreeMap<Kind, Meters>,
        keys: BTreeMap<char, (u8, Option<bool>)>,
        #[serde(with = "serde_bytes_like")]
        raw: Vec<u8>,
        a: HashMap<u16, i128>,
    }

    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    fn outer() -> Outer {
        Outer {
            z: Inner {
                zeta: 0.1,
                alpha: None,
                middle: vec![1, 2],
            },
            shapes: vec![
                Shape::Point,
                Shape::Circle(1e21),
                Shape::Pair(-1, 2),
                Shape::Rect { w: 3, h: 4, a: () },
            ],
            b: [(-1, Unit), (10, Unit), (2, Unit)].into_iter().collect(),
            flags: [(true, 'x'), (false, '"')].into_iter().collect(),
            kinds: [(Kind::Zebra, Meters(2.5)), (Kind::Apple, Meters(-0.0))]
                .into_iter()
                .collect(),
            keys: [('b', (1, None)), ('a', (2, Some(true)))]
                .into_iter()
                .collect(),
            raw: vec![0, 255],
            a: [(443, i128::from(i64::MIN)), (22, 7)].into_iter().collect(),
        }
    }

    /// A struct is written as its `serde_json::Value` was: fields sorted at every level, maps with
    /// non-string keys as `serde_json` keys them, enums externally tagged, bytes as an array.
    #[test]
    fn a_typed_value_is_written_as_its_json_value_was() {
        let expected = concat!(
            r#"{"a":{"22":7,"443":-9223372036854775808},"b":{"-1":null,"10":null,"2":null},"#,
            r#""flags":{"false":"\"","true":"x"},"keys":{"a":[2,true],"b":[1,null]},"#,
            r#""kinds":{"Apple":-0.0,"Zebra":2.5},"raw":[0,255],"#,
            r#""shapes":["Point",{"Circle":1e+21},{"Pair":[-1,2]},{"Rect":{"a":null,"h":4,"w":3}}],"#,
            r#""z":{"alpha":null,"mid\"dle":[1,2],"zeta":0.10000000149011612}}"#
        );
        assert_eq!(canonical(&outer()), expected);
        assert_plain_serde_json();
        assert_eq!(
            String::from_utf8(via_value(&outer()).unwrap()).unwrap(),
            expected
        );
    }

    /// Float keys as `serde_json` writes them (an f32 key as an f32); non-finite ones refused.
    #[test]
    fn float_keys_are_written_as_serde_json_keys_them() {
        struct FloatKeys;
        impl Serialize for FloatKeys {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry(&0.1f32, &1)?;
                m.serialize_entry(&1e21f64, &2)?;
                m.end()
            }
        }
        assert_eq!(canonical(&FloatKeys), r#"{"0.1":1,"1e+21":2}"#);
        assert_plain_serde_json();
        assert_eq!(
            String::from_utf8(via_value(&FloatKeys).unwrap()).unwrap(),
            canonical(&FloatKeys)
        );
        let nan: BTreeMap<String, u8> = BTreeMap::new();
        assert_eq!(canonical(&nan), "{}");
        struct NanKey;
        impl Serialize for NanKey {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry(&f64::NAN, &1)?;
                m.end()
            }
        }
        assert!(to_vec(&NanKey).is_err());
        let seq_key: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert_eq!(
            to_vec(&seq_key).unwrap_err().to_string(),
            "key must be a string"
        );
        assert!(serde_json::to_value(&seq_key).is_err());
    }

    /// A key given twice keeps its last value, in its sorted place, as a `Map` insert does.
    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        struct Repeated;
        impl Serialize for Repeated {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("b", &1)?;
                m.serialize_entry("a", &2)?;
                m.serialize_entry("b", &3)?;
                m.serialize_entry("c", &4)?;
                m.serialize_entry("a", &5)?;
                m.end()
            }
        }
        assert_eq!(canonical(&Repeated), r#"{"a":5,"b":3,"c":4}"#);
        assert_plain_serde_json();
        assert_eq!(
            String::from_utf8(via_value(&Repeated).unwrap()).unwrap(),
            canonical(&Repeated)
        );
    }

    /// `serde_json`'s private form of a number under `arbitrary_precision`: its text, written as a
    /// plain build would have read it.
    struct NumberText(&'static str);

    impl Serialize for NumberText {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct(NUMBER_TOKEN, 1)?;
            st.serialize_field(NUMBER_TOKEN, self.0)?;
            st.end()
        }
    }

    #[test]
    fn a_number_kept_as_text_is_written_as_a_plain_build_reads_it() {
        let cases = [
            ("0", "0"),
            ("7", "7"),
            ("1.50", "1.5"),
            ("1e3", "1000.0"),
            ("1E3", "1000.0"),
            ("1e+3", "1000.0"),
            ("-0", "-0.0"),
            ("-0.0", "-0.0"),
            ("0.1", "0.1"),
            ("0.10000000149011612", "0.10000000149011612"),
            ("1e21", "1e+21"),
            ("1e+21", "1e+21"),
            ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("-9223372036854775809", "-9.223372036854776e+18"),
            ("123456789012345678901234567890", "1.2345678901234568e+29"),
            ("2.5e-324", "5e-324"),
            ("5e-324", "5e-324"),
        ];
        assert_plain_serde_json();
        for (text, expected) in cases {
            assert_eq!(canonical(&NumberText(text)), expected, "{text}");
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(plain.to_string(), expected, "a plain build reads {text}");
        }
        // Out of a plain build's range: a plain build refuses to read it; infinite, so `null`.
        assert_eq!(canonical(&NumberText("1e400")), "null");
        assert!(serde_json::from_str::<Value>("1e400").is_err());
        assert!(to_vec(&NumberText("x")).is_err());
        // Inside an object, sorted like any other value.
        let mut m = BTreeMap::new();
        m.insert("b", NumberText("1.50"));
        m.insert("a", NumberText("-0"));
        assert_eq!(canonical(&m), r#"{"a":-0.0,"b":1.5}"#);
    }

    /// `serde_json`'s private form of raw JSON (`raw_value` feature): parsed and written canonically.
    #[test]
    fn raw_json_is_written_canonically() {
        struct Raw(&'static str);
        impl Serialize for Raw {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut st = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
                st.serialize_field(RAW_VALUE_TOKEN, self.0)?;
                st.end()
            }
        }
        assert_eq!(
            canonical(&vec![Raw(r#" { "b" : [1.50, 1e21], "a" : "\u00e9" } "#)]),
            r#"[{"a":"é","b":[1.5,1e+21]}]"#
        );
        assert!(to_vec(&Raw("{")).is_err());
    }

    /// A value whose serialization writes canonical JSON itself (a `Redacted` inside a payload).
    #[test]
    fn a_canonical_write_inside_another_one_leaves_it_intact() {
        struct Digest(BTreeMap<&'static str, u8>);
        impl Serialize for Digest {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&to_string(&self.0).unwrap())
            }
        }
        #[derive(Serialize)]
        struct Outer {
            z: u8,
            d: Digest,
            a: Vec<BTreeMap<&'static str, u8>>,
        }
        let o = Outer {
            z: 1,
            d: Digest([("y", 1), ("x", 2)].into_iter().collect()),
            a: vec![[("q", 1), ("p", 2)].into_iter().collect()],
        };
        assert_eq!(
            canonical(&o),
            r#"{"a":[{"p":2,"q":1}],"d":"{\"x\":2,\"y\":1}","z":1}"#
        );
    }

    #[test]
    fn to_value_is_serde_json_to_value_in_a_plain_build() {
        assert_plain_serde_json();
        let v = to_value(&outer()).unwrap();
        assert_eq!(v, serde_json::to_value(outer()).unwrap());
        assert_eq!(to_vec(&v).unwrap(), to_vec(&outer()).unwrap());
        assert!(to_value(&(u128::from(u64::MAX) + 1)).is_err());
    }

    /// Arrays nested `.0` levels deep around `null`, serialized lazily: no structure in memory, so any
    /// depth can be asked for.
    struct Deep(usize);

    impl Serialize for Deep {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            if self.0 == 0 {
                return s.serialize_unit();
            }
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(&Deep(self.0 - 1))?;
            seq.end()
        }
    }

    fn limited(value: &impl Serialize, limits: Limits) -> Result<String, Unstorable> {
        let mut out = Vec::new();
        write_limited(&mut out, value, limits, "root", || "the value".to_owned())?;
        Ok(String::from_utf8(out).unwrap())
    }

    const SMALL: Limits = Limits {
        max_depth: 3,
        max_bytes: 64,
        kind: "result",
    };

    fn refusal(value: &impl Serialize, limits: Limits) -> LimitError {
        match limited(value, limits) {
            Err(Unstorable::Refused(e)) => e,
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Every container counts one level, a variant with data two (`{"V":[` and `{"V":{`), a
    /// newtype variant one; the value's serialization is not followed past the limit.
    #[test]
    fn a_limited_write_counts_every_level_and_stops_at_the_limit() {
        assert_eq!(limited(&Deep(3), SMALL).unwrap(), "[[[null]]]");
        assert_eq!(
            refusal(&Deep(4), SMALL),
            LimitError::TooDeep {
                what: "the value".into(),
                path: "root[0][0][0]".into(),
                max: 3
            }
        );
        // A long path shows its ends.
        assert_eq!(
            refusal(&Deep(100), Limits::RESULT),
            LimitError::TooDeep {
                what: "the value".into(),
                path: format!("root{}…{}", "[0]".repeat(8), "[0]".repeat(8)),
                max: 64
            }
        );
        // However deep the value: the write stops at the limit (no stack is spent below it).
        assert!(matches!(
            refusal(&Deep(100_000), SMALL),
            LimitError::TooDeep { max: 3, .. }
        ));
        assert!(matches!(
            refusal(&Deep(100_000), Limits::RESULT),
            LimitError::TooDeep { max: 64, .. }
        ));
        assert!(limited(&Deep(64), Limits::RESULT).is_ok());
        assert!(limited(&vec![vec![Shape::Pair(1, 2)]], SMALL).is_err());
        assert!(limited(&vec![Shape::Pair(1, 2)], SMALL).is_ok());
        assert!(limited(&vec![vec![Shape::Circle(1.0)]], SMALL).is_ok());
        assert!(limited(&vec![vec![vec![Shape::Circle(1.0)]]], SMALL).is_err());
        assert!(limited(&vec![vec![Shape::Rect { w: 1, h: 2, a: () }]], SMALL).is_err());
        assert!(limited(&vec![vec![b"ab".as_slice()]], SMALL).is_ok());
        // The default write stops too, at the depth serde_json reads.
        assert!(to_vec(&Deep(MAX_WRITE_DEPTH)).is_ok());
        assert!(to_vec(&Deep(100_000)).is_err());
    }

    /// A refusal names where it is: keys and indexes from the root, a key that is not a plain name
    /// quoted.
    #[test]
    fn a_refusal_names_the_path_to_the_value() {
        #[derive(Serialize)]
        struct Line {
            price: f64,
        }
        #[derive(Serialize)]
        struct Order {
            id: u32,
            lines: Vec<Line>,
        }
        let order = Order {
            id: 1,
            lines: vec![Line { price: 1.0 }, Line { price: f64::NAN }],
        };
        assert_eq!(
            refusal(&order, Limits::RESULT),
            LimitError::NonFinite {
                what: "the value".into(),
                path: "root.lines[1].price".into(),
                value: "NaN"
            }
        );
        let map: BTreeMap<&str, Vec<f32>> = [("a b", vec![0.5, f32::NEG_INFINITY])].into();
        assert_eq!(
            refusal(&map, Limits::RESULT),
            LimitError::NonFinite {
                what: "the value".into(),
                path: r#"root["a b"][1]"#.into(),
                value: "-inf"
            }
        );
        assert!(matches!(
            refusal(&Shape::Circle(f64::INFINITY), Limits::RESULT),
            LimitError::NonFinite { value: "inf", ref path, .. } if path == "root.Circle"
        ));
        // The default write keeps the form's `null` for them.
        assert_eq!(canonical(&f64::NAN), "null");
    }

    #[test]
    fn a_limited_write_refuses_output_over_the_size() {
        let fits = "x".repeat(62);
        assert_eq!(limited(&fits, SMALL).unwrap().len(), 64);
        assert_eq!(
            refusal(&"x".repeat(63), SMALL),
            LimitError::TooLarge {
                what: "the value".into(),
                kind: "result",
                max: 64
            }
        );
        // A long sequence stops at the first element past the size, not at its end.
        assert!(matches!(
            refusal(&vec![7u8; 1_000_000], SMALL),
            LimitError::TooLarge { .. }
        ));
    }

    /// A value whose `Serialize` drops the error of a refused part is refused all the same.
    #[test]
    fn a_swallowed_refusal_still_refuses() {
        struct Careless;
        impl Serialize for Careless {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                let _ = seq.serialize_element(&f64::NAN);
                seq.end()
            }
        }
        assert!(matches!(
            refusal(&Careless, Limits::RESULT),
            LimitError::NonFinite { .. }
        ));
    }

    /// Any JSON value: keys of every kind (escapes, unicode), numbers of every kind.
    fn any_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            "[a-c]{0,3}",
            "[a\"\\\\#\u{1}\n\u{7f}é\u{ff61}\u{1f600}]{0,3}",
            any::<String>(),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(|bits| Value::from(f64::from_bits(bits))),
            any::<f64>().prop_map(Value::from),
            any::<f32>().prop_map(|f| Value::from(f64::from(f))),
            any::<String>().prop_map(Value::from),
            "[{}\\[\\],:\"\\\\\u{1}a]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Every JSON value is written as a plain `serde_json` build writes it, through `serde` or by
        /// walking the value.
        #[test]
        fn any_json_value_is_written_as_plain_serde_json_writes_it(v in any_value()) {
            assert_plain_serde_json();
            let expected = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(&to_vec(&v).unwrap(), &expected);
            let mut walked = Vec::new();
            write_value(&mut walked, &v);
            prop_assert_eq!(walked, expected);
        }

        /// Every float is written as `serde_json` writes it.
        #[test]
        fn any_float_is_written_as_serde_json_writes_it(bits in any::<u64>(), f in any::<f32>()) {
            let f64_value = f64::from_bits(bits);
            prop_assert_eq!(to_vec(&f64_value).unwrap(), serde_json::to_vec(&f64_value).unwrap());
            prop_assert_eq!(to_vec(&f).unwrap(), via_value(&f).unwrap());
            // As the text of a number (arbitrary_precision), it reads back the same.
            if f64_value.is_finite() {
                let text = serde_json::to_string(&f64_value).unwrap();
                let mut out = Vec::new();
                write_number_text(&mut out, &text).unwrap();
                prop_assert_eq!(out, text.into_bytes());
            }
        }

        /// Objects whose members come in reverse order, at every level, with any content (strings
        /// holding brackets, commas, quotes, escapes): found again and sorted.
        #[test]
        fn members_in_any_order_are_sorted_at_every_level(v in any_value()) {
            struct Reversed<'a>(&'a Value);
            impl Serialize for Reversed<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    use serde::ser::SerializeSeq;
                    match self.0 {
                        Value::Object(m) => {
                            let mut map = s.serialize_map(Some(m.len()))?;
                            for (k, v) in m.iter().rev() {
                                map.serialize_entry(k, &Reversed(v))?;
                            }
                            map.end()
                        }
                        Value::Array(a) => {
                            let mut seq = s.serialize_seq(Some(a.len()))?;
                            for v in a {
                                seq.serialize_element(&Reversed(v))?;
                            }
                            seq.end()
                        }
                        other => other.serialize(s),
                    }
                }
            }
            assert_plain_serde_json();
            prop_assert_eq!(to_vec(&Reversed(&v)).unwrap(), serde_json::to_vec(&v).unwrap());
        }

        /// A map with keys in any order and of any content is written as its sorted `Value` is.
        #[test]
        fn any_map_is_written_as_its_json_value(
            members in prop::collection::vec((any::<String>(), any::<i32>()), 0..12),
        ) {
            let members: Vec<(String, i32)> = members;
            struct InOrder<'a>(&'a [(String, i32)]);
            impl Serialize for InOrder<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let mut m = s.serialize_map(Some(self.0.len()))?;
                    for (k, v) in self.0 {
                        m.serialize_entry(k, v)?;
                    }
                    m.end()
                }
            }
            assert_plain_serde_json();
            prop_assert_eq!(to_vec(&InOrder(&members)).unwrap(), via_value(&InOrder(&members)).unwrap());
        }
    }
}
