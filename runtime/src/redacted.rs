//! [`Redacted`]: a value stored as a digest, never in clear.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Serialize, Serializer};

/// A value that the action log, the payload and the queues keep only as a digest.
///
/// It serializes as `"sha256:<hex>"`, the SHA-256 of the value's [canonical JSON](crate::canonical), so
/// equal values still give equal fingerprints (idempotency keys, `KeyReused`) while the value itself is
/// never written to the store. Its `Debug` shows the digest too. Use the value through `Deref`.
///
/// ```
/// use actguard::Redacted;
///
/// let iban = Redacted::new("DE89370400440532013000".to_string());
/// assert_eq!(iban.len(), 22);
/// let stored = serde_json::to_value(&iban).unwrap();
/// assert!(stored.as_str().unwrap().starts_with("sha256:"));
/// assert!(!stored.to_string().contains("DE89"));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// The value, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Serialize> Redacted<T> {
    /// `"sha256:<hex>"` of the value's canonical JSON: what is stored instead of the value.
    pub fn digest(&self) -> String {
        let bytes = crate::canonical::to_vec(&self.0).unwrap_or_default();
        format!("sha256:{}", crate::key::sha256_hex(&bytes))
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Redacted(value)
    }
}

impl<T> Deref for Redacted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Redacted<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize> Serialize for Redacted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = crate::canonical::to_vec(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&format!("sha256:{}", crate::key::sha256_hex(&bytes)))
    }
}

/// Never succeeds: only the digest was stored, so the value cannot be read back. An action whose payload
/// holds a `Redacted` field compiles, and its replay fails with an error naming the field (the value
/// must come from the application again).
impl<'de, T> serde::Deserialize<'de> for Redacted<T> {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a Redacted value is stored as its digest only and cannot be read back for a replay",
        ))
    }
}

impl<T: Serialize> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Redacted").field(&self.digest()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_the_digest_of_canonical_json() {
        let v = json!({"b": 2, "a": 1});
        let r = Redacted::new(v);
        let expected = format!("sha256:{}", crate::key::sha256_hex(br#"{"a":1,"b":2}"#));
        assert_eq!(serde_json::to_value(&r).unwrap(), json!(expected));
        assert_eq!(format!("{r:?}"), format!("Redacted({expected:?})"));
    }

    #[test]
    fn equal_values_give_equal_digests_and_deref_reaches_the_value() {
        let a = Redacted::new(String::from("secret"));
        let b = Redacted::from(String::from("secret"));
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.as_str(), "secret");
    }
}
