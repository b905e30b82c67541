//! The action log: one entry per attempt and per skip, chained by SHA-256 so any edit, deletion or
//! reordering is detected by [`verify_chain`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical;
use crate::key::{hex_lower, hex_str};
use crate::policy::{FailureKind, Route};
use crate::shared::SharedStr;
use crate::store::Millis;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The head of the action log: the last entry's sequence number and hash, written `SEQ:HASH`. Kept
/// outside the store, it detects what the chain alone cannot: entries deleted from the end of the
/// log, or the whole chain rewritten from some entry on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogHead {
    /// The entry's sequence number (1 for the first).
    pub seq: u64,
    /// The entry's hash (hex).
    pub hash: String,
}

impl std::fmt::Display for LogHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for LogHead {
    type Err = String;

    /// Parses `SEQ:HASH`: a sequence number from 1 and a 64-digit hex hash.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a log head: expected SEQ:HASH, as `verify` prints it");
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.trim().parse().map_err(|_| bad())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(LogHead { seq, hash })
    }
}

impl Serialize for LogHead {
    /// As its text, `SEQ:HASH`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogHead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl LogHead {
    /// The head of the log that ends at `entry`.
    pub fn of(entry: &LogEntry) -> LogHead {
        LogHead {
            seq: entry.seq,
            hash: entry.hash.to_string(),
        }
    }
}

/// What happened in one logged step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The body succeeded; the result is stored.
    Succeeded,
    /// The key had completed before: the stored result was returned without acting.
    Replayed,
    /// The loop filter skipped the call: (record, action) acted within the dedup window.
    Skipped,
    /// The attempt failed and will be retried.
    Retrying,
    /// The failure was routed to a review queue (owner or expert).
    Routed,
    /// Retries exhausted (or routed there): in the dead-letter queue.
    DeadLettered,
    /// A security failure halted the run.
    Halted,
    /// A compensating action reversed an earlier entry.
    Compensated,
    /// An operator acted on a queue entry (resolve, discard, replay).
    Operator,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 9] = [
        Outcome::Succeeded,
        Outcome::Replayed,
        Outcome::Skipped,
        Outcome::Retrying,
        Outcome::Routed,
        Outcome::DeadLettered,
        Outcome::Halted,
        Outcome::Compensated,
        Outcome::Operator,
    ];

    /// The outcome spelled `s` ([`as_str`](Self::as_str)), if any.
    pub fn parse(s: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The spelling used in the log and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Replayed => "replayed",
            Outcome::Skipped => "skipped",
            Outcome::Retrying => "retrying",
            Outcome::Routed => "routed",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Halted => "halted",
            Outcome::Compensated => "compensated",
            Outcome::Operator => "operator",
        }
    }
}

/// A log entry before the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLogEntry {
    /// When the step ended.
    pub at_ms: Millis,
    pub run_id: Uuid,
    pub action: SharedStr,
    pub record: SharedStr,
    /// Readable rendered key.
    pub key_text: SharedStr,
    /// Key digest (the claim's identity).
    pub key_digest: SharedStr,
    /// 1 for the first attempt; 0 for entries that are not attempts (skip, replay, operator).
    pub attempt: u32,
    /// Whether this attempt is a retry (attempt > 1, or a takeover of a dead worker's claim).
    pub retry: bool,
    pub outcome: Outcome,
    pub failure_kind: Option<FailureKind>,
    /// Where the failure went.
    pub route: Option<Route>,
    /// The failure message, or a note (skip reason, operator note).
    pub message: Option<String>,
    /// The queue entry created or acted on, if any (filled in by the store on `fail`).
    pub queue_entry: Option<u64>,
    /// State before the write, as captured by `run.attempt().before(..)`. A state of JSON `null` is
    /// no state: it is hashed and stored as `None` is, and the guard logs it as `None`.
    pub before: Option<serde_json::Value>,
    /// State after the write (default: the result; `None` for a result of JSON `null`).
    pub after: Option<serde_json::Value>,
    pub fencing_token: Option<u64>,
    pub duration_ms: u64,
}

