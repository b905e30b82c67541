//! What a guarded call stores, bounded so that every reader of the store reads it back.
//!
//! A call's payload, its result and the states its body captures (`before`, `after`) are written to
//! the store as JSON and read back by every process and tool that uses it: replay, the queues, the
//! action log, `verify`, the operator commands. So they are checked **while they are serialized**,
//! before anything is stored:
//!
//! - **Depth**: arrays and objects nested at most [`MAX_DEPTH`] levels (`[]` and `{}` are one level,
//!   `[[1]]` two; a struct, a map, a `Vec` and an enum variant with data each count one). Stored,
//!   a payload parameter sits in the payload object and a state in a log entry, each one level
//!   more; every form a store keeps stays well below the 128 levels `serde_json` reads by default.
//!   The user's value is never walked beyond the limit: its serialization stops there, so no depth
//!   of input can exhaust the stack.
//! - **Size**: the canonical JSON of a payload at most [`MAX_PAYLOAD_BYTES`], of a result or of one
//!   captured state at most [`MAX_RESULT_BYTES`].
//! - **Floats**: `NaN`, `inf` and `-inf` are refused. JSON has no such numbers: written as `null`, a
//!   `NaN` would fingerprint like `None` (two payloads, one key) and come back as something else.
//!
//! A payload beyond them is refused before acting
//! ([`ActionError::PayloadRefused`](crate::ActionError::PayloadRefused)): nothing runs and the key
//! is not claimed. A result or a captured state beyond them comes after the body ran, so the call
//! ends [`ActionError::ResultNotStored`](crate::ActionError::ResultNotStored): the key waits in the
//! dead-letter queue and never runs again.
//!
//! Stores read back what earlier releases wrote too, which had no limit: stored JSON nested up to
//! [`MAX_READ_DEPTH`] levels is read (deeper than `serde_json`'s own limit), and deeper JSON is
//! reported as such ([`StoreError::TooDeep`](crate::StoreError::TooDeep)), never as damage.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The deepest nesting of arrays and objects in a payload parameter, a result or a captured state.
pub const MAX_DEPTH: usize = 64;

/// The largest payload, as canonical JSON (the object of every payload parameter by name): 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The largest result, and the largest state captured by `before` or `after`, as canonical JSON:
/// 4 MiB each.
pub const MAX_RESULT_BYTES: usize = 4 << 20;

/// The deepest stored JSON text a store reads back (a log entry, a stored result, a payload, a
/// queue entry, counting the entry's own object). What this release writes stays within
/// [`MAX_DEPTH`] plus two; the rest of the range is for entries written by earlier releases, which
/// did not limit depth. Chosen so that reading, verifying and printing such an entry fits in a
/// thread's default stack.
pub const MAX_READ_DEPTH: usize = 256;

/// The nesting `serde_json` reads by default: deeper text is read by [`read_json`] instead.
const SERDE_JSON_DEPTH: usize = 128;

/// Why a payload, a result or a captured state cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error(
        "{what} nests arrays and objects more than {max} levels deep (at `{path}`): a stored value may nest at most {max} levels"
    )]
    TooDeep {
        /// What was refused: `the payload parameter `instr``, `the result`, ...
        what: String,
        /// Where the first level too deep begins: `instr.lines[3].tags` (a long path shows its
        /// first and last steps around `…`).
        path: String,
        /// The limit.
        max: usize,
    },
    /// Larger than [`MAX_PAYLOAD_BYTES`] or [`MAX_RESULT_BYTES`] as canonical JSON.
    #[error(
        "{what} is larger than {max} bytes as JSON: a stored {kind} may be at most {max} bytes"
    )]
    TooLarge {
        /// What was refused.
        what: String,
        /// `payload`, `result` or `state`.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// A float that is `NaN`, `inf` or `-inf`.
    #[error(
        "{what} holds {value} at `{path}`: JSON has no such number, and storing it as `null` would make it equal to a missing value, so it is refused"
    )]
    NonFinite {
        /// What was refused.
        what: String,
        /// Where the float is: `order.price`.
        path: String,
        /// `NaN`, `inf` or `-inf`.
        value: &'static str,
    },
}

/// What a limited serialization refuses: see [`crate::canonical`]'s limited writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Levels of arrays and objects allowed.
    pub max_depth: usize,
    /// The largest output, in bytes (of the whole buffer written into, for a payload's fields).
    pub max_bytes: usize,
    /// `payload`, `result` or `state`, for [`LimitError::TooLarge`].
    pub kind: &'static str,
}

