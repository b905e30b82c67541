//! The bounds the expansion of `#[agent_action]` requires, each with a message that names the rule,
//! and the helpers of the expansion that carry them (payload fields, template probes, `Classify`
//! delegation).
//!
//! Each marker trait has one blanket impl over the real bound (`Serialize`, ...). When the bound is
//! not met, rustc reports the marker trait's message (the unmet bound has the same self type as the
//! marker), so the user reads the rule rather than a bare `Serialize` error.
//!
//! The expansion calls [`guard::drive::begin`](crate::guard::drive::begin) and
//! [`call_run`](crate::guard::drive::call_run) rather than the methods of
//! [`Call`](crate::guard::Call) directly: each is a free function whose bounds are the marker traits
//! here, and the expansion passes the user's own `T` and `E` tokens as explicit type arguments. An
//! unmet bound is therefore reported on the user's type, once (rustc merges identical errors at one
//! span), instead of once per use of the call as "method exists but its trait bounds were not
//! satisfied". Their bounds must cover the bounds of `Call`'s impl.

use std::borrow::Cow;
use std::fmt::Display;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::classify::Classify;
use crate::key::{Payload, PayloadBuilder, PayloadError};
use crate::policy::FailureKind;
use crate::redacted::{Redacted, RedactionKey};
use crate::run::Run;

/// A payload parameter: fingerprinted, stored with the call and its queue entries, replayable.
#[diagnostic::on_unimplemented(
    message = "payload parameter of type `{Self}` must implement `serde::Serialize`",
    label = "every parameter of an #[agent_action] other than the run handle and `#[dep]`s is payload",
    note = "the payload is fingerprinted (so a key reused with another payload is caught) and stored with queue entries for replay",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or mark the parameter `#[dep]` if it is a client or handle rather than part of the intent"
)]
pub trait PayloadParam: Serialize {}

impl<T: Serialize + ?Sized> PayloadParam for T {}

/// A payload parameter must also deserialize: replay and revert call the action again from the stored
/// payload. For `&T` it is `T` that is read back (`str` and `[T]` too, boxed). Checked only for actions
/// that can be invoked (free, non-generic functions).
#[diagnostic::on_unimplemented(
    message = "payload parameter of type `{Self}` must implement `serde::Deserialize`",
    label = "replay and revert call the action again with the payload stored with its key",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or mark the parameter `#[dep]` if it is a client or handle rather than part of the intent"
)]
pub trait ReplayablePayload {
    /// Reads a stored payload field back.
    fn read_back(value: &serde_json::Value) -> Result<Box<Self>, serde_json::Error>;
}

impl<T: DeserializeOwned> ReplayablePayload for T {
    fn read_back(value: &serde_json::Value) -> Result<Box<Self>, serde_json::Error> {
        T::deserialize(value).map(Box::new)
    }
}

impl ReplayablePayload for str {
    fn read_back(value: &serde_json::Value) -> Result<Box<Self>, serde_json::Error> {
        Box::<str>::deserialize(value)
    }
}

impl<T: DeserializeOwned> ReplayablePayload for [T] {
    fn read_back(value: &serde_json::Value) -> Result<Box<Self>, serde_json::Error> {
        Box::<[T]>::deserialize(value)
    }
}

/// The success type of an action: stored when the call completes, returned again on replay.
#[diagnostic::on_unimplemented(
    message = "the result type `{Self}` of an #[agent_action] must implement `Serialize` and `DeserializeOwned`",
    label = "the result is stored so that a repeated call with the same key returns it without acting again",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}` (with owned fields: no borrowed `&str`)"
)]
pub trait ActionResult: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> ActionResult for T {}

/// The error type of an action must have a message: it is written to the action log and to queue
/// entries. (`Classify` carries its own message.)
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an #[agent_action] must implement `Display`",
    label = "the failure's message is written to the action log and to review queue entries",
    note = "derive it with `thiserror::Error` (`#[error(\"...\")]` on each variant) or implement `std::fmt::Display` for `{Self}`"
)]
pub trait ErrorMessage: Display {}

impl<E: Display + ?Sized> ErrorMessage for E {}

/// The payload of a call as the guarded call takes it: the payload, or why it was not built (a
/// parameter does not serialize, or the payload is beyond the limits).
pub type PayloadResult = Result<Payload, PayloadError>;

/// Collects the payload parameters of a call: the expansion adds each with [`payload_field`], in
/// order, then calls [`PayloadFields::finish`]. The first field that does not serialize (or is
/// refused by the limits) is the error; the fields after it are not serialized. (Statements rather
/// than a closure with `?`: one function less to compile per action.) `Redacted` values are written
/// as their digests under the key of the run's agent.
pub struct PayloadFields<'r> {
    builder: PayloadBuilder,
    error: Option<PayloadError>,
    redaction: &'r RedactionKey,
}