/// An entry of the action log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    #[serde(flatten)]
    pub entry: NewLogEntry,
    /// Hash of the previous entry ([`GENESIS_HASH`] for the first).
    pub prev_hash: SharedStr,
    /// `sha256(prev_hash ‖ canonical JSON of seq and entry)`, hex.
    pub hash: SharedStr,
}

impl LogEntry {
    /// Gives `entry` its place after `prev` (or first, if `None`).
    pub fn chain(prev: Option<&LogEntry>, entry: NewLogEntry) -> LogEntry {
        let (seq, prev_hash) = match prev {
            Some(p) => (p.seq + 1, p.hash.clone()),
            None => (1, SharedStr::from_static(GENESIS_HASH)),
        };
        Self::chain_after(seq, prev_hash, entry)
    }

    /// Gives `entry` sequence `seq` after an entry whose hash is `prev_hash`.
    pub fn chain_after(seq: u64, prev_hash: impl Into<SharedStr>, entry: NewLogEntry) -> LogEntry {
        let prev_hash = prev_hash.into();
        let hash = SharedStr::from(hex_str(
            &entry_hash_bytes(seq, &prev_hash, &entry),
            &mut [0; 64],
        ));
        LogEntry {
            seq,
            entry,
            prev_hash,
            hash,
        }
    }
}

/// The hash of an entry: `sha256(prev_hash ‖ 0 ‖ seq ‖ canonical JSON of the entry)`.
///
/// The canonical JSON is the entry as a JSON object with its keys sorted and no whitespace, as
/// [`canonical`] writes it (the bytes a plain `serde_json` build writes for the
/// entry's `serde_json::Value`). It is written field by field in sorted order, without building the
/// value, and is the same whatever features `serde_json` is built with, also after a round trip
/// through JSON.
pub fn entry_hash(seq: u64, prev_hash: &str, entry: &NewLogEntry) -> String {
    hex_lower(&entry_hash_bytes(seq, prev_hash, entry))
}

