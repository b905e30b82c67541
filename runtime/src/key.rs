//! Idempotency keys: stable encoding of key parts, rendering, digests and payload fingerprints.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::limits::{LimitError, Limits, Unstorable};
use crate::shared::SharedStr;

/// A value that may be part of an idempotency key or a record template.
///
/// A key must render the same on every machine, in every process, in every release: integers, `bool`,
/// `char`, strings and UUIDs do. Floats do not (rounding, `NaN`, `-0.0`) and neither do hash maps
/// (random iteration order), so they are rejected at compile time. Implement it for your own
/// identifiers by writing their stable form:
///
/// ```
/// struct LoanId(u64);
///
/// impl actguard::KeyPart for LoanId {
///     fn write_key_part(&self, out: &mut String) {
///         self.0.write_key_part(out)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of an idempotency key or record: it has no stable encoding",
    label = "used in a `key` or `record` template here",
    note = "a key must render the same on every machine and every run: integers, bool, char, strings and UUIDs do; floats (rounding, NaN, -0.0) and hash maps (random order) do not",
    note = "use a stable identifier instead, or implement `actguard::KeyPart` for your own type"
)]
pub trait KeyPart {
    /// Appends the stable textual form of `self` to `out`.
    fn write_key_part(&self, out: &mut String);
}

