//! The Markdown "five questions" sign-off sheet: a summary table, then one section per action that
//! answers each question in plain sentences.

use super::duration::long_duration_str;
use super::{
    ActionEntry, DOWNSTREAM_KEY, FailureRouting, FilterOff, LogAnswer, Manifest, RouteAnswer,
};
use crate::policy::{Effect, Jitter, Route};

impl Manifest {
    /// The "five questions" sign-off sheet: one section per action, in plain sentences.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        self.write_intro(&mut md);
        self.write_summary_table(&mut md);
        for a in &self.actions {
            a.write_markdown(&self.log, &mut md);
        }
        md
    }

    /// The title, the manifest's digest and what the sheet answers.
    fn write_intro(&self, md: &mut String) {
        md.push_str("# The five questions: action sign-off sheet\n\n");
        md.push_str(&format!(
            "Generated from the code by actguard. Manifest `{}` ({}), {}.\n\n",
            self.digest,
            self.schema_version,
            count(self.actions.len(), "action")
        ));
        md.push_str(
            "Each action below answers, from its `#[agent_action]` attribute: (1) its idempotency key, \
             (2) how often and how long it retries, (3) how it avoids acting twice on the same record, \
             (4) where each kind of failure goes, and (5) what the action log keeps. \"Left to defaults\" \
             lists the options the code did not write down.\n\n",
        );
    }

    /// One row per action; nothing when there is no action.
    fn write_summary_table(&self, md: &mut String) {
        if self.actions.is_empty() {
            return;
        }
        md.push_str(
            "| action | effect | idempotency key | retries | dedup window | compensated by |\n",
        );
        md.push_str("|---|---|---|---|---|---|\n");
        for a in &self.actions {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                cell(&a.name),
                a.idempotency.effect.as_str(),
                a.idempotency
                    .key
                    .as_deref()
                    .map_or("none".to_owned(), |k| format!("`{}`", cell(k))),
                a.retry_summary(),
                a.dedup_summary(),
                a.compensate.as_deref().map_or("none".to_owned(), cell),
            ));
        }
        md.push('\n');
    }
}

impl ActionEntry {
    /// `"5 within 2m"`, or `"none"` when transient failures are not retried.
    fn retry_summary(&self) -> String {
        if self.retries.retries == 0 || self.failure_routing.transient.route != Route::Retry {
            "none".to_owned()
        } else {
            format!(
                "{} within {}",
                self.retries.retries, self.retries.max_elapsed
            )
        }
    }

    /// The dedup window, or `"off (no record)"` and the like: the loop filter in one table cell.
    fn dedup_summary(&self) -> String {
        match (&self.dedup.window, self.dedup.off_because) {
            (Some(window), None) => window.clone(),
            (_, Some(FilterOff::Read)) => "off (read)".to_owned(),
            (_, Some(FilterOff::DedupNone)) => "off (`dedup = none`)".to_owned(),
            (_, Some(FilterOff::NoRecord)) => "off (no record)".to_owned(),
            (None, None) => "off".to_owned(),
        }
    }

    /// The action's section of the sheet: its heading, then the five answers, its signature and the
    /// options left to defaults.
    fn write_markdown(&self, log: &LogAnswer, md: &mut String) {
        self.write_heading(md);
        self.write_approval(md);
        self.write_idempotency(md);
        self.write_retries(md);
        self.write_dedup(md);
        self.write_failures(md);
        write_log(log, md);
        self.write_signature(md);
        self.write_defaults(md);
    }

    /// The name, where the action is declared, its effect and what reverses it.
    fn write_heading(&self, md: &mut String) {
        let effect = self.idempotency.effect;
        md.push_str(&format!("## {}\n\n", self.name));
        md.push_str(&format!(
            "`{}::{}` in `{}`. Effect: **{}**",
            self.source.module_path,
            self.source.fn_name,
            self.source.file,
            effect.as_str()
        ));
        match &self.compensate {
            Some(c) => md.push_str(&format!("; reversed by the action `{c}`.\n\n")),
            None if effect == Effect::Destructive => {
                md.push_str("; **no compensating action is declared**.\n\n")
            }
            None => md.push_str(".\n\n"),
        }
    }

    /// Who approves each key, if anyone does.
    fn write_approval(&self, md: &mut String) {
        if let Some(a) = &self.approval {
            md.push_str(&format!(
                "**Approval.** A person in the queue `{}` approves each key, with its payload, before \
                 it acts; an approval unused for {} expires.\n\n",
                a.queue,
                long_duration_str(&a.expires)
            ));
        }
    }

