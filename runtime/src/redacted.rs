//! [`Redacted`]: a value stored as a keyed digest, never in clear; [`RedactionKey`]: the secret that
//! keys the digests.

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use serde::{Serialize, Serializer};
use sha2::Sha256;

/// A value that the action log, the payload and the queues keep only as a keyed digest.
///
/// Use the value through `Deref`. Inside a guarded call (the payload, the states captured with
/// `before`/`after`, the result) it serializes as `"hmac-sha256:<hex>"`: HMAC-SHA-256, under the
/// agent's [`RedactionKey`], of the value's [canonical JSON](crate::canonical). Equal values give equal
/// digests under one key, so fingerprints still work (a repeated call replays, the same key with
/// another value is `KeyReused`) while the value itself is never written to the store.
///
/// The key is the store's own secret unless the agent is given one
/// ([`AgentBuilder::redaction_key`](crate::AgentBuilder::redaction_key)): every store creates a
/// random secret (from the operating system's generator) when it is created, keeps it, and gives it
/// to every process that opens it, so digests are stable across processes and restarts.
///
/// # What it protects, and what it does not
///
/// - **Digests that leave the store**: CLI output, exported logs, alerts, queue entries copied
///   elsewhere, backups of parts of the data. Without the key a digest cannot be brute-forced (a
///   4-digit PIN, a card number, an IBAN has few enough values that an unkeyed hash of it gives the
///   value back in well under a second).
/// - **Not against whoever can read the store itself**: with the store's own secret, a reader of the
///   database file or schema reads the secret too, and can brute-force low-entropy values. Give the
///   agent a secret kept outside the store ([`RedactionKey::from_env`], a secret manager, a KMS) to
///   protect against store readers as well; every process sharing the store must then be given the
///   same secret.
/// - **Not equality**: under one key, equal values give equal digests. Whoever sees two digests
///   learns whether the values are equal (and `KeyReused` depends on exactly that).
/// - Changing the key (another secret, or from the store's secret to an explicit one) changes every
///   digest, and so the fingerprint of every payload holding a `Redacted`: a call under a key that was
///   claimed with the old digests answers `KeyReused` instead of replaying. Nothing runs twice.
///
/// Outside a guarded call (an application serializing its own values, `serde_json::to_string` of a
/// payload for its own logs) no key is in scope: a `Redacted` then serializes as `"redacted:<hex>"`,
/// keyed with a random key of this process. It never matches a stored digest, and equal values give
/// equal strings within one process only. Use [`RedactionKey::scope`] (the key from
/// [`Agent::redaction_key`](crate::Agent::redaction_key)) to serialize as the agent stores.
///
/// `Debug` prints `Redacted(..)`: nothing of the value, not even its digest.
///
/// A `Redacted` can never be part of an idempotency key or a record (both are stored, logged and shown
/// in clear): `#[agent_action]` rejects a template that reads one, or a field inside one, at compile
/// time.
///
/// ```
/// use actguard::{Redacted, RedactionKey};
///
/// let iban = Redacted::new("DE89370400440532013000".to_string());
/// assert_eq!(iban.len(), 22);
/// let key = RedactionKey::new([7u8; 32])?;
/// let stored = key.scope(|| serde_json::to_value(&iban))?;
/// assert!(stored.as_str().unwrap().starts_with("hmac-sha256:"));
/// assert!(!stored.to_string().contains("DE89"));
/// assert_eq!(stored, iban.digest_with(&key));
/// assert_eq!(format!("{iban:?}"), "Redacted(..)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
    /// What the value serializes as here: `"hmac-sha256:<hex>"` under the key in scope (inside a
    /// guarded call, the agent's), else `"redacted:<hex>"` under this process's random key.
    pub fn digest(&self) -> String {
        let bytes = crate::canonical::to_vec(&self.0).unwrap_or_default();
        match current_key() {
            Some(key) => key.stored_digest(&bytes),
            None => process_key().local_digest(&bytes),
        }
    }

    /// `"hmac-sha256:<hex>"` under `key`: what an agent with that key stores instead of the value (to
    /// look a known value up in a log, for instance).
    pub fn digest_with(&self, key: &RedactionKey) -> String {
        let bytes = crate::canonical::to_vec(&self.0).unwrap_or_default();
        key.stored_digest(&bytes)
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
        let digest = match current_key() {
            Some(key) => key.stored_digest(&bytes),
            None => process_key().local_digest(&bytes),
        };
        s.serialize_str(&digest)
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

/// `Redacted(..)`: neither the value nor its digest.
impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redacted(..)")
    }
}

/// The secret that keys the digests of [`Redacted`] values. Cheap to clone; its `Debug` shows only
/// its [`id`](Self::id).
///
/// An agent uses its store's secret ([`Store::redaction_key`](crate::Store::redaction_key)) unless it
/// is given one with [`AgentBuilder::redaction_key`](crate::AgentBuilder::redaction_key) or
/// [`AgentBuilder::redaction_key_from_env`](crate::AgentBuilder::redaction_key_from_env). A secret
/// is at least [`MIN_LEN`](Self::MIN_LEN) bytes, e.g. `openssl rand -hex 32` (its 64 characters are
/// the secret).
#[derive(Clone)]
pub struct RedactionKey(Arc<KeyInner>);

