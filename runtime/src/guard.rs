//! The guarded call: the state machine the expansion of `#[agent_action]` drives.
//!
//! The generated function renders the key, record and payload, calls [`Call::begin`], then loops:
//! run the body once with [`Call::run`] (the run handle carrying the attempt), and hand its result to
//! [`Call::settle`], which either finishes the call or sleeps and asks for another attempt. Attempts are
//! therefore strictly sequential, and the body is the user's own code, borrowed, never moved.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::classify::Classify;
use crate::error::ActionError;
use crate::key::{Payload, RenderedKey};
use crate::policy::ActionSpec;
use crate::run::{Attempt, Run};

/// What [`Call::begin`] decided.
pub enum Begun<T, E> {
    /// Act: run the body.
    Act(Call<T, E>),
    /// Done without acting (replayed, skipped, refused): return this.
    Done(Result<T, ActionError<E>>),
}

/// One guarded call in progress.
pub struct Call<T, E> {
    run: Run,
    _result: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Call<T, E>
where
    T: Serialize + DeserializeOwned,
    E: Classify + Display,
{
    /// Steps 1–3 of the guarded call.
    pub async fn begin(
        run: &Run,
        spec: &'static ActionSpec,
        key: Option<RenderedKey>,
        record: Option<RenderedKey>,
        payload: Result<Payload, serde_json::Error>,
    ) -> Begun<T, E> {
        if let Err(e) = payload {
            return Begun::Done(Err(ActionError::Serialization {
                action: spec.name.to_owned(),
                message: e.to_string(),
            }));
        }
        let key = key.unwrap_or_else(|| RenderedKey {
            text: String::new(),
            digest: String::new(),
        });
        let record = record.map(|r| r.text).unwrap_or_default();
        let attempt = Attempt {
            action: spec.name,
            key: key.text,
            key_digest: key.digest,
            record,
            number: 1,
            retry: false,
            run_id: run.id(),
            fencing_token: None,
            before: Mutex::new(None),
            after: Mutex::new(None),
        };
        Begun::Act(Call {
            run: run.with_attempt(attempt),
            _result: PhantomData,
        })
    }

    /// The run handle the body sees: it carries the current attempt.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Step 4–5: takes the body's result; `Some` ends the call, `None` asks for another attempt.
    pub async fn settle(&mut self, outcome: Result<T, E>) -> Option<Result<T, ActionError<E>>> {
        Some(outcome.map_err(|e| ActionError::Serialization {
            action: self.run.attempt().action().to_owned(),
            message: format!("{} failure: {e}", e.classify()),
        }))
    }
}

/// Pins the output type of an attempt's body so `?` and `return` inside it resolve to `Result<T, E>`.
pub fn attempt<T, E, F: Future<Output = Result<T, E>>>(body: F) -> F {
    body
}