thread_local! {
    /// The canonical JSON of the last entry hashed on this thread: its buffer is reused.
    static CANONICAL: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// [`entry_hash`], as bytes. The link's whole input (`prev_hash ‖ 0 ‖ seq ‖ canonical JSON`) is
/// written into a reused buffer and hashed in one pass.
fn entry_hash_bytes(seq: u64, prev_hash: &str, entry: &NewLogEntry) -> [u8; 32] {
    let mut buf = CANONICAL.take();
    buf.clear();
    buf.extend_from_slice(prev_hash.as_bytes());
    buf.push(0);
    buf.extend_from_slice(&seq.to_be_bytes());
    canonical_entry(&mut buf, entry).expect("a log entry always serializes");
    let digest = Sha256::digest(&buf).into();
    // An entry with a large before/after state does not pin its buffer to the thread.
    if buf.capacity() <= 16 * 1024 {
        CANONICAL.set(buf);
    }
    digest
}

/// The chain link: `sha256(prev_hash ‖ 0 ‖ seq ‖ canonical)`.
fn link(seq: u64, prev_hash: &str, canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update([0u8]);
    h.update(seq.to_be_bytes());
    h.update(canonical);
    h.finalize().into()
}

/// The canonical JSON of `entry`: the bytes [`entry_hash`] hashes after the sequence number. A store
/// can build it away from the thread that links entries, then link with [`entry_hash_canonical`].
pub fn canonical_json(entry: &NewLogEntry) -> String {
    let mut out = Vec::with_capacity(512);
    canonical_entry(&mut out, entry).expect("a log entry always serializes");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// [`entry_hash`] of an entry given its [`canonical_json`]: the same hash, without serializing again.
pub fn entry_hash_canonical(seq: u64, prev_hash: &str, canonical: &[u8]) -> String {
    hex_lower(&link(seq, prev_hash, canonical))
}

/// Writes `entry` as [canonical JSON](crate::canonical): an object whose keys are in sorted (byte)
/// order, compact. Keep the fields below sorted and complete: a test compares the bytes with those of
/// the entry's `serde_json::Value`. The field names are literals and the scalar fields are written
/// directly, `before` and `after` by [`canonical::write_value`], the other serialized fields by
/// [`canonical::write`]: the bytes are the same whatever features `serde_json` is built with.
fn canonical_entry(w: &mut Vec<u8>, e: &NewLogEntry) -> serde_json::Result<()> {
    /// `,"name":` (or `{"name":` for the first field), one literal per field.
    macro_rules! name {
        (first $name:literal) => {
            w.extend_from_slice(concat!("{\"", $name, "\":").as_bytes())
        };
        ($name:literal) => {
            w.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
        };
    }
    /// An optional field written as canonical JSON (`null` written directly).
    macro_rules! field {
        ($name:literal, $value:expr) => {{
            name!($name);
            match $value {
                Some(v) => canonical::write(w, v)?,
                None => w.extend_from_slice(b"null"),
            }
        }};
    }
    /// An optional JSON value field.
    macro_rules! value {
        ($name:literal, $value:expr) => {{
            name!($name);
            match $value {
                Some(v) => canonical::write_value(w, v),
                None => w.extend_from_slice(b"null"),
            }
        }};
    }
    /// A string field.
    macro_rules! text {
        ($name:literal, $value:expr) => {{
            name!($name);
            canonical::write_str(w, $value);
        }};
    }
    /// An optional integer field: `null` or its digits.
    fn int<I: itoa::Integer + TryInto<u8>>(w: &mut Vec<u8>, value: Option<I>) {
        match value.map(|i| (i.try_into(), i)) {
            // One digit (attempts, tokens, short durations): no formatting.
            Some((Ok(d), _)) if d < 10 => w.push(b'0' + d),
            Some((_, i)) => w.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            None => w.extend_from_slice(b"null"),
        }
    }
    name!(first "action");
    canonical::write_str(w, &e.action);
    value!("after", &e.after);
    name!("at_ms");
    int(w, Some(e.at_ms));
    name!("attempt");
    int(w, Some(e.attempt));
    value!("before", &e.before);
    name!("duration_ms");
    int(w, Some(e.duration_ms));
    field!("failure_kind", &e.failure_kind);
    name!("fencing_token");
    int(w, e.fencing_token);
    text!("key_digest", &e.key_digest);
    text!("key_text", &e.key_text);
    name!("message");
    match &e.message {
        Some(m) => canonical::write_str(w, m),
        None => w.extend_from_slice(b"null"),
    }
    text!("outcome", e.outcome.as_str());
    name!("queue_entry");
    int(w, e.queue_entry);
    text!("record", &e.record);
    name!("retry");
    w.extend_from_slice(if e.retry { b"true" } else { b"false" });
    field!("route", &e.route);
    text!(
        "run_id",
        e.run_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
    );
    w.push(b'}');
    Ok(())
}

/// Why the chain does not verify, at the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An entry's content does not match its hash: it was edited.
    #[error("log entry {seq} was modified: its hash does not match its content")]
    Modified { seq: u64 },
    /// An entry does not link to the one before it: entries were deleted, inserted or reordered.
    #[error(
        "log entry {seq} does not follow entry {prev_seq}: entries were deleted, inserted or reordered"
    )]
    Broken { seq: u64, prev_seq: u64 },
    /// A gap or repeat in the sequence numbers.
    #[error("log sequence jumps from {prev_seq} to {seq}: entries were deleted or reordered")]
    Sequence { seq: u64, prev_seq: u64 },
}

/// Verifies a whole log (every entry, in order from the first): returns the number of entries checked,
/// or the first bad entry.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a LogEntry>,
) -> Result<u64, ChainError> {
    let mut prev: Option<&LogEntry> = None;
    let mut count = 0;
    for e in entries {
        let expected_seq = prev.map_or(1, |p| p.seq + 1);
        let prev_seq = prev.map_or(0, |p| p.seq);
        if e.seq != expected_seq {
            return Err(ChainError::Sequence {
                seq: e.seq,
                prev_seq,
            });
        }
        let expected_prev = prev.map_or(GENESIS_HASH, |p| p.hash.as_str());
        if e.prev_hash != expected_prev {
            return Err(ChainError::Broken {
                seq: e.seq,
                prev_seq,
            });
        }
        if entry_hash(e.seq, &e.prev_hash, &e.entry) != e.hash {
            return Err(ChainError::Modified { seq: e.seq });
        }
        prev = Some(e);
        count += 1;
    }
    Ok(count)
}

