//! Marker traits the expansion of `#[agent_action]` requires, each with a message that names the rule.
//!
//! Each trait has one blanket impl over the real bound (`Serialize`, ...). When the bound is not met,
//! rustc reports the marker trait's message (the root obligation has the same self type as the unmet
//! one), so the user reads the rule rather than a bare `Serialize` error.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::classify::Classify;
use crate::key::{Payload, PayloadBuilder};

/// A payload parameter: fingerprinted, stored with the call and its queue entries, replayable.
#[diagnostic::on_unimplemented(
    message = "payload parameter of type `{Self}` must implement `serde::Serialize`",
    label = "every parameter of an #[agent_action] other than the run handle and `#[dep]`s is payload",
    note = "the payload is fingerprinted (so a key reused with another payload is caught) and stored with queue entries for replay",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or mark the parameter `#[dep]` if it is a client or handle rather than part of the intent"
)]
pub trait PayloadParam: Serialize {}

impl<T: Serialize + ?Sized> PayloadParam for T {}

/// The success type of an action: stored when the call completes, returned again on replay.
#[diagnostic::on_unimplemented(
    message = "the result type `{Self}` of an #[agent_action] must implement `Serialize` and `DeserializeOwned`",
    label = "the result is stored so that a repeated call with the same key returns it without acting again",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}` (with owned fields: no borrowed `&str`)"
)]
pub trait ActionResult: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> ActionResult for T {}

/// What the generated payload closure returns.
pub type PayloadResult = Result<Payload, serde_json::Error>;

/// Adds one payload parameter; the bound is checked here, on the parameter's own type.
pub fn payload_field<T: PayloadParam + ?Sized>(
    builder: &mut PayloadBuilder,
    name: &str,
    value: &T,
) -> Result<(), serde_json::Error> {
    builder.field(name, value).map(|_| ())
}

/// Checks the success type of the action's `Result` (spanned on it in the expansion).
pub fn assert_action_result<T: ActionResult>() {}

/// Checks the error type of the action's `Result` (spanned on it in the expansion).
pub fn assert_action_error<E: Classify + ?Sized>() {}
