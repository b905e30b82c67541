//! The agent: store, alert sink, clock and audit settings shared by its runs.

use std::sync::Arc;

use uuid::Uuid;

use crate::clock::{Clock, TokioClock};
use crate::run::Run;

/// An agent: holds what its runs share. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<AgentInner>,
}

pub(crate) struct AgentInner {
    pub(crate) clock: Arc<dyn Clock>,
}

impl Agent {
    /// An agent with default settings.
    pub fn new() -> Self {
        Agent {
            inner: Arc::new(AgentInner {
                clock: Arc::new(TokioClock::new()),
            }),
        }
    }

    /// Starts a run (its id is a UUIDv7).
    pub fn start_run(&self) -> Run {
        Run {
            agent: self.clone(),
            id: Uuid::now_v7(),
            attempt: None,
        }
    }
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}
