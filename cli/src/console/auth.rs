//! Who is at the console: a session from the login form, or a bearer token with the person's name in a
//! header a trusted proxy sets. Forms carry a CSRF token bound to the session.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How the console admits people.
#[derive(Clone)]
pub enum Access {
    /// Every page but `/health` needs the token: through the login form (a session cookie) or an
    /// `Authorization: Bearer` header.
    Token {
        token: String,
        /// With a bearer token, the person's name is read from this header (set by a trusted proxy).
        user_header: Option<String>,
    },
    /// No authentication (loopback only): everyone is `local`. Forms still carry a CSRF token (this
    /// process's own), so that a web page the person visits cannot post to the console.
    Open { csrf: String },
}

impl Access {
    /// No authentication, with a CSRF token of its own.
    pub fn open() -> Access {
        Access::Open {
            csrf: hex::encode(rand::random::<[u8; 32]>()),
        }
    }
}

/// The session cookie's name.
pub const COOKIE: &str = "actguard_console";

/// A person at the console, and the CSRF token their forms carry (none for a bearer request, which a
/// browser never sends by itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub csrf: Option<String>,
}

fn mac(token: &str, parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A name a person may log in as: 1 to 64 characters, no control characters.
pub fn valid_name(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)
}

/// The cookie value of a new session of `name`.
pub fn session_cookie(token: &str, name: &str) -> String {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let name = hex::encode(name.trim().as_bytes());
    let signature = mac(token, &["session", &name, &nonce]);
    format!("{name}.{nonce}.{signature}")
}

/// The person of a session cookie, if its signature holds.
pub fn from_cookie(token: &str, cookie: &str) -> Option<Person> {
    let mut parts = cookie.split('.');
    let (name, nonce, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !same(signature, &mac(token, &["session", name, nonce])) {
        return None;
    }
    let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
    Some(Person {
        name,
        csrf: Some(mac(token, &["csrf", nonce])),
    })
}