/// A value a store keeps in one of the queryable columns of its log table (copies of entry fields,
/// next to the hashed entry), as read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column<'a> {
    Text(std::borrow::Cow<'a, str>),
    Int(i64),
    /// Anything else the database held (a value of another type, NULL): never what an entry has.
    Other(String),
}

impl std::fmt::Display for Column<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Text(s) => write!(f, "{s:?}"),
            Column::Int(i) => write!(f, "{i}"),
            Column::Other(s) => f.write_str(s),
        }
    }
}

/// The queryable columns of the log tables, in the order of [`expected_columns`].
pub(crate) const QUERY_COLUMNS: [&str; 7] = [
    "run_id",
    "action",
    "record",
    "key_digest",
    "attempt",
    "outcome",
    "at_ms",
];

/// What each of [`QUERY_COLUMNS`] must hold for `e`.
pub(crate) fn expected_columns(e: &NewLogEntry) -> [Column<'_>; 7] {
    use std::borrow::Cow;
    [
        Column::Text(Cow::Owned(e.run_id.to_string())),
        Column::Text(Cow::Borrowed(&e.action)),
        Column::Text(Cow::Borrowed(&e.record)),
        Column::Text(Cow::Borrowed(&e.key_digest)),
        Column::Int(i64::from(e.attempt)),
        Column::Text(Cow::Borrowed(e.outcome.as_str())),
        Column::Int(e.at_ms),
    ]
}

/// Checks a stored row's queryable columns (`stored`, in the order of [`QUERY_COLUMNS`]) against its
/// hashed entry: the first column that disagrees, worded for the operator. A row whose columns
/// disagree was edited outside the store: queries on those columns would select it wrongly. When the
/// entry itself no longer matches its hash (`prev_hash`, `hash` of the row), it is the entry that was
/// edited, and the message says so first.
pub(crate) fn column_mismatch(
    seq: u64,
    e: &NewLogEntry,
    prev_hash: &str,
    hash: &str,
    stored: &[Column<'_>; 7],
) -> Option<String> {
    let expected = expected_columns(e);
    let (name, (s, x)) = QUERY_COLUMNS
        .iter()
        .zip(stored.iter().zip(expected.iter()))
        .find(|(_, (s, x))| s != x)?;
    Some(if entry_hash(seq, prev_hash, e) != hash {
        format!(
            "log entry {seq} was modified: its hash does not match its content (whose `{name}` is \
             {x}, where its column holds {s})"
        )
    } else {
        format!(
            "log entry {seq} was tampered with: its `{name}` column holds {s} but its hashed entry \
             has {x}"
        )
    })
}

/// Which log entries to read. Every filter is optional; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    pub run_id: Option<Uuid>,
    pub action: Option<String>,
    pub record: Option<String>,
    pub outcome: Option<Outcome>,
    /// Entries at or after this time.
    pub from_ms: Option<Millis>,
    /// Entries before this time.
    pub to_ms: Option<Millis>,
    /// Entries with `seq > after_seq` (paging).
    pub after_seq: Option<u64>,
    /// At most this many entries.
    pub limit: Option<usize>,
}