impl<'r> PayloadFields<'r> {
    /// The payload of a call made through `run`.
    pub fn new(run: &'r Run) -> Self {
        PayloadFields {
            builder: PayloadBuilder::new(),
            error: None,
            redaction: &run.agent().inner.redaction,
        }
    }

    /// The payload, or the first field's error.
    pub fn finish(mut self) -> PayloadResult {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.builder.finish()),
        }
    }
}

/// Adds one payload parameter; the bound is checked here, on the parameter's own type. (That it also
/// deserializes is checked where replay needs it: in the generated invocation, see
/// [`invoke_field`].)
pub fn payload_field<T: PayloadParam + ?Sized>(
    payload_fields: &mut PayloadFields<'_>,
    name: &str,
    value: &T,
) {
    if payload_fields.error.is_none() {
        let builder = &mut payload_fields.builder;
        let written = payload_fields
            .redaction
            .scope(|| builder.field(name, value).map(|_| ()));
        if let Err(e) = written {
            payload_fields.error = Some(e);
        }
    }
}

/// Reads payload field `field` back (replay, revert; a missing field reads as `null`).
pub fn invoke_field<T: ReplayablePayload + ?Sized>(
    action: &str,
    payload: &serde_json::Value,
    field: &str,
) -> Result<Box<T>, crate::invoke::InvokeError> {
    let value = payload.get(field).unwrap_or(&serde_json::Value::Null);
    T::read_back(value).map_err(|e| crate::invoke::InvokeError::Payload {
        action: action.to_owned(),
        field: field.to_owned(),
        message: e.to_string(),
    })
}

/// A type that is a [`Redacted`], or reaches one through the references and pointers a field access
/// dereferences by itself (`&`, `&mut`, `Box`, `Rc`, `Arc`).
pub trait ReachesRedacted {}

impl<T> ReachesRedacted for Redacted<T> {}
impl<T: ReachesRedacted + ?Sized> ReachesRedacted for &T {}
impl<T: ReachesRedacted + ?Sized> ReachesRedacted for &mut T {}
impl<T: ReachesRedacted + ?Sized> ReachesRedacted for Box<T> {}
impl<T: ReachesRedacted + ?Sized> ReachesRedacted for std::rc::Rc<T> {}
impl<T: ReachesRedacted + ?Sized> ReachesRedacted for std::sync::Arc<T> {}

/// What a key or record template reads: each prefix of a `{param.field.path}` part (`param`,
/// `param.field`, ...). The expansion calls `(&TemplateProbe(&prefix)).template_value()` in a
/// closure that is never called, and passes the answer to [`template_value_not_redacted`]: method
/// resolution picks [`RedactedTemplateValue`] (whose answer requires the value's type to be
/// [`OutsideRedacted`], which it is not) when the prefix reaches a [`Redacted`], and
/// [`PlainTemplateValue`], one auto-reference further away, otherwise. So a `Redacted` field nested
/// in a struct, or named through a type alias, is caught where the attribute cannot see it; nothing
/// runs and nothing is borrowed at run time. (A prefix whose type is unknown, after an unknown field,
/// leaves the requirement undecided, and so adds no error to that one.)
pub struct TemplateProbe<'a, T: ?Sized>(pub &'a T);

/// The answer of a probe whose value, of type `T`, reaches a [`Redacted`].
pub struct InsideRedacted<T: ?Sized>(std::marker::PhantomData<T>);

/// The answer of a probe whose value does not.
pub struct NotInsideRedacted;

/// Chosen by method resolution when the value reaches a [`Redacted`].
pub trait RedactedTemplateValue {
    /// The type of the value probed.
    type Value: ?Sized;

    fn template_value(&self) -> InsideRedacted<Self::Value> {
        InsideRedacted(std::marker::PhantomData)
    }
}

impl<T: ReachesRedacted + ?Sized> RedactedTemplateValue for TemplateProbe<'_, T> {
    type Value = T;
}

/// The fallback, one auto-reference further away.
pub trait PlainTemplateValue {
    fn template_value(&self) -> NotInsideRedacted {
        NotInsideRedacted
    }
}

impl<T: ?Sized> PlainTemplateValue for &TemplateProbe<'_, T> {}

/// A probe's answer that a key or record may read.
pub trait TemplateValue {}

impl TemplateValue for NotInsideRedacted {}

impl<T: OutsideRedacted + ?Sized> TemplateValue for InsideRedacted<T> {}

