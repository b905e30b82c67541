//! Counters per action and outcome, for dashboards: [`Agent::metrics`](crate::Agent::metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts of guarded calls (and retried attempts) per action and outcome.
///
/// Outcomes: `succeeded`, `replayed`, `skipped`, `retrying` (one per retried attempt), `routed`,
/// `dead_lettered`, `halted` (this call halted the run), `refused` (the run was halted before),
/// `in_progress`, `key_reused`, `previously_failed`, `failed` (a `read` action gave up),
/// `store_error`, `serialization_error`, `payload_refused` (beyond the [limits](crate::limits)),
/// `unrecorded`, `result_not_stored`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    counters: BTreeMap<(String, String), u64>,
}

impl MetricsSnapshot {
    /// The count for one action and outcome (0 if never seen).
    pub fn get(&self, action: &str, outcome: &str) -> u64 {
        self.counters
            .get(&(action.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The count for one outcome over all actions.
    pub fn total(&self, outcome: &str) -> u64 {
        self.counters
            .iter()
            .filter(|((_, o), _)| o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every `(action, outcome, count)`, sorted by action then outcome.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.counters
            .iter()
            .map(|((a, o), n)| (a.as_str(), o.as_str(), *n))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub(crate) fn count(&self, action: &'static str, outcome: &'static str) {
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
                .map(|((a, o), n)| (((*a).to_owned(), (*o).to_owned()), *n))
                .collect(),
        }
    }
}