    /// Question 1: the idempotency key and the record.
    fn write_idempotency(&self, md: &mut String) {
        md.push_str("**1. Idempotency key.** ");
        match (&self.idempotency.key, self.idempotency.effect) {
            (Some(key), _) => {
                md.push_str(&format!(
                    "Every call is identified by the key `{key}`, saved in the store before the action \
                     runs. A call whose key has already completed returns the stored result without \
                     acting again, and a retry reuses the same key. The key is handed to the downstream \
                     system as `{DOWNSTREAM_KEY}`: confirm that the downstream honours it."
                ));
                match &self.idempotency.record {
                    Some(record) => {
                        md.push_str(&format!(" The record this action touches is `{record}`."))
                    }
                    None => md.push_str(
                        " No record is declared: each key is its own record (the log's `record` is \
                         the key).",
                    ),
                }
                md.push_str("\n\n");
            }
            (None, Effect::Read) => {
                md.push_str("This action only reads, so it needs no idempotency key.\n\n")
            }
            (None, _) => md.push_str(
                "**None declared**: a retry after a timeout may write twice. The startup audit rejects this.\n\n",
            ),
        }
    }

    /// Question 2: how often and how long a transient failure is retried.
    fn write_retries(&self, md: &mut String) {
        let r = &self.retries;
        let f = &self.failure_routing;
        md.push_str("**2. Retries.** ");
        let transient = &f.transient;
        if transient.route == Route::Retry && r.retries > 0 {
            md.push_str(&format!(
                "If the downstream fails with a transient error (a timeout, a 503, throttling), this \
                 action retries at most {} within {} ({} in all), waiting {} to {} between attempts \
                 (exponential backoff, {}), then puts the call in the dead-letter queue. Retries of one \
                 call never overlap.\n\n",
                count(r.retries as usize, "time"),
                long_duration_str(&r.max_elapsed),
                count(r.max_attempts as usize, "attempt"),
                long_duration_str(&r.backoff.base),
                long_duration_str(&r.backoff.cap),
                jitter_words(r.jitter),
            ));
        } else if transient.route == Route::Retry {
            md.push_str(
                "This action does not retry (`retries = 0`): a transient failure (a timeout, a 503, \
                 throttling) puts the call in the dead-letter queue.\n\n",
            );
        } else {
            md.push_str(&format!(
                "Transient failures (a timeout, a 503, throttling) are not retried: {}.\n\n",
                fate(transient, f)
            ));
        }
    }

    /// Question 3: the loop filter, and how calls on one record are serialized.
    fn write_dedup(&self, md: &mut String) {
        let d = &self.dedup;
        md.push_str("**3. Deduplication.** ");
        let record = self
            .idempotency
            .record
            .as_deref()
            .map_or("the same business object".to_owned(), |r| {
                format!("the record `{r}`")
            });
        match (&d.window, d.off_because) {
            (_, Some(FilterOff::Read)) => md.push_str(
                "This action only reads, so the loop filter does not apply: reads are not claimed, \
                 deduplicated or serialized.",
            ),
            (_, Some(FilterOff::DedupNone)) => md.push_str(&format!(
                "The loop filter is off (`dedup = none`): this action may act on {record} again on any \
                 new call; only calls with the same key are deduplicated."
            )),
            (_, Some(FilterOff::NoRecord)) => md.push_str(
                "**The loop filter is off: no record is declared.** Without a `record`, each key is its \
                 own record, so nothing is ever skipped: a repeat on the same business object under \
                 another key acts again, and only calls with the same key are deduplicated. Declare the \
                 business object this action acts on (the invoice, the work order, the shipment) as its \
                 `record` to turn the filter on.",
            ),
            (Some(window), None) => {
                md.push_str(&format!(
                    "Once this action has acted on {record}, it does not act on it again for {}: a \
                     repeat is skipped without calling the downstream, and the skip is logged.",
                    long_duration_str(window)
                ));
                if let Some(cycle) = &d.cycle {
                    md.push_str(&format!(
                        " The longest run cycle is {}, shorter than that window, so the next cycle \
                         cannot act twice.",
                        long_duration_str(cycle)
                    ));
                }
            }
            (None, None) => md.push_str("The loop filter is off."),
        }
        if self.idempotency.effect != Effect::Read {
            match &self.idempotency.record {
                Some(_) => md.push_str(&format!(
                    " Calls on the same record run one at a time: a worker's claim holds for {} before \
                     another worker may take it over, and each claim carries a fencing token.",
                    long_duration_str(&d.lease)
                )),
                None => md.push_str(&format!(
                    " Only calls with the same key run one at a time (a worker's claim holds for {} \
                     before another worker may take it over, and each claim carries a fencing token): \
                     calls on one business object under different keys may overlap.",
                    long_duration_str(&d.lease)
                )),
            }
        }
        md.push_str("\n\n");
    }

