//! How a manifest is derived from the code: each action's answers from its `ActionSpec`, and the
//! action-log answer every action shares.

use super::{
    ActionEntry, ApprovalGate, BackoffPolicy, DOWNSTREAM_KEY, Dedup, FailureRouting, FieldDoc,
    FilterOff, Idempotency, LogAnswer, LoopFilter, OPTIONS, OptionSource, Param, Retries,
    RouteAnswer, Signature, Source, short_duration,
};
use crate::policy::{ActionSpec, Effect, FailureKind, ParamSpec, Route};

impl ActionEntry {
    pub(crate) fn from_spec(spec: &ActionSpec) -> ActionEntry {
        let p = &spec.policy;
        let queue_of = |route: Route| -> Option<String> {
            match route {
                Route::Retry | Route::DeadLetter => Some("dead_letter".to_owned()),
                Route::RouteOwner => p.owner.map(str::to_owned),
                Route::Escalate => p.expert.map(str::to_owned),
                Route::Halt => None,
            }
        };
        let answer = |kind: FailureKind| {
            let route = p.route_for(kind);
            RouteAnswer {
                route,
                queue: queue_of(route),
            }
        };
        let params = |ps: &[ParamSpec]| -> Vec<Param> {
            ps.iter()
                .map(|p| Param {
                    name: p.name.to_owned(),
                    ty: p.ty.to_owned(),
                })
                .collect()
        };
        // An explicit `dedup = none` is the first reason: the filter would be off with a record too.
        let off_because = if spec.effect == Effect::Read {
            Some(FilterOff::Read)
        } else if p.dedup.is_none() {
            Some(FilterOff::DedupNone)
        } else if spec.record.is_none() {
            Some(FilterOff::NoRecord)
        } else {
            None
        };
        ActionEntry {
            name: spec.name.to_owned(),
            source: Source {
                file: spec.file.to_owned(),
                module_path: spec.module_path.to_owned(),
                fn_name: spec.fn_name.to_owned(),
            },
            idempotency: Idempotency {
                effect: spec.effect,
                key: spec.key.map(str::to_owned),
                record: spec.record.map(str::to_owned),
                downstream_key: spec.key.map(|_| DOWNSTREAM_KEY.to_owned()),
            },
            retries: Retries {
                retries: p.retries,
                max_attempts: p.retries.saturating_add(1),
                max_elapsed: short_duration(p.max_elapsed),
                backoff: BackoffPolicy {
                    base: short_duration(p.backoff_base),
                    cap: short_duration(p.backoff_cap),
                },
                jitter: p.jitter,
            },
            dedup: Dedup {
                loop_filter: if off_because.is_some() {
                    LoopFilter::Off
                } else {
                    LoopFilter::On
                },
                off_because,
                window: p
                    .dedup
                    .filter(|_| off_because.is_none())
                    .map(short_duration),
                cycle: p.cycle.map(short_duration),
                lease: short_duration(p.lease),
            },
            failure_routing: FailureRouting {
                transient: answer(FailureKind::Transient),
                validation: answer(FailureKind::Validation),
                conflict: answer(FailureKind::Conflict),
                security: answer(FailureKind::Security),
                owner: p.owner.map(str::to_owned),
                expert: p.expert.map(str::to_owned),
            },
            compensate: spec.compensate.map(str::to_owned),
            approval: p.approve.map(|queue| ApprovalGate {
                queue: queue.to_owned(),
                expires: short_duration(p.approval_expires),
            }),
            tool: spec.tool.map(|t| t.description.to_owned()),
            signature: Signature {
                payload: params(spec.payload),
                deps: params(spec.deps),
                result_type: spec.result_type.to_owned(),
                error_type: spec.error_type.to_owned(),
            },
            options: OPTIONS
                .iter()
                .map(|o| {
                    let source = if spec.is_explicit(o) {
                        OptionSource::Explicit
                    } else {
                        OptionSource::Default
                    };
                    ((*o).to_owned(), source)
                })
                .collect(),
        }
    }
}

impl LogAnswer {
    pub(super) fn new(store: &str) -> LogAnswer {
        let fields: [(&str, &str); 20] = [
            ("seq", "position in the log: 1, 2, 3, … with no gaps"),
            ("at_ms", "when the step ended (Unix milliseconds)"),
            ("run_id", "the run (UUIDv7)"),
            ("action", "the action name"),
            ("record", "the record touched"),
            ("key_text", "the idempotency key, readable"),
            ("key_digest", "the idempotency key's digest"),
            (
                "attempt",
                "attempt number (0 for skips, replays and operator steps)",
            ),
            ("retry", "whether the attempt is a retry"),
            (
                "outcome",
                "succeeded, replayed, skipped, retrying, routed, dead_lettered, halted, compensated or operator",
            ),
            (
                "failure_kind",
                "transient, validation, conflict or security, if it failed",
            ),
            ("route", "where the failure went"),
            ("message", "the failure message or a note"),
            ("queue_entry", "the review-queue entry created or acted on"),
            ("before", "the record's state before the write"),
            (
                "after",
                "the record's state after the write (default: the result)",
            ),
            ("fencing_token", "the fencing token of the claim"),
            ("duration_ms", "how long the step took"),
            ("prev_hash", "hash of the previous entry"),
            ("hash", "SHA-256 of the previous hash and this entry"),
        ];
        LogAnswer {
            store: store.to_owned(),
            written:
                "Every attempt, skip, replay, routing, dead-letter, halt and operator step is \
                      appended to the action log as it happens, so the record of what was done \
                      survives a failed run."
                    .to_owned(),
            integrity:
                "entries are chained by SHA-256, so an edited, deleted or reordered entry is \
                        detected (`actguard verify`)."
                    .to_owned(),
            entry_fields: fields
                .iter()
                .map(|(name, holds)| FieldDoc {
                    name: (*name).to_owned(),
                    holds: (*holds).to_owned(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::log::{LogEntry, NewLogEntry, Outcome};
    use crate::manifest::DEFAULT_STORE;

    #[test]
    fn the_log_answer_names_every_field_of_a_log_entry() {
        let entry = LogEntry::chain(
            None,
            NewLogEntry {
                at_ms: 1,
                run_id: uuid::Uuid::nil(),
                action: "a".into(),
                record: "r".into(),
                key_text: "k".into(),
                key_digest: "d".into(),
                attempt: 1,
                retry: false,
                outcome: Outcome::Succeeded,
                failure_kind: None,
                route: None,
                message: None,
                queue_entry: None,
                before: None,
                after: None,
                fencing_token: None,
                duration_ms: 0,
            },
        );
        let Value::Object(fields) = serde_json::to_value(&entry).unwrap() else {
            panic!("a log entry serializes to an object");
        };
        let documented: Vec<String> = LogAnswer::new(DEFAULT_STORE)
            .entry_fields
            .into_iter()
            .map(|f| f.name)
            .collect();
        let mut actual: Vec<String> = fields.keys().cloned().collect();
        let mut expected = documented.clone();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected);
    }
}