impl LogQuery {
    /// Whether `e` matches every filter but paging (`after_seq`, `limit`).
    pub fn matches(&self, e: &LogEntry) -> bool {
        self.run_id.is_none_or(|r| e.entry.run_id == r)
            && self.action.as_ref().is_none_or(|a| &e.entry.action == a)
            && self.record.as_ref().is_none_or(|r| &e.entry.record == r)
            && self.outcome.is_none_or(|o| e.entry.outcome == o)
            && self.from_ms.is_none_or(|t| e.entry.at_ms >= t)
            && self.to_ms.is_none_or(|t| e.entry.at_ms < t)
            && self.after_seq.is_none_or(|s| e.seq > s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(before: Option<serde_json::Value>, message: Option<&str>) -> NewLogEntry {
        NewLogEntry {
            at_ms: 1_700_000_000_123,
            run_id: Uuid::from_u128(0x0123_4567_89ab_cdef),
            action: "disburse".into(),
            record: "loan \"7\"\n".into(),
            key_text: "disburse:loan-7:1".into(),
            key_digest: "ab".repeat(32).into(),
            attempt: 2,
            retry: true,
            outcome: Outcome::Routed,
            failure_kind: Some(FailureKind::Validation),
            route: Some(Route::RouteOwner),
            message: message.map(str::to_owned),
            queue_entry: Some(3),
            before,
            after: Some(
                serde_json::json!({"z": [1, -2, 2.5, null], "a": {"y": true, "b": "é\u{1}"}}),
            ),
            fencing_token: Some(9),
            duration_ms: 12,
        }
    }

    /// The chain format: the canonical JSON is the entry's `serde_json::Value` (sorted keys), compact.
    fn canonical_via_value(e: &NewLogEntry) -> Vec<u8> {
        let value = serde_json::to_value(e).unwrap();
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn outcome_as_str_is_its_serialized_name() {
        // The canonical entry writes `as_str()` where serde would write the variant's name.
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
    }

    #[test]
    fn canonical_entry_writes_the_bytes_of_the_sorted_json_value() {
        for e in [
            sample(None, None),
            sample(
                Some(serde_json::json!({"b": 1, "a": u64::MAX, "c": i64::MIN})),
                Some("boom \\ \"x\""),
            ),
            NewLogEntry {
                failure_kind: None,
                route: None,
                queue_entry: None,
                after: None,
                fencing_token: None,
                ..sample(Some(serde_json::json!([0.1, 1e300, "s"])), Some(""))
            },
        ] {
            let mut streamed = Vec::new();
            canonical_entry(&mut streamed, &e).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(canonical_via_value(&e)).unwrap()
            );
        }
    }

    /// The chain format, spelled out: these bytes are hashed into every stored log.
    #[test]
    fn canonical_entry_bytes_are_fixed() {
        let e = sample(
            Some(serde_json::json!({"n": 1e21, "m": [-0.0, 0.1], "a": u64::MAX})),
            Some("boom \\ \"x\"\n"),
        );
        let expected = concat!(
            r#"{"action":"disburse","after":{"a":{"b":"é\u0001","y":true},"z":[1,-2,2.5,null]},"#,
            r#""at_ms":1700000000123,"attempt":2,"#,
            r#""before":{"a":18446744073709551615,"m":[-0.0,0.1],"n":1e+21},"duration_ms":12,"#,
            r#""failure_kind":"validation","fencing_token":9,"#,
            r#""key_digest":"abababababababababababababababababababababababababababababababab","#,
            r#""key_text":"disburse:loan-7:1","message":"boom \\ \"x\"\n","outcome":"routed","#,
            r#""queue_entry":3,"record":"loan \"7\"\n","retry":true,"route":"route_owner","#,
            r#""run_id":"00000000-0000-0000-0123-456789abcdef"}"#
        );
        assert_eq!(canonical_json(&e), expected);
        assert_eq!(canonical_via_value(&e), expected.as_bytes());
    }

    #[test]
    fn the_hash_of_the_canonical_json_is_the_entry_hash() {
        let e = sample(Some(serde_json::json!({"b": [1, 2], "a": "x"})), Some("m"));
        let canonical = canonical_json(&e);
        assert_eq!(canonical.as_bytes(), canonical_via_value(&e));
        assert_eq!(
            entry_hash_canonical(4, GENESIS_HASH, canonical.as_bytes()),
            entry_hash(4, GENESIS_HASH, &e)
        );
        let back: NewLogEntry = serde_json::from_str(&canonical).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn entry_hash_is_unchanged_and_survives_a_json_round_trip() {
        let e = sample(
            Some(serde_json::json!({"n": 1.5, "m": [3, 2, 1]})),
            Some("note"),
        );
        let mut h = Sha256::new();
        h.update(GENESIS_HASH.as_bytes());
        h.update([0u8]);
        h.update(7u64.to_be_bytes());
        h.update(canonical_via_value(&e));
        let expected = hex::encode(h.finalize());
        assert_eq!(entry_hash(7, GENESIS_HASH, &e), expected);
        let logged = LogEntry::chain_after(7, GENESIS_HASH.to_owned(), e);
        let json = serde_json::to_string(&logged.entry).unwrap();
        let back: NewLogEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(entry_hash(7, GENESIS_HASH, &back), logged.hash);
    }
}