struct KeyInner {
    /// The HMAC keyed with the secret, its key schedule done once: each digest clones it.
    mac: Hmac<Sha256>,
}

/// What every digest's input starts with, before the canonical JSON.
const DOMAIN: &[u8] = b"actguard-redacted-v1\0";

impl RedactionKey {
    /// The shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// The length of a secret a store generates, in bytes.
    pub const SECRET_LEN: usize = 32;

    /// A key from `secret` (at least [`MIN_LEN`](Self::MIN_LEN) bytes).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<RedactionKey, RedactionKeyError> {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_LEN {
            return Err(RedactionKeyError::TooShort {
                len: secret.len(),
                var: None,
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        Ok(RedactionKey(Arc::new(KeyInner { mac })))
    }

    /// A key from the environment variable `var`: its value's bytes are the secret (at least
    /// [`MIN_LEN`](Self::MIN_LEN) of them).
    pub fn from_env(var: &str) -> Result<RedactionKey, RedactionKeyError> {
        Self::from_var(var, std::env::var_os(var).as_deref())
    }

    /// [`from_env`](Self::from_env) of the value `value` read from `var`.
    fn from_var(
        var: &str,
        value: Option<&std::ffi::OsStr>,
    ) -> Result<RedactionKey, RedactionKeyError> {
        let value = value.ok_or_else(|| RedactionKeyError::NotSet {
            var: var.to_owned(),
        })?;
        RedactionKey::new(value.as_encoded_bytes()).map_err(|e| match e {
            RedactionKeyError::TooShort { len, .. } => RedactionKeyError::TooShort {
                len,
                var: Some(var.to_owned()),
            },
            other => other,
        })
    }

    /// [`SECRET_LEN`](Self::SECRET_LEN) random bytes from the operating system's generator: what a
    /// store keeps as its secret when it is created.
    pub fn generate_secret() -> [u8; Self::SECRET_LEN] {
        use rand::TryRngCore;
        let mut secret = [0u8; Self::SECRET_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut secret)
            .expect("the operating system's random generator is available");
        secret
    }

    /// A short name of the key that tells two keys apart without revealing anything of the secret
    /// (16 hex digits of a keyed digest of a fixed text): safe to print and log.
    pub fn id(&self) -> String {
        let mut mac = self.0.mac.clone();
        mac.update(b"actguard-redaction-key-id\0");
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        crate::key::hex_lower(&digest[..8])
    }

    /// Runs `f` with this key in scope on this thread: every [`Redacted`] serialized meanwhile gives
    /// `"hmac-sha256:<hex>"` under this key, as the guarded calls of an agent with this key store it.
    /// Scopes nest; the previous key is back when `f` returns (or panics).
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<RedactionKey>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.set(self.0.take());
            }
        }
        let _restore = Restore(CURRENT.replace(Some(self.clone())));
        f()
    }

    fn mac(&self, canonical: &[u8]) -> String {
        let mut mac = self.0.mac.clone();
        mac.update(DOMAIN);
        mac.update(canonical);
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        crate::key::hex_lower(&digest)
    }

    /// The stored form: `hmac-sha256:<hex>`.
    fn stored_digest(&self, canonical: &[u8]) -> String {
        format!("hmac-sha256:{}", self.mac(canonical))
    }

    /// The form outside any scope: `redacted:<hex>`.
    fn local_digest(&self, canonical: &[u8]) -> String {
        format!("redacted:{}", self.mac(canonical))
    }
}

impl fmt::Debug for RedactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactionKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// Why a [`RedactionKey`] could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactionKeyError {
    /// The secret is shorter than [`RedactionKey::MIN_LEN`] bytes.
    #[error(
        "the redaction secret{} is {len} bytes long: give at least {} random bytes, e.g. the output of `openssl rand -hex 32`",
        var.as_ref().map(|v| format!(" in ${v}")).unwrap_or_default(),
        RedactionKey::MIN_LEN
    )]
    TooShort {
        /// Its length.
        len: usize,
        /// The environment variable it came from, if any.
        var: Option<String>,
    },
    /// The environment variable holding the secret is not set.
    #[error(
        "the environment variable {var} holding the redaction secret is not set: set it to at least {} random bytes (e.g. `openssl rand -hex 32`) in every process that shares the store",
        RedactionKey::MIN_LEN
    )]
    NotSet {
        /// The variable.
        var: String,
    },
    /// The agent was given no secret and its store keeps none.
    #[error(
        "the store keeps no redaction secret and the agent was given none: give one with AgentBuilder::redaction_key"
    )]
    NoKey,
}

thread_local! {
    /// The key of the guarded call serializing on this thread, if any ([`RedactionKey::scope`]).
    static CURRENT: Cell<Option<RedactionKey>> = const { Cell::new(None) };
}

/// The key in scope on this thread.
fn current_key() -> Option<RedactionKey> {
    CURRENT.with(|current| {
        let key = current.take();
        let copy = key.clone();
        current.set(key);
        copy
    })
}