macro_rules! key_part_display {
    ($($t:ty),* $(,)?) => {$(
        impl KeyPart for $t {
            fn write_key_part(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

/// Integers in decimal, as `Display` writes them (by `itoa`, without the formatting machinery).
macro_rules! key_part_integer {
    ($($t:ty),* $(,)?) => {$(
        impl KeyPart for $t {
            fn write_key_part(&self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}

key_part_integer!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

key_part_display!(
    bool,
    char,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
    std::num::NonZeroI64,
    uuid::Uuid,
);

impl KeyPart for str {
    fn write_key_part(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeyPart for String {
    fn write_key_part(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeyPart for Cow<'_, str> {
    fn write_key_part(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_key_part(&self, out: &mut String) {
        (**self).write_key_part(out)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &mut T {
    fn write_key_part(&self, out: &mut String) {
        (**self).write_key_part(out)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    fn write_key_part(&self, out: &mut String) {
        (**self).write_key_part(out)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Arc<T> {
    fn write_key_part(&self, out: &mut String) {
        (**self).write_key_part(out)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Rc<T> {
    fn write_key_part(&self, out: &mut String) {
        (**self).write_key_part(out)
    }
}

/// A rendered key or record: the readable text and the digest the store uses.
///
/// The text is injective too: two different tuples of parts never render the same text. A template
/// with one part renders it as it is (the literal text around it is fixed). In a template with two
/// or more parts, each part's text has `%` and every character of the literal text between parts
/// percent-encoded (`%25`, `%3A`, …: `%` and the uppercase hex of each UTF-8 byte), so a separator in
/// a part cannot be taken for the template's own: with `key = "pay:{a}:{b}"`, `a = "x:y", b = "z"`
/// renders `pay:x%3Ay:z` and `a = "x", b = "y:z"` renders `pay:x:y%3Az`. A part without those
/// characters renders as it is. The template itself must have literal text between any two parts
/// (`{a}{b}` does not compile), and that text may not begin with `%`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderedKey {
    /// The template with every part substituted (escaped as above), e.g. `disburse:L-17:3`.
    pub text: SharedStr,
    /// `sha256(action name ‖ parts)`, hex; parts are length-prefixed so `"a:b"+"c"` and `"a"+"b:c"` differ.
    /// It hashes the parts as they are, not escaped: the store keys on it, and it is the digest
    /// earlier releases computed. Empty for a record (rendered with [`KeyBuilder::record`]): only a
    /// key's digest is used.
    pub digest: SharedStr,
}

thread_local! {
    /// The text buffer of the last finished [`KeyBuilder`] of this thread, reused by the next one: a
    /// rendered key then costs one allocation (its shared text) instead of a growing `String`.
    static TEXT_BUFFER: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

/// Renders a key template segment by segment; the attribute generates the calls: for a template
/// with two or more parts, [`escaping`](Self::escaping) first, with the characters to escape in
/// parts (see [`RenderedKey`]).
#[doc(hidden)]
pub struct KeyBuilder {
    text: String,
    /// What the digest hashes, collected and hashed at once in `finish` (one pass of SHA-256 over
    /// contiguous bytes rather than many small updates). `None` for a record: its digest is never used.
    hashed: Option<Vec<u8>>,
    /// The characters percent-encoded in parts (`%` and the template's separators); empty: none.
    escape: &'static str,
}

thread_local! {
    /// The digest input buffer of the last finished [`KeyBuilder`] of this thread.
    static HASHED_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl KeyBuilder {
    /// Starts a key of `action`.
    pub fn new(action: &str) -> Self {
        let mut hashed = HASHED_BUFFER.take();
        hashed.extend_from_slice(b"actguard-key-v1\0");
        hashed.extend_from_slice(&(action.len() as u64).to_be_bytes());
        hashed.extend_from_slice(action.as_bytes());
        KeyBuilder {
            text: TEXT_BUFFER.take(),
            hashed: Some(hashed),
            escape: "",
        }
    }

    /// Starts a record of `action`: its text only (the digest of a record is never used; it is empty).
    pub fn record(_action: &str) -> Self {
        KeyBuilder {
            text: TEXT_BUFFER.take(),
            hashed: None,
            escape: "",
        }
    }

    /// Percent-encodes the characters of `set` in the parts that follow (`set` holds `%` and every
    /// character of the template's literal text between parts; the attribute computes it).
    pub fn escaping(&mut self, set: &'static str) -> &mut Self {
        self.escape = set;
        self
    }

    /// A literal segment of the template.
    pub fn literal(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        if let Some(hashed) = &mut self.hashed {
            segment(hashed, b'L', s);
        }
        self
    }

    /// A `{expr}` segment of the template. The digest takes its text as it is; the rendered text,
    /// escaped.
    pub fn part<P: KeyPart + ?Sized>(&mut self, part: &P) -> &mut Self {
        let start = self.text.len();
        part.write_key_part(&mut self.text);
        if let Some(hashed) = &mut self.hashed {
            segment(hashed, b'P', &self.text[start..]);
        }
        if !self.escape.is_empty() {
            escape_from(&mut self.text, start, self.escape);
        }
        self
    }

    /// The rendered text and digest.
    pub fn finish(&mut self) -> RenderedKey {
        let digest = match self.hashed.take() {
            Some(mut hashed) => {
                let digest = Sha256::digest(&hashed);
                hashed.clear();
                HASHED_BUFFER.set(hashed);
                SharedStr::from(hex_str(&digest.into(), &mut [0; 64]))
            }
            None => SharedStr::default(),
        };
        let mut text = std::mem::take(&mut self.text);
        let rendered = RenderedKey {
            text: SharedStr::from(text.as_str()),
            digest,
        };
        text.clear();
        TEXT_BUFFER.set(text);
        rendered
    }
}

/// Percent-encodes the characters of `set` in `text[start..]`, in place. A part without any (most) is
/// scanned once and left as it is, without allocating.
fn escape_from(text: &mut String, start: usize, set: &str) {
    let first = if set.is_ascii() {
        // An ASCII byte is never inside a multi-byte character: a byte scan finds the characters.
        let set = set.as_bytes();
        text.as_bytes()[start..]
            .iter()
            .position(|b| set.contains(b))
    } else {
        text[start..].find(|c: char| set.contains(c))
    };
    let Some(first) = first else { return };
    let tail = text.split_off(start + first);
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in tail.chars() {
        if set.contains(c) {
            for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                text.push('%');
                text.push(char::from(HEX[usize::from(b >> 4)]));
                text.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        } else {
            text.push(c);
        }
    }
}

/// One segment of the digest's input: its kind (`L`iteral or `P`art), its length, its bytes.
fn segment(hashed: &mut Vec<u8>, kind: u8, s: &str) {
    let mut head = [kind, 0, 0, 0, 0, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(s.len() as u64).to_be_bytes());
    hashed.extend_from_slice(&head);
    hashed.extend_from_slice(s.as_bytes());
}

/// The payload of one call: every parameter that is neither the run nor a `#[dep]`, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// `{"param":value,...}` as canonical JSON.
    pub json: PayloadJson,
    /// SHA-256 of the canonical JSON, hex.
    pub fingerprint: SharedStr,
}

impl Payload {
    /// A payload from a JSON value; the fingerprint is computed over its canonical form.
    pub fn new(value: serde_json::Value) -> Self {
        Self::of_canonical(&canonical_bytes(&value))
    }

    /// The payload whose canonical JSON is `bytes`.
    fn of_canonical(bytes: &[u8]) -> Self {
        let fingerprint = SharedStr::from(hex_str(&Sha256::digest(bytes).into(), &mut [0; 64]));
        let text = std::str::from_utf8(bytes).expect("canonical JSON is UTF-8");
        Payload {
            json: PayloadJson(SharedStr::from(text)),
            fingerprint,
        }
    }
}

/// A payload as [canonical JSON](crate::canonical): compact, with the keys of every object in sorted
/// (byte) order, the same whatever features `serde_json` is built with. These are the bytes the
/// fingerprint hashes and the text stores keep; cheap to clone. Floats read back exactly
/// (`serde_json`'s `float_roundtrip`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PayloadJson(SharedStr);

impl PayloadJson {
    /// The canonical JSON of `value`.
    pub fn new(value: &serde_json::Value) -> Self {
        let bytes = canonical_bytes(value);
        PayloadJson(SharedStr::from(
            std::str::from_utf8(&bytes).expect("canonical JSON is UTF-8"),
        ))
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload as a JSON value.
    pub fn value(&self) -> serde_json::Value {
        // Read back as deep as a store reads (a payload stored by an earlier release may nest deeper
        // than `serde_json` reads by default).
        match crate::limits::read_json(&self.0) {
            Ok(value) => value,
            Err(e) => panic!("a PayloadJson holds JSON that serde_json wrote: {e:?}"),
        }
    }
}

impl From<serde_json::Value> for PayloadJson {
    fn from(value: serde_json::Value) -> Self {
        PayloadJson::new(&value)
    }
}

impl From<&serde_json::Value> for PayloadJson {
    fn from(value: &serde_json::Value) -> Self {
        PayloadJson::new(value)
    }
}

impl std::fmt::Display for PayloadJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serialized as the JSON value it holds.
impl Serialize for PayloadJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for PayloadJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(|v| PayloadJson::new(&v))
    }
}

/// The canonical JSON of `value`: objects with sorted keys whatever the order of its maps (a
/// `preserve_order` build keeps insertion order), numbers as a plain build writes them.
fn canonical_bytes(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    canonical::write_value(&mut out, value);
    out
}

thread_local! {
    /// The buffer of the last finished [`PayloadBuilder`] of this thread, reused by the next one.
    static PAYLOAD_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Collects the payload parameters of a call; the attribute generates the calls, in sorted order of
/// the parameters' names, so the canonical JSON is written as the fields come (in any other order it
/// is sorted once, at the end). Each value is written straight into the buffer, without building a
/// `serde_json::Value`, and checked against the [limits](crate::limits) as it is written: a
/// parameter nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), a payload larger than
/// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES) or a non-finite float is refused.
#[doc(hidden)]
#[derive(Default)]
pub struct PayloadBuilder {
    /// `{"name":value,"name":value` so far (empty before the first field).
    buf: Vec<u8>,
    /// Where the last field's name is in `buf`, without its quotes.
    last_name: Option<std::ops::Range<usize>>,
    /// The fields did not come in sorted order, or a name needed escaping: sort at the end.
    unsorted: bool,
}

impl PayloadBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one parameter.
    pub fn field<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, PayloadError> {
        if self.buf.is_empty() {
            self.buf = PAYLOAD_BUFFER.take();
            self.buf.push(b'{');
        } else {
            self.buf.push(b',');
        }
        let start = self.buf.len();
        canonical::write_str(&mut self.buf, name);
        // Names compare as they are (the canonical order), not as written: the name without its
        // quotes. One that was escaped (longer once written) is sorted at the end.
        let name_at = start + 1..self.buf.len() - 1;
        let escaped = name_at.len() != name.len();
        let after_last = match self.last_name.take() {
            Some(last) => self.buf[last] < *name.as_bytes(),
            None => true,
        };
        if escaped || !after_last {
            self.unsorted = true;
        }
        self.last_name = Some(name_at);
        self.buf.push(b':');
        // The whole payload counts, and its closing brace.
        let limits = Limits {
            max_bytes: Limits::PAYLOAD.max_bytes - 1,
            ..Limits::PAYLOAD
        };
        let what = || format!("the payload parameter `{name}`");
        match canonical::write_limited(&mut self.buf, value, limits, name, what) {
            Ok(()) => Ok(self),
            Err(Unstorable::Serialize(e)) => Err(PayloadError::Serialize(e)),
            // Too large is the payload's, not the parameter's.
            Err(Unstorable::Refused(LimitError::TooLarge { kind, max, .. })) => {
                Err(PayloadError::Refused(LimitError::TooLarge {
                    what: "the payload".to_owned(),
                    kind,
                    max: max + 1,
                }))
            }
            Err(Unstorable::Refused(e)) => Err(PayloadError::Refused(e)),
        }
    }

    /// The payload and its fingerprint.
    pub fn finish(&mut self) -> Payload {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            buf.push(b'{');
        }
        buf.push(b'}');
        let payload = if std::mem::take(&mut self.unsorted) {
            let value: serde_json::Value =
                serde_json::from_slice(&buf).expect("the builder wrote this JSON");
            Payload::new(value)
        } else {
            Payload::of_canonical(&buf)
        };
        self.last_name = None;
        buf.clear();
        // A large payload does not pin its buffer to the thread.
        if buf.capacity() <= 16 * 1024 {
            PAYLOAD_BUFFER.set(buf);
        }
        payload
    }
}

/// Why a payload was not built: a parameter does not serialize, or the payload is beyond the
/// [limits](crate::limits).
#[doc(hidden)]
#[derive(Debug)]
pub enum PayloadError {
    Serialize(serde_json::Error),
    Refused(LimitError),
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Serialize(e) => e.fmt(f),
            PayloadError::Refused(e) => e.fmt(f),
        }
    }
}

/// A JSON value's fingerprint: SHA-256 (hex) of its canonical serialization.
pub fn fingerprint(value: &serde_json::Value) -> String {
    hex_lower(&Sha256::digest(canonical_bytes(value)))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Lowercase hex of a digest, written into `out` (no allocation: digests are hashed and encoded
/// several times per guarded call).
pub(crate) fn hex_str<'a>(digest: &[u8; 32], out: &'a mut [u8; 64]) -> &'a str {
    hex::encode_to_slice(digest, out).expect("64 characters hold 32 bytes");
    std::str::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed_in_the_digest() {
        let a = KeyBuilder::new("act")
            .part("a:b")
            .literal(":")
            .part("c")
            .finish();
        let b = KeyBuilder::new("act")
            .part("a")
            .literal(":")
            .part("b:c")
            .finish();
        assert_eq!(a.text, b.text);
        assert_ne!(a.digest, b.digest);
    }

    /// What the attribute generates for a template of literals and parts, `sep[i]` between parts
    /// `i` and `i + 1`: the escape set is `%` and the separators' characters.
    fn render(prefix: &str, parts: &[&str], seps: &[&str], suffix: &str) -> RenderedKey {
        let mut set = String::from("%");
        for c in seps.concat().chars() {
            if !set.contains(c) {
                set.push(c);
            }
        }
        let set: &'static str = Box::leak(set.into_boxed_str());
        let mut b = KeyBuilder::new("act");
        if parts.len() > 1 {
            b.escaping(set);
        }
        if !prefix.is_empty() {
            b.literal(prefix);
        }
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                b.literal(seps[i - 1]);
            }
            b.part(*part);
        }
        if !suffix.is_empty() {
            b.literal(suffix);
        }
        b.finish()
    }

    #[test]
    fn parts_escape_the_separators_and_percent_of_their_template() {
        let pay = |a, b| render("pay:", &[a, b], &[":"], "").text;
        assert_eq!(pay("x:y", "z"), "pay:x%3Ay:z");
        assert_eq!(pay("x", "y:z"), "pay:x:y%3Az");
        assert_eq!(pay("", ":"), "pay::%3A");
        assert_eq!(pay(":", ""), "pay:%3A:");
        assert_eq!(pay("50%", "é"), "pay:50%25:é");
        assert_eq!(pay("L-17", "3"), "pay:L-17:3");
        // A multi-byte separator: each of its UTF-8 bytes.
        assert_eq!(render("", &["a→b", "c"], &["→"], "").text, "a%E2%86%92b→c");
        // One part: rendered as it is, whatever it holds.
        assert_eq!(
            KeyBuilder::new("act")
                .literal("k:")
                .part("a:b%")
                .finish()
                .text,
            "k:a:b%"
        );
        // The digest hashes the parts unescaped: the digest of every release.
        let escaped = render("pay:", &["x:y", "z"], &[":"], "");
        let plain = KeyBuilder::new("act")
            .literal("pay:")
            .part("x:y")
            .literal(":")
            .part("z")
            .finish();
        assert_eq!(escaped.digest, plain.digest);
        assert_ne!(escaped.text, plain.text);
    }

    proptest::proptest! {
        /// Templates of two or three parts with any separators (not beginning with `%`), parts of any
        /// text: two different tuples never render the same text, nor the same digest; a part
        /// without a separator character or `%` renders as it is.
        #[test]
        fn rendering_is_injective(
            prefix in "[a-z:%]{0,3}",
            seps in proptest::collection::vec("[:/\\-|3A→é ]([:%/3A→]{0,2})", 2),
            suffix in "[a-z:%]{0,3}",
            n in 2usize..=3,
            a in proptest::collection::vec("([:/%3A→é a-z]|\\PC){0,6}", 3),
            b in proptest::collection::vec("([:/%3A→é a-z]|\\PC){0,6}", 3),
        ) {
            let seps: Vec<&str> = seps.iter().map(String::as_str).collect();
            let seps = &seps[..n - 1];
            let a: Vec<&str> = a[..n].iter().map(String::as_str).collect();
            let b: Vec<&str> = b[..n].iter().map(String::as_str).collect();
            let (ka, kb) = (render(&prefix, &a, seps, &suffix), render(&prefix, &b, seps, &suffix));
            proptest::prop_assert_eq!(a == b, ka.text == kb.text, "{:?} {:?} {:?}", a, b, ka.text);
            proptest::prop_assert_eq!(a == b, ka.digest == kb.digest);
            // A separator moved across the boundary of two parts.
            let left = format!("{}{}{}", a[0], seps[0], a[1]);
            let right = format!("{}{}{}", a[1], seps[0], a[0]);
            let mut shifted = a.clone();
            shifted[0] = &left;
            let mut other = a.clone();
            other[1] = &right;
            let (ks, ko) = (render(&prefix, &shifted, seps, &suffix), render(&prefix, &other, seps, &suffix));
            proptest::prop_assert_ne!(&ks.text, &ka.text);
            proptest::prop_assert_ne!(&ko.text, &ka.text);
            proptest::prop_assert_eq!(shifted == other, ks.text == ko.text);
            // Parts without `%` or a separator character render unescaped.
            let set: String = seps.concat();
            if a.iter().all(|p| !p.contains('%') && !p.contains(|c| set.contains(c))) {
                let plain = format!("{prefix}{}{suffix}", (0..n).map(|i| {
                    if i == 0 { a[0].to_owned() } else { format!("{}{}", seps[i - 1], a[i]) }
                }).collect::<String>());
                proptest::prop_assert_eq!(ka.text.as_str(), plain.as_str());
            }
        }

    }

    /// Every string of up to `len` characters of `alphabet`.
    fn strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Exhaustively, over parts made of separator characters, `%` and hex digits (what escapes are
    /// made of): no two tuples render the same text. Random tuples rarely meet a collision; every
    /// short tuple does, if there is one (a separator beginning with `%` has one, which is why the
    /// attribute refuses it).
    #[test]
    fn no_two_short_tuples_render_the_same_text() {
        fn distinct(parts: usize, len: usize, seps: &[&str]) -> Result<(), String> {
            let alphabet = [':', '%', '2', '5'];
            let texts = strings(&alphabet, len);
            let mut seen = std::collections::HashMap::new();
            let mut tuple = vec![0usize; parts];
            loop {
                let parts_now: Vec<&str> = tuple.iter().map(|&i| texts[i].as_str()).collect();
                let text = render("p", &parts_now, seps, "s").text.to_string();
                if let Some(other) = seen.insert(text.clone(), parts_now.join("|")) {
                    return Err(format!(
                        "{other} and {} both render {text}",
                        parts_now.join("|")
                    ));
                }
                let mut i = 0;
                loop {
                    if i == parts {
                        return Ok(());
                    }
                    tuple[i] += 1;
                    if tuple[i] < texts.len() {
                        break;
                    }
                    tuple[i] = 0;
                    i += 1;
                }
            }
        }
        for sep in [":", "::", ":%", "2", "5:"] {
            distinct(2, 3, &[sep, sep]).unwrap();
            distinct(3, 2, &[sep, ":"]).unwrap();
        }
        // What the attribute refuses: a separator beginning with `%`.
        assert!(distinct(2, 3, &["%", "%"]).is_err());
    }

    #[test]
    fn a_record_renders_the_text_of_a_key_without_its_digest() {
        let key = KeyBuilder::new("act").literal("r:").part(&7u32).finish();
        let record = KeyBuilder::record("act").literal("r:").part(&7u32).finish();
        assert_eq!(record.text, key.text);
        assert_eq!(record.digest, "");
        assert_eq!(key.digest.len(), 64);
        // The reused text buffer starts empty for the next key.
        assert_eq!(KeyBuilder::new("act").literal("x").finish().text, "x");
    }

    /// The digest's input, spelled out: stored keys keep their digests across releases.
    #[test]
    fn the_digest_is_the_sha256_of_the_action_and_length_prefixed_segments() {
        let key = KeyBuilder::new("disburse")
            .literal("loan:")
            .part(&17u64)
            .literal(":")
            .part("é\"x")
            .finish();
        let mut h = Sha256::new();
        h.update(b"actguard-key-v1\0");
        h.update(8u64.to_be_bytes());
        h.update(b"disburse");
        for (kind, s) in [(b"L", "loan:"), (b"P", "17"), (b"L", ":"), (b"P", "é\"x")] {
            h.update(kind);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        assert_eq!(key.digest, hex::encode(h.finalize()));
        assert_eq!(key.text, "loan:17:é\"x");
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        fn same<T: KeyPart + std::fmt::Display>(values: &[T]) {
            for v in values {
                let mut out = String::new();
                v.write_key_part(&mut out);
                assert_eq!(out, v.to_string());
            }
        }
        same(&[0u8, 7, u8::MAX]);
        same(&[0u64, 10, 1_000_000, u64::MAX]);
        same(&[i64::MIN, -1, 0, i64::MAX]);
        same(&[i128::MIN, u64::MAX as i128 + 1, i128::MAX]);
        same(&[u128::MAX]);
        same(&[usize::MAX]);
        same(&[isize::MIN, i32::MIN as isize]);
        same(&[i8::MIN, i16::MIN as i8]);
        same(&[u16::MAX]);
        same(&[u32::MAX]);
        same(&[i16::MIN]);
        same(&[i32::MIN]);
    }

    #[test]
    fn the_action_name_is_part_of_the_digest() {
        let a = KeyBuilder::new("one").literal("k").finish();
        let b = KeyBuilder::new("two").literal("k").finish();
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn hex_lower_matches_hex_encode() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
        assert_eq!(hex_lower(&[]), "");
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        assert_eq!(hex_lower(&digest), hex::encode(digest));
        assert_eq!(hex_str(&digest, &mut [0; 64]), hex::encode(digest));
    }

    #[test]
    fn fingerprint_is_the_sha256_of_the_canonical_bytes() {
        let v = serde_json::json!({"b": [1, 2.5, "x\"y"], "a": {"d": null, "c": true}});
        let bytes = br#"{"a":{"c":true,"d":null},"b":[1,2.5,"x\"y"]}"#;
        assert_eq!(fingerprint(&v), hex::encode(Sha256::digest(bytes)));
    }

    #[test]
    fn a_payload_reads_back_the_very_same_value_floats_included() {
        for (v, text) in [
            (
                serde_json::json!({"id": 7, "n": -3, "big": u64::MAX, "s": "x\"é\u{1}", "l": [null, true]}),
                r#"{"big":18446744073709551615,"id":7,"l":[null,true],"n":-3,"s":"x\"é\u0001"}"#,
            ),
            (
                serde_json::json!({"amount": 0.1, "nested": [{"x": 1e300, "y": -2.5e-308}], "z": 1.0}),
                r#"{"amount":0.1,"nested":[{"x":1e+300,"y":-2.5e-308}],"z":1.0}"#,
            ),
        ] {
            let json = PayloadJson::new(&v);
            assert_eq!(json.as_str(), text);
            assert_eq!(json.value(), v);
            // Serialized as the value it holds, and read back canonical.
            assert_eq!(serde_json::to_value(&json).unwrap(), v);
            let back: PayloadJson =
                serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
            assert_eq!(back, json);
        }
    }

    #[derive(Serialize)]
    struct Transfer {
        to: &'static str,
        amount: u64,
        memo: Option<&'static str>,
    }

    /// The builder writes the canonical JSON as fields come, whatever their order, and its bytes are
    /// those of the sorted `serde_json::Value` (so fingerprints are unchanged).
    #[test]
    fn the_builder_writes_the_canonical_json_of_its_fields_in_any_order() {
        let t = Transfer {
            to: "A-\"1\"",
            amount: 250,
            memo: None,
        };
        let expected = serde_json::json!({"account": "A-1", "n": 3, "t": t, "zeta": [1.5, "é"]});
        let fields: [(&str, serde_json::Value); 4] = [
            ("account", serde_json::json!("A-1")),
            ("n", serde_json::json!(3)),
            ("t", serde_json::to_value(&t).unwrap()),
            ("zeta", serde_json::json!([1.5, "é"])),
        ];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [0, 2, 1, 3]] {
            let mut b = PayloadBuilder::new();
            for i in order {
                b.field(fields[i].0, &fields[i].1).unwrap();
            }
            let payload = b.finish();
            assert_eq!(payload, Payload::new(expected.clone()), "order {order:?}");
            assert_eq!(
                payload.json.as_str(),
                r#"{"account":"A-1","n":3,"t":{"amount":250,"memo":null,"to":"A-\"1\""},"zeta":[1.5,"é"]}"#
            );
            assert_eq!(payload.fingerprint, fingerprint(&expected));
        }
        // A name that sorts after another only once quoted (`"a!"` after `"a"`), and one to escape.
        for names in [["a!", "a"], ["a", "a!"], ["b\"", "a"], ["a", "b\n"]] {
            let mut b = PayloadBuilder::new();
            for n in names {
                b.field(n, &1).unwrap();
            }
            let expected = serde_json::json!({names[0]: 1, names[1]: 1});
            assert_eq!(b.finish(), Payload::new(expected), "{names:?}");
        }
        // No field: the empty object. The reused buffer starts empty for the next payload.
        assert_eq!(PayloadBuilder::new().finish().json.as_str(), "{}");
        let one = PayloadBuilder::new().field("x", &1).unwrap().finish();
        assert_eq!(one.json.as_str(), r#"{"x":1}"#);
    }

    #[derive(Serialize)]
    struct Nested {
        zulu: f32,
        transfer: Transfer,
        alpha: std::collections::HashMap<i32, &'static str>,
    }

    /// A typed value is written directly, with the bytes its `serde_json::Value` had: struct fields
    /// sorted, an f32 widened, integer keys as strings.
    #[test]
    fn the_builder_writes_a_typed_value_as_its_json_value() {
        let nested = Nested {
            zulu: 0.1,
            transfer: Transfer {
                to: "B",
                amount: 1,
                memo: Some("m"),
            },
            alpha: [(10, "ten"), (-1, "minus one"), (2, "two")]
                .into_iter()
                .collect(),
        };
        let typed = PayloadBuilder::new()
            .field("nested", &nested)
            .unwrap()
            .finish();
        assert_eq!(
            typed.json.as_str(),
            r#"{"nested":{"alpha":{"-1":"minus one","10":"ten","2":"two"},"transfer":{"amount":1,"memo":"m","to":"B"},"zulu":0.10000000149011612}}"#
        );
        let via_value = serde_json::json!({ "nested": serde_json::to_value(&nested).unwrap() });
        assert_eq!(typed, Payload::new(via_value));
        // A value that cannot be written (a 128-bit integer beyond 64 bits) is an error.
        assert!(PayloadBuilder::new().field("n", &u128::MAX).is_err());
    }

    #[test]
    fn fingerprint_ignores_field_insertion_order() {
        let a = PayloadBuilder::new()
            .field("x", &1)
            .unwrap()
            .field("y", &2)
            .unwrap()
            .finish();
        let b = PayloadBuilder::new()
            .field("y", &2)
            .unwrap()
            .field("x", &1)
            .unwrap()
            .finish();
        assert_eq!(a.fingerprint, b.fingerprint);
    }
}