    /// Question 4: where each kind of failure goes, as a table.
    fn write_failures(&self, md: &mut String) {
        let f = &self.failure_routing;
        md.push_str(
            "**4. Failures.** Failures are classified by deterministic code (the `Classify` \
                     implementation of `",
        );
        md.push_str(&self.signature.error_type);
        md.push_str("`), not by a model.\n\n");
        md.push_str("| failure | meaning | where it goes |\n|---|---|---|\n");
        for (kind, meaning, answer) in [
            (
                "transient",
                "may succeed if tried again (timeout, 503, throttling)",
                &f.transient,
            ),
            ("validation", "the input is wrong", &f.validation),
            (
                "conflict",
                "the target's state does not allow the write",
                &f.conflict,
            ),
            ("security", "forbidden, tampered or suspicious", &f.security),
        ] {
            md.push_str(&format!(
                "| {kind} | {meaning} | {} |\n",
                cell(&destination(answer, f))
            ));
        }
        md.push('\n');
    }

    /// The payload stored for replay, the result and the error type.
    fn write_signature(&self, md: &mut String) {
        let payload = if self.signature.payload.is_empty() {
            "none".to_owned()
        } else {
            self.signature
                .payload
                .iter()
                .map(|p| format!("`{}: {}`", p.name, p.ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        md.push_str(&format!(
            "Payload (stored with queue entries for replay): {payload}. Returns `{}`, fails with `{}`.\n\n",
            self.signature.result_type, self.signature.error_type
        ));
    }

    /// The options the code did not write down.
    fn write_defaults(&self, md: &mut String) {
        let defaults = self.defaulted_options();
        if defaults.is_empty() {
            md.push_str("Left to defaults: nothing, every option is written in the code.\n\n");
        } else {
            md.push_str(&format!(
                "Left to defaults: {}.\n\n",
                defaults
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
}

/// Question 5: the action log, the same for every action.
fn write_log(log: &LogAnswer, md: &mut String) {
    md.push_str(&format!(
        "**5. Action log.** {} It is stored in {}; {} An entry holds: {}.\n\n",
        log.written,
        log.store,
        log.integrity,
        log.entry_fields
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// Where a failure goes, as a table cell.
fn destination(answer: &RouteAnswer, f: &FailureRouting) -> String {
    let queue = |q: &Option<String>, missing: &str| {
        q.as_deref()
            .map_or(format!("**{missing}**"), |q| format!("`{q}`"))
    };
    match answer.route {
        Route::Retry => "retried (see question 2), then the dead-letter queue".to_owned(),
        Route::RouteOwner => format!(
            "the data owner's queue {}",
            queue(&f.owner, "no owner named")
        ),
        Route::Escalate => format!(
            "escalated to the domain expert's queue {}",
            queue(&f.expert, "no expert named")
        ),
        Route::DeadLetter => "the dead-letter queue".to_owned(),
        Route::Halt => "halts the whole run and raises an alert".to_owned(),
    }
}

/// What happens to a failed call, as the end of a sentence.
fn fate(answer: &RouteAnswer, f: &FailureRouting) -> String {
    match answer.route {
        Route::Retry | Route::DeadLetter => "the call goes to the dead-letter queue".to_owned(),
        Route::Halt => "the whole run halts and an alert is raised".to_owned(),
        Route::RouteOwner => format!("the call goes to {}", destination(answer, f)),
        Route::Escalate => format!("the call is {}", destination(answer, f)),
    }
}

/// How delays are randomized, in words.
fn jitter_words(j: Jitter) -> &'static str {
    match j {
        Jitter::Full => "full jitter",
        Jitter::Equal => "equal jitter",
        Jitter::Decorrelated => "decorrelated jitter",
        Jitter::None => "no jitter",
    }
}

/// `"1 action"`, `"3 actions"`.
pub(super) fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `s` with its pipes escaped, for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}