/// The random key of this process, for `Redacted` values serialized outside any scope.
fn process_key() -> &'static RedactionKey {
    static PROCESS: OnceLock<RedactionKey> = OnceLock::new();
    PROCESS.get_or_init(|| {
        RedactionKey::new(RedactionKey::generate_secret())
            .expect("a generated secret is long enough")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sha2::Digest;

    fn key(byte: u8) -> RedactionKey {
        RedactionKey::new([byte; 32]).unwrap()
    }

    /// The digest spelled out: HMAC-SHA-256 of a fixed prefix and the canonical JSON.
    #[test]
    fn serializes_as_the_keyed_digest_of_canonical_json() {
        let r = Redacted::new(json!({"b": 2, "a": 1}));
        let mut mac = Hmac::<Sha256>::new_from_slice(&[9; 32]).unwrap();
        mac.update(b"actguard-redacted-v1\0{\"a\":1,\"b\":2}");
        let expected = format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()));
        let k = key(9);
        assert_eq!(
            k.scope(|| serde_json::to_value(&r).unwrap()),
            json!(expected)
        );
        assert_eq!(k.scope(|| r.digest()), expected);
        assert_eq!(r.digest_with(&k), expected);
        // Not the unkeyed SHA-256 of the same bytes.
        let unkeyed = hex::encode(Sha256::digest(br#"{"a":1,"b":2}"#));
        assert!(!expected.contains(&unkeyed));
        assert_eq!(format!("{r:?}"), "Redacted(..)");
    }

    #[test]
    fn equal_values_give_equal_digests_under_one_key_and_deref_reaches_the_value() {
        let a = Redacted::new(String::from("secret"));
        let b = Redacted::from(String::from("secret"));
        assert_eq!(a.digest_with(&key(1)), b.digest_with(&key(1)));
        assert_ne!(a.digest_with(&key(1)), a.digest_with(&key(2)));
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.as_str(), "secret");
    }

    #[test]
    fn outside_a_scope_the_process_key_gives_a_marked_digest() {
        let r = Redacted::new(1234u32);
        let local = serde_json::to_value(r).unwrap();
        let local = local.as_str().unwrap();
        assert!(local.starts_with("redacted:"), "{local}");
        assert_eq!(local.len(), "redacted:".len() + 64);
        assert_eq!(r.digest(), local);
        assert_ne!(
            &r.digest_with(&key(3))["hmac-sha256:".len()..],
            &local["redacted:".len()..]
        );
    }

    #[test]
    fn scopes_nest_and_end_with_their_closure_even_on_panic() {
        let r = Redacted::new("x");
        let (one, two) = (key(1), key(2));
        let inside = one.scope(|| {
            let inner = two.scope(|| r.digest());
            (inner, r.digest())
        });
        assert_eq!(inside, (r.digest_with(&two), r.digest_with(&one)));
        let panicked = std::panic::catch_unwind(|| one.scope(|| panic!("in scope")));
        assert!(panicked.is_err());
        assert!(r.digest().starts_with("redacted:"), "no key left in scope");
    }

    /// A `Redacted` inside a `Redacted`: the inner one is digested under the same key.
    #[test]
    fn a_nested_redacted_is_keyed_too() {
        let k = key(4);
        let nested = Redacted::new(vec![Redacted::new(7u8)]);
        let inner = Redacted::new(7u8).digest_with(&k);
        let expected = Redacted::new(vec![inner]).digest_with(&k);
        assert_eq!(k.scope(|| nested.digest()), expected);
    }

    #[test]
    fn secrets_are_long_enough_and_ids_tell_keys_apart() {
        assert_eq!(
            RedactionKey::new(b"short").unwrap_err(),
            RedactionKeyError::TooShort { len: 5, var: None }
        );
        assert!(RedactionKey::new([0u8; 31]).is_err());
        let a = RedactionKey::new(RedactionKey::generate_secret()).unwrap();
        let b = RedactionKey::new(RedactionKey::generate_secret()).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), a.clone().id());
        assert_eq!(a.id().len(), 16);
        assert_ne!(RedactionKey::generate_secret(), [0u8; 32]);
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.id()), "{debug}");
    }

    #[test]
    fn a_key_from_the_environment() {
        let var = "ACTGUARD_TEST_REDACTION_KEY_NEVER_SET";
        assert_eq!(
            RedactionKey::from_env(var).unwrap_err(),
            RedactionKeyError::NotSet { var: var.into() }
        );
        let short = RedactionKey::from_var("SECRET", Some("0123456789abcdef".as_ref()));
        let short = short.unwrap_err();
        assert_eq!(
            short,
            RedactionKeyError::TooShort {
                len: 16,
                var: Some("SECRET".into())
            }
        );
        assert!(short.to_string().contains("$SECRET"), "{short}");
        let secret = "0123456789abcdef0123456789abcdef";
        let from_env = RedactionKey::from_var("SECRET", Some(secret.as_ref())).unwrap();
        assert_eq!(from_env.id(), RedactionKey::new(secret).unwrap().id());
    }
}
