//! Counters per action and outcome, for dashboards: [`Agent::metrics`](crate::Agent::metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one guarded call (or one retried attempt) came to, as [`Agent::metrics`](crate::Agent::metrics)
/// counts it. [`MetricOutcome::as_str`] is its name on a dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MetricOutcome {
    /// `succeeded`: the action ran and its result was recorded.
    Succeeded,
    /// `replayed`: the key was completed before: its stored result answered.
    Replayed,
    /// `skipped`: the loop filter skipped the record, acted on within the window.
    Skipped,
    /// `retrying`: one per retried attempt.
    Retrying,
    /// `routed`: routed to a review queue.
    Routed,
    /// `dead_lettered`: retries or the time budget ran out.
    DeadLettered,
    /// `halted`: this call halted the run.
    Halted,
    /// `refused`: the run was halted before.
    Refused,
    /// `in_progress`: another worker held the key past the wait.
    InProgress,
    /// `key_reused`: the key was used before with another payload.
    KeyReused,
    /// `previously_failed`: the key failed before and waits in a queue.
    PreviouslyFailed,
    /// `failed`: a `read` action gave up.
    Failed,
    /// `store_error`: the store failed before the body ran.
    StoreError,
    /// `serialization_error`: the payload or result could not be serialized.
    SerializationError,
    /// `payload_refused`: the payload is beyond the [limits](crate::limits).
    PayloadRefused,
    /// `unrecorded`: the body ran but its outcome could not be recorded.
    Unrecorded,
    /// `result_not_stored`: the body succeeded but its result could not be stored.
    ResultNotStored,
    /// `awaiting_approval`: an approval was requested, or is still pending.
    AwaitingApproval,
    /// `rejected`: the approval was rejected.
    Rejected,
}

impl MetricOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [MetricOutcome; 19] = [
        MetricOutcome::Succeeded,
        MetricOutcome::Replayed,
        MetricOutcome::Skipped,
        MetricOutcome::Retrying,
        MetricOutcome::Routed,
        MetricOutcome::DeadLettered,
        MetricOutcome::Halted,
        MetricOutcome::Refused,
        MetricOutcome::InProgress,
        MetricOutcome::KeyReused,
        MetricOutcome::PreviouslyFailed,
        MetricOutcome::Failed,
        MetricOutcome::StoreError,
        MetricOutcome::SerializationError,
        MetricOutcome::PayloadRefused,
        MetricOutcome::Unrecorded,
        MetricOutcome::ResultNotStored,
        MetricOutcome::AwaitingApproval,
        MetricOutcome::Rejected,
    ];

    /// The outcome's name: `succeeded`, `dead_lettered`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            MetricOutcome::Succeeded => "succeeded",
            MetricOutcome::Replayed => "replayed",
            MetricOutcome::Skipped => "skipped",
            MetricOutcome::Retrying => "retrying",
            MetricOutcome::Routed => "routed",
            MetricOutcome::DeadLettered => "dead_lettered",
            MetricOutcome::Halted => "halted",
            MetricOutcome::Refused => "refused",
            MetricOutcome::InProgress => "in_progress",
            MetricOutcome::KeyReused => "key_reused",
            MetricOutcome::PreviouslyFailed => "previously_failed",
            MetricOutcome::Failed => "failed",
            MetricOutcome::StoreError => "store_error",
            MetricOutcome::SerializationError => "serialization_error",
            MetricOutcome::PayloadRefused => "payload_refused",
            MetricOutcome::Unrecorded => "unrecorded",
            MetricOutcome::ResultNotStored => "result_not_stored",
            MetricOutcome::AwaitingApproval => "awaiting_approval",
            MetricOutcome::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for MetricOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of guarded calls (and retried attempts) per action and [`MetricOutcome`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    counters: BTreeMap<(String, MetricOutcome), u64>,
}

impl MetricsSnapshot {
    /// The count for one action and outcome (0 if never seen).
    pub fn get(&self, action: &str, outcome: MetricOutcome) -> u64 {
        self.counters
            .get(&(action.to_owned(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// The count for one outcome over all actions.
    pub fn total(&self, outcome: MetricOutcome) -> u64 {
        self.counters
            .iter()
            .filter(|((_, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every `(action, outcome, count)`, sorted by action then outcome.
    pub fn iter(&self) -> impl Iterator<Item = (&str, MetricOutcome, u64)> {
        self.counters.iter().map(|((a, o), n)| (a.as_str(), *o, *n))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, MetricOutcome), u64>>,
}

impl Metrics {
    pub(crate) fn count(&self, action: &'static str, outcome: MetricOutcome) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((action, outcome))
            .or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        MetricsSnapshot {
            counters: counters
                .iter()
                .map(|((a, o), n)| (((*a).to_owned(), *o), *n))
                .collect(),
        }
    }
}