/// Never true of a value that reaches a [`Redacted`]: what an [`InsideRedacted`] answer requires.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a `Redacted` value: a key or record template cannot read it, or anything inside it",
    label = "this template reads a `Redacted` value (or a field inside one) into a key or record",
    note = "keys and records are stored, logged and shown in clear (the store, the action log, queue entries, tracing spans, `KeyReused` errors): a `Redacted` value is stored only as a keyed digest",
    note = "build the template from a non-secret identifier instead (an id, a reference), and keep the secret in the payload"
)]
pub trait OutsideRedacted {}

impl OutsideRedacted for NotInsideRedacted {}

/// Checks a probe's answer (called only in code that never runs).
pub fn template_value_not_redacted<A: TemplateValue>(_answer: A) {}

/// The field a `#[classify(from)]` variant delegates to.
#[diagnostic::on_unimplemented(
    message = "`#[classify(from)]` delegates to `{Self}`, which does not implement `Classify`",
    label = "this variant's classification is delegated to this field",
    note = "derive or implement `actguard::Classify` for `{Self}`, or classify the variant itself with `#[classify(transient)]`, `#[classify(validation)]`, `#[classify(conflict)]` or `#[classify(security)]`"
)]
pub trait ClassifyDelegate: Classify {}

impl<T: Classify + ?Sized> ClassifyDelegate for T {}

/// `classify()` of a `#[classify(from)]` field.
pub fn delegate_classify<T: ClassifyDelegate + ?Sized>(field: &T) -> FailureKind {
    field.classify()
}

/// `retry_after()` of a `#[classify(from)]` field, without a bound of its own: the derive calls it
/// as `(&DelegateProbe(field)).delegate_retry_after()`, which resolves to the field's `retry_after()`
/// when it is `Classify`, and to `None` otherwise. An unclassified delegate is then reported once, by
/// [`delegate_classify`], rather than once per method.
pub struct DelegateProbe<'a, T: ?Sized>(pub &'a T);

/// Chosen by method resolution when the delegate is `Classify`.
pub trait DelegateRetryAfter {
    fn delegate_retry_after(&self) -> Option<Duration>;
}

impl<T: Classify + ?Sized> DelegateRetryAfter for DelegateProbe<'_, T> {
    fn delegate_retry_after(&self) -> Option<Duration> {
        self.0.retry_after()
    }
}

/// The fallback, one auto-reference further away.
pub trait NoDelegateRetryAfter {
    fn delegate_retry_after(&self) -> Option<Duration> {
        None
    }
}

impl<T: ?Sized> NoDelegateRetryAfter for &DelegateProbe<'_, T> {}

/// `note()` of a `#[classify(from)]` field, resolved as [`DelegateRetryAfter`] is.
pub trait DelegateNote {
    fn delegate_note(&self) -> Option<Cow<'static, str>>;
}

impl<T: Classify + ?Sized> DelegateNote for DelegateProbe<'_, T> {
    fn delegate_note(&self) -> Option<Cow<'static, str>> {
        self.0.note()
    }
}

/// The fallback, one auto-reference further away.
pub trait NoDelegateNote {
    fn delegate_note(&self) -> Option<Cow<'static, str>> {
        None
    }
}

impl<T: ?Sized> NoDelegateNote for &DelegateProbe<'_, T> {}

/// The field named by `#[classify(transient, retry_after = field)]`.
#[diagnostic::on_unimplemented(
    message = "`retry_after` must name a field of type `Duration` or `Option<Duration>`, not `{Self}`",
    label = "named by `retry_after`",
    note = "convert the server's Retry-After into a `std::time::Duration` when the error is built"
)]
pub trait RetryAfterField: RetryAfterValue {}

impl<T: RetryAfterValue + ?Sized> RetryAfterField for T {}

/// The delay held by a `retry_after` field.
pub fn retry_after_field<T: RetryAfterField + ?Sized>(field: &T) -> Option<Duration> {
    field.retry_after_value()
}

/// Converts what a `retry_after = field` names into an optional delay; used by `#[derive(Classify)]`.
#[doc(hidden)]
pub trait RetryAfterValue {
    fn retry_after_value(&self) -> Option<Duration>;
}

impl RetryAfterValue for Duration {
    fn retry_after_value(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl RetryAfterValue for Option<Duration> {
    fn retry_after_value(&self) -> Option<Duration> {
        *self
    }
}

impl<T: RetryAfterValue + ?Sized> RetryAfterValue for &T {
    fn retry_after_value(&self) -> Option<Duration> {
        (**self).retry_after_value()
    }
}
