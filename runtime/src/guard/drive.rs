//! The driver of one guarded call, as the expansion of `#[agent_action]` calls it: [`begin`] begins
//! the call, then settles each attempt; [`call_run`] is the run handle of the attempt in progress.
//!
//! Both are free functions whose bounds are written out (the action's `T` and `E`, passed by the
//! expansion as explicit type arguments): an unmet bound is reported once, on the user's type, with
//! the message of its marker trait in `bounds.rs`, instead of once per use of [`Call`]'s methods.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::bounds::{ActionResult, ErrorMessage, PayloadResult};
use crate::classify::Classify;
use crate::error::ActionError;
use crate::key::RenderedKey;
use crate::policy::ActionSpec;
use crate::run::Run;

use super::{Begun, Call};

/// One guarded call as the expansion drives it: built without awaiting, then advanced by [`begin`]
/// until it answers. The expansion's own state machine then holds one runtime future type and awaits
/// twice per attempt (this call, the body), whatever the action: the work of beginning and settling is
/// compiled once per `(T, E)`, not once per action.
pub struct Guard<'r, T, E> {
    state: GuardState<'r, T, E>,
}

// Built once per call and kept in the action's future: boxing the call would only add an allocation to
// every guarded call.
#[allow(clippy::large_enum_variant)]
enum GuardState<'r, T, E> {
    /// Not begun: the inputs of [`Call::begin`].
    Start {
        run: &'r Run,
        spec: &'static ActionSpec,
        key: Option<RenderedKey>,
        record: Option<RenderedKey>,
        payload: PayloadResult,
    },
    /// Begun: the body runs, [`Call::settle`] takes each attempt's result.
    Acting(Call<T, E>),
    /// Answered (or between states).
    Over,
}

impl<'r, T, E> Guard<'r, T, E> {
    /// A call of the action `spec`, not begun. Carries no bound: [`begin`] does, and it is the first
    /// call the expansion makes with `T` and `E`.
    pub fn new(
        run: &'r Run,
        spec: &'static ActionSpec,
        key: Option<RenderedKey>,
        record: Option<RenderedKey>,
        payload: PayloadResult,
    ) -> Self {
        Guard {
            state: GuardState::Start {
                run,
                spec,
                key,
                record,
                payload,
            },
        }
    }
}

/// [`Call::begin`] when `outcome` is `None` (the first time), else [`Call::settle`] of the attempt's
/// `outcome`, with the action's bounds. `Some` ends the call; `None` asks for an attempt (after the
/// backoff delay, already slept, for a retry).
pub async fn begin<T: ActionResult, E: Classify + ErrorMessage>(
    guard: &mut Guard<'_, T, E>,
    outcome: Option<Result<T, E>>,
) -> Option<Result<T, ActionError<E>>> {
    SendIf::<T, E, _>::new(advance(guard, outcome)).await
}

async fn advance<T: ActionResult, E: Classify + ErrorMessage>(
    guard: &mut Guard<'_, T, E>,
    outcome: Option<Result<T, E>>,
) -> Option<Result<T, ActionError<E>>> {
    let Some(outcome) = outcome else {
        let GuardState::Start {
            run,
            spec,
            key,
            record,
            payload,
        } = std::mem::replace(&mut guard.state, GuardState::Over)
        else {
            unreachable!("the expansion begins a guarded call once, then settles each attempt")
        };
        return match Call::begin(run, spec, key, record, payload).await {
            Begun::Act(call) => {
                guard.state = GuardState::Acting(call);
                None
            }
            Begun::Done(result) => Some(result),
        };
    };
    // Settled in place: the call (large) is not moved out of the guard and back for every attempt.
    let GuardState::Acting(call) = &mut guard.state else {
        unreachable!("the expansion settles only a begun call")
    };
    let result = call.settle(outcome).await;
    if result.is_some() {
        guard.state = GuardState::Over;
    }
    result
}

pin_project_lite::pin_project! {
    /// The future of [`advance`], `Send` when `T` and `E` are: rustc then proves the action's
    /// future `Send` without walking every future the guarded call awaits (the store's, the log's,
    /// ...) once per action. [`_advance_is_send_if_t_and_e_are`] checks, once, that this is true.
    struct SendIf<T, E, F> {
        #[pin]
        future: F,
        _types: std::marker::PhantomData<fn() -> (T, E)>,
    }
}

impl<T, E, F> SendIf<T, E, F> {
    fn new(future: F) -> Self {
        SendIf {
            future,
            _types: std::marker::PhantomData,
        }
    }
}

// SAFETY: `F` is only ever `advance::<T, E>`'s future, which is `Send` when `T` and `E` are:
// `_advance_is_send_if_t_and_e_are` fails to compile otherwise.
unsafe impl<T: Send, E: Send, F> Send for SendIf<T, E, F> {}

#[allow(dead_code)]
fn _advance_is_send_if_t_and_e_are<T: ActionResult + Send, E: Classify + ErrorMessage + Send>(
    guard: &mut Guard<'_, T, E>,
    outcome: Option<Result<T, E>>,
) {
    fn send<X: Send>(_: &X) {}
    send(&advance(guard, outcome));
}

impl<T, E, F: Future> Future for SendIf<T, E, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

/// [`Call::run`] of the call in progress, with the action's bounds.
pub fn call_run<'g, T: ActionResult, E: Classify + ErrorMessage>(
    guard: &'g Guard<'_, T, E>,
) -> &'g Run {
    match &guard.state {
        GuardState::Acting(call) => call.run(),
        _ => unreachable!("an attempt runs only once the call has begun"),
    }
}