impl Limits {
    pub(crate) const PAYLOAD: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_bytes: MAX_PAYLOAD_BYTES,
        kind: "payload",
    };
    pub(crate) const RESULT: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_bytes: MAX_RESULT_BYTES,
        kind: "result",
    };
    pub(crate) const STATE: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_bytes: MAX_RESULT_BYTES,
        kind: "state",
    };
}

/// Why a value cannot be stored: it does not serialize, or it is beyond the limits.
#[derive(Debug)]
pub(crate) enum Unstorable {
    /// Its `Serialize` failed, or it holds what JSON cannot (a map key that is not a string, an
    /// integer beyond 64 bits).
    Serialize(serde_json::Error),
    /// Beyond the limits.
    Refused(LimitError),
}

impl std::fmt::Display for Unstorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unstorable::Serialize(e) => e.fmt(f),
            Unstorable::Refused(e) => e.fmt(f),
        }
    }
}

/// `value` (a result, `root` = `result`; a captured state, `before` or `after`) as the JSON value a
/// store keeps, checked against `limits` while it is serialized.
pub(crate) fn stored_value<T: Serialize + ?Sized>(
    value: &T,
    root: &str,
    what: &str,
    limits: Limits,
) -> Result<serde_json::Value, Unstorable> {
    let mut bytes = Vec::with_capacity(128);
    crate::canonical::write_limited(&mut bytes, value, limits, root, || what.to_owned())?;
    // At most `MAX_DEPTH` levels: within what `serde_json` reads.
    serde_json::from_slice(&bytes).map_err(Unstorable::Serialize)
}

/// The result of a call as a store keeps it.
pub(crate) fn result_value<T: Serialize + ?Sized>(
    value: &T,
) -> Result<serde_json::Value, Unstorable> {
    stored_value(value, "result", "the result", Limits::RESULT)
}

/// Why stored JSON text does not read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is not JSON of the expected shape.
    Json(serde_json::Error),
    /// It nests deeper than [`MAX_READ_DEPTH`]: the error says how deep.
    TooDeep(serde_json::Error),
}

/// Reads stored JSON text: as `serde_json` does, and text nested deeper than `serde_json` reads by
/// default (written by an earlier release) up to [`MAX_READ_DEPTH`] levels.
pub(crate) fn read_json<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    let error = match serde_json::from_str(text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let depth = json_depth(text.as_bytes());
    if depth < SERDE_JSON_DEPTH {
        return Err(ReadError::Json(error));
    }
    if depth > MAX_READ_DEPTH {
        return Err(ReadError::TooDeep(
            <serde_json::Error as serde::de::Error>::custom(format!(
                "it nests arrays and objects {depth} levels deep, deeper than this release reads ({MAX_READ_DEPTH}); it was written by an earlier release, which did not limit depth, and is not damaged"
            )),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de).map_err(ReadError::Json)?;
    de.end().map_err(ReadError::Json)?;
    Ok(value)
}

/// The deepest nesting of arrays and objects in JSON text, found by one scan (no recursion);
/// brackets inside strings do not count. Malformed text gets a number too.
pub(crate) fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_outside_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"[]"), 1);
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[\"]]]"}]}"#), 3);
        assert_eq!(json_depth(nested(300).as_bytes()), 300);
    }

    #[test]
    fn deep_text_reads_up_to_the_read_limit() {
        for depth in [1, SERDE_JSON_DEPTH - 1, SERDE_JSON_DEPTH, MAX_READ_DEPTH] {
            let text = nested(depth);
            let value: Value = read_json(&text).unwrap_or_else(|e| panic!("{depth}: {e:?}"));
            assert_eq!(serde_json::to_string(&value).unwrap(), text);
        }
        let too_deep = nested(MAX_READ_DEPTH + 1);
        assert!(serde_json::from_str::<Value>(&too_deep).is_err());
        match read_json::<Value>(&too_deep) {
            Err(ReadError::TooDeep(e)) => {
                assert!(e.to_string().contains("257 levels deep"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        // Malformed text stays a JSON error, deep or not.
        assert!(matches!(
            read_json::<Value>(&format!("{}x", "[".repeat(200))),
            Err(ReadError::Json(_))
        ));
        assert!(matches!(read_json::<Value>("[1,"), Err(ReadError::Json(_))));
    }

    #[test]
    fn a_stored_value_is_its_json_value() {
        let v = json!({"b": [1, 2.5, "x"], "a": {"c": null}});
        assert_eq!(result_value(&v).unwrap(), v);
        assert!(matches!(
            result_value(&f64::NAN),
            Err(Unstorable::Refused(LimitError::NonFinite { .. }))
        ));
        assert!(matches!(
            result_value(&u128::MAX),
            Err(Unstorable::Serialize(_))
        ));
    }
}
