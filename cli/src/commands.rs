//! The commands themselves: read the store, print tables or JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use actguard::ops;
use actguard::store::{Millis, QueueQuery};
use actguard::{
    Agent, LogEntry, LogHead, LogQuery, QueueEntry, RunState, Store, StoreError, VerifyError,
};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::checkpoint;
use crate::display::{escape, escape_lines};
use crate::table::{Table, cut, short_run};
use crate::time::{DurationArg, TimeArg, format_age, format_ms, format_short, system_now_ms};
use crate::{
    CliError, LogArgs, OpsCommand, QueueCommand, QueueLsArgs, QueueShowArgs, RunsArgs, SelectArgs,
    ShowArgs, VerifyArgs,
};

/// What a command runs against.
pub struct Ctx {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The agent, when mounted in the agent's binary (its registry and resources).
    pub agent: Option<Agent>,
    /// Now, for relative times and ages.
    pub now_ms: Millis,
}

impl Ctx {
    /// Runs `cmd`, writing its output to `out`.
    pub async fn run(&self, cmd: OpsCommand, out: &mut dyn Write) -> Result<(), CliError> {
        match cmd {
            OpsCommand::Log(args) => self.log(args, out).await,
            OpsCommand::Show(args) => self.show(args, out).await,
            OpsCommand::Verify(args) => self.verify(args, out).await,
            OpsCommand::Runs(args) => self.runs(args, out).await,
            OpsCommand::Queue(QueueCommand::Ls(args)) => self.queue_ls(args, out).await,
            OpsCommand::Queue(QueueCommand::Show(args)) => self.queue_show(args, out).await,
            OpsCommand::Queue(QueueCommand::Claim(args)) => {
                let agent = self.operator_agent()?;
                let before = self.queue_entry(args.id).await?;
                let e = ops::queue_claim(&agent, args.id, &args.by).await?;
                writeln!(
                    out,
                    "queue entry {} ({} {}, {} {}) claimed by {}",
                    e.id,
                    e.kind.as_str(),
                    escape(&e.name),
                    escape(&before.action),
                    escape(&before.record),
                    escape(&args.by)
                )?;
                Ok(())
            }
            OpsCommand::Queue(QueueCommand::Resolve(resolve)) => {
                let args = &resolve.note;
                let agent = self.operator_agent()?;
                self.queue_entry(args.id).await?;
                let e = if resolve.release {
                    ops::queue_release(&agent, args.id, &args.by, &args.note).await?
                } else {
                    ops::queue_resolve(&agent, args.id, &args.by, &args.note).await?
                };
                let released = if resolve.release {
                    ", its key released"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "queue entry {} ({} {}) resolved by {}{released}: {}",
                    e.id,
                    escape(&e.action),
                    escape(&e.record),
                    escape(&args.by),
                    escape(&args.note)
                )?;
                Ok(())
            }
            OpsCommand::Queue(QueueCommand::Approve(args)) => {
                let agent = self.operator_agent()?;
                self.queue_entry(args.id).await?;
                let e = ops::queue_approve(&agent, args.id, &args.by).await?;
                writeln!(
                    out,
                    "approval request {} ({} {}) approved by {}: the key acts at its next call",
                    e.id,
                    escape(&e.action),
                    escape(&e.record),
                    escape(&args.by)
                )?;
                Ok(())
            }
            OpsCommand::Queue(QueueCommand::Reject(args)) => {
                let agent = self.operator_agent()?;
                self.queue_entry(args.id).await?;
                let e = ops::queue_reject(&agent, args.id, &args.by, &args.note).await?;
                writeln!(
                    out,
                    "approval request {} ({} {}) rejected by {}: {}",
                    e.id,
                    escape(&e.action),
                    escape(&e.record),
                    escape(&args.by),
                    escape(&args.note)
                )?;
                Ok(())
            }
            OpsCommand::Queue(QueueCommand::Discard(args)) => {
                let agent = self.operator_agent()?;
                self.queue_entry(args.id).await?;
                let e = ops::queue_discard(&agent, args.id, &args.by, &args.note).await?;
                writeln!(
                    out,
                    "queue entry {} ({} {}) discarded by {}: {}",
                    e.id,
                    escape(&e.action),
                    escape(&e.record),
                    escape(&args.by),
                    escape(&args.note)
                )?;
                Ok(())
            }
            OpsCommand::Queue(QueueCommand::Replay(args)) => {
                let Some(agent) = &self.agent else {
                    return Err(CliError::NeedsRegistry("queue replay"));
                };
                self.queue_entry(args.id).await?;
                let r = ops::replay(agent, args.id, &args.by).await?;
                match &r.outcome {
                    Ok(result) => {
                        writeln!(
                            out,
                            "queue entry {} ({} {}) replayed by {} in run {}: succeeded",
                            r.entry.id,
                            escape(&r.entry.action),
                            escape(&r.entry.record),
                            escape(&args.by),
                            r.run_id
                        )?;
                        writeln!(out, "result: {}", escape(&result.to_string()))?;
                        Ok(())
                    }
                    Err(e) => {
                        writeln!(
                            out,
                            "queue entry {} ({} {}) replayed by {} in run {}: failed again; the entry \
                             is {} ({} attempts)",
                            r.entry.id,
                            escape(&r.entry.action),
                            escape(&r.entry.record),
                            escape(&args.by),
                            r.run_id,
                            r.entry.status.as_str(),
                            r.entry.attempts
                        )?;
                        Err(CliError::Failed(format!(
                            "the replay of queue entry {} failed: {e}",
                            r.entry.id
                        )))
                    }
                }
            }
            OpsCommand::BlastRadius(args) => self.blast_radius(args, out).await,
            OpsCommand::Revert(args) => {
                let Some(agent) = &self.agent else {
                    return Err(CliError::NeedsRegistry("revert"));
                };
                let query = self.select(&args.select).await?;
                let radius = ops::blast_radius(self.store.as_ref(), &query).await?;
                let report = ops::revert(
                    agent,
                    &radius,
                    &ops::RevertOptions {
                        dry_run: args.dry_run,
                        by: args.by.clone(),
                    },
                )
                .await?;
                if args.select.json {
                    print_json(out, &report)?;
                } else {
                    writeln!(out, "{}", escape_lines(&report.to_string()))?;
                }
                let left = report.diverged() + report.failed();
                if left > 0 {
                    return Err(CliError::Failed(format!(
                        "{} not reverted (listed above)",
                        count(left, "record was", "records were")
                    )));
                }
                Ok(())
            }
        }
    }

    async fn log(&self, args: LogArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let query = LogQuery {
            run_id: self.resolve_run(args.run.as_deref()).await?,
            action: args.action,
            record: args.record,
            outcome: args.outcome,
            from_ms: self.time(args.since)?,
            to_ms: self.time(args.until)?,
            after_seq: None,
            limit: None,
        };
        let mut entries = self.store.log(&query).await?;
        if let Some(n) = args.limit {
            let skip = entries.len().saturating_sub(n);
            entries.drain(..skip);
        }
        if args.json {
            let values: Vec<Value> = entries.iter().map(entry_json).collect();
            return print_json(out, &values);
        }
        let mut t = Table::new(&[
            "seq", "time", "run", "action", "record", "attempt", "outcome", "detail",
        ]);
        for e in &entries {
            let n = &e.entry;
            t.row(vec![
                e.seq.to_string(),
                format_short(n.at_ms),
                short_run(&n.run_id),
                n.action.to_string(),
                cut(&n.record, 24),
                if n.attempt == 0 {
                    "-".to_owned()
                } else {
                    n.attempt.to_string()
                },
                n.outcome.as_str().to_owned(),
                cut(&detail(e), 80),
            ]);
        }
        write!(out, "{}", t.render())?;
        writeln!(out, "{}", count(entries.len(), "entry", "entries"))?;
        Ok(())
    }

    async fn show(&self, args: ShowArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let e = self.entry(args.seq).await?;
        if args.json {
            return print_json(out, &entry_json(&e));
        }
        let n = &e.entry;
        let mut lines: Vec<(&str, String)> = vec![
            ("seq", e.seq.to_string()),
            ("time", format_ms(n.at_ms)),
            ("run", n.run_id.to_string()),
            ("action", n.action.to_string()),
            ("record", n.record.to_string()),
            ("key", n.key_text.to_string()),
            ("key digest", n.key_digest.to_string()),
            (
                "attempt",
                if n.attempt == 0 {
                    "- (not an attempt)".to_owned()
                } else if n.retry {
                    format!("{} (retry)", n.attempt)
                } else {
                    n.attempt.to_string()
                },
            ),
            ("outcome", n.outcome.as_str().to_owned()),
        ];
        if let Some(k) = n.failure_kind {
            lines.push(("failure kind", k.as_str().to_owned()));
        }
        if let Some(r) = n.route {
            lines.push(("route", r.as_str().to_owned()));
        }
        if let Some(m) = &n.message {
            lines.push(("message", m.clone()));
        }
        if let Some(q) = n.queue_entry {
            lines.push(("queue entry", q.to_string()));
        }
        if let Some(t) = n.fencing_token {
            lines.push(("fencing token", t.to_string()));
        }
        lines.push(("duration", format!("{} ms", n.duration_ms)));
        lines.push(("prev hash", e.prev_hash.to_string()));
        lines.push(("hash", e.hash.to_string()));
        fields(out, &lines)?;
        for (k, v) in [("before", &n.before), ("after", &n.after)] {
            match v {
                Some(v) => writeln!(out, "{k}:\n{}", indent(&pretty(v)))?,
                None => writeln!(out, "{:<15}none", format!("{k}:"))?,
            }
        }
        Ok(())
    }

    async fn verify(&self, args: VerifyArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let expected = match &args.checkpoint {
            Some(file) => checkpoint::last(file)?,
            None => args.expect_head,
        };
        match actguard::verify_report(self.store.as_ref(), expected.as_ref()).await {
            Ok(report) => {
                writeln!(
                    out,
                    "ok: {} verified",
                    count(report.entries as usize, "entry", "entries")
                )?;
                match &report.head {
                    Some(head) => writeln!(out, "head: {head}")?,
                    None => writeln!(out, "head: none (the log is empty)")?,
                }
                if let (Some(file), Some(head)) = (&args.checkpoint, &report.head) {
                    if expected.as_ref() == Some(head) {
                        writeln!(out, "checkpoint: unchanged in {}", file.display())?;
                    } else {
                        checkpoint::append(file, head, report.entries, system_now_ms())?;
                        writeln!(out, "checkpoint: {head} appended to {}", file.display())?;
                    }
                }
                Ok(())
            }
            Err(VerifyError::Chain(e)) => {
                writeln!(out, "TAMPERED: {}", escape(&e.to_string()))?;
                Err(CliError::Tampered(e))
            }
            Err(VerifyError::Head(e)) => {
                writeln!(out, "TAMPERED: {e}")?;
                Err(CliError::HeadMismatch(e))
            }
            // A row that no longer parses was edited (or damaged) outside the store.
            Err(VerifyError::Store(StoreError::Corrupt(m))) => {
                writeln!(out, "TAMPERED: {}", escape(&m))?;
                Err(CliError::LogUnreadable(m.to_string()))
            }
            Err(VerifyError::Store(e)) => Err(e.into()),
        }
    }

    async fn runs(&self, args: RunsArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let entries = self.store.log(&LogQuery::default()).await?;
        let mut runs: Vec<RunSummary> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        for e in &entries {
            let n = &e.entry;
            let i = *index.entry(n.run_id).or_insert_with(|| {
                runs.push(RunSummary {
                    run_id: n.run_id,
                    first_ms: n.at_ms,
                    last_ms: n.at_ms,
                    entries: 0,
                    outcomes: BTreeMap::new(),
                    halted: None,
                    head: LogHead::of(e),
                });
                runs.len() - 1
            });
            let r = &mut runs[i];
            r.first_ms = r.first_ms.min(n.at_ms);
            r.last_ms = r.last_ms.max(n.at_ms);
            r.entries += 1;
            *r.outcomes.entry(n.outcome.as_str()).or_default() += 1;
            r.head = LogHead::of(e);
        }
        for r in &mut runs {
            if let RunState::Halted { reason, at_ms } = self.store.run_state(r.run_id).await? {
                r.halted = Some((reason, at_ms));
            }
        }
        if args.json {
            let values: Vec<Value> = runs
                .iter()
                .map(|r| {
                    json!({
                        "run_id": r.run_id,
                        "first_ms": r.first_ms,
                        "first": format_ms(r.first_ms),
                        "last_ms": r.last_ms,
                        "last": format_ms(r.last_ms),
                        "entries": r.entries,
                        "outcomes": r.outcomes,
                        "halted": r.halted.is_some(),
                        "halt_reason": r.halted.as_ref().map(|h| &h.0),
                        "halted_at_ms": r.halted.as_ref().map(|h| h.1),
                        "head": r.head,
                    })
                })
                .collect();
            return print_json(out, &values);
        }
        let mut t = Table::new(&[
            "run", "first", "last", "entries", "outcomes", "head", "state",
        ]);
        for r in &runs {
            let outcomes: Vec<String> =
                r.outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect();
            t.row(vec![
                r.run_id.to_string(),
                format_short(r.first_ms),
                format_short(r.last_ms),
                r.entries.to_string(),
                outcomes.join(", "),
                format!(
                    "{}:{}…",
                    r.head.seq,
                    r.head.hash.chars().take(12).collect::<String>()
                ),
                match &r.halted {
                    Some((reason, at)) => {
                        format!("HALTED at {}: {}", format_short(*at), cut(reason, 72))
                    }
                    None => "active".to_owned(),
                },
            ]);
        }
        write!(out, "{}", t.render())?;
        writeln!(out, "{}", count(runs.len(), "run", "runs"))?;
        // The last entry read is the log's head: what `verify --expect-head` checks later.
        if let Some(last) = entries.last() {
            writeln!(out, "head: {}", escape(&LogHead::of(last).to_string()))?;
        }
        Ok(())
    }

    async fn queue_ls(&self, args: QueueLsArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let older_than = args.older_than.map(|DurationArg(age)| age);
        let query = QueueQuery {
            older_than_ms: older_than.map(|age| self.now_ms - age),
            kind: args.queue,
            name: args.name,
            action: args.action,
            status: args.status,
            ..QueueQuery::default()
        };
        let entries = ops::queue_list(self.store.as_ref(), &query).await?;
        if args.json {
            let values: Vec<Value> = entries.iter().map(queue_json).collect();
            return print_json(out, &values);
        }
        let mut t = Table::new(&[
            "id", "queue", "status", "age", "action", "record", "attempts", "failure",
        ]);
        for q in &entries {
            t.row(vec![
                q.id.to_string(),
                format!("{} {}", q.kind.as_str(), q.name),
                enum_str(&q.status),
                format_age(self.now_ms - q.created_ms),
                q.action.clone(),
                cut(&q.record, 24),
                q.attempts.to_string(),
                cut(&format!("{}: {}", q.failure_kind.as_str(), q.message), 72),
            ]);
        }
        write!(out, "{}", t.render())?;
        writeln!(out, "{}", count(entries.len(), "entry", "entries"))?;
        Ok(())
    }

    async fn queue_show(&self, args: QueueShowArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let q = self.queue_entry(args.id).await?;
        if args.json {
            return print_json(out, &queue_json(&q));
        }
        let lines: Vec<(&str, String)> = vec![
            ("id", q.id.to_string()),
            ("queue", format!("{} {}", q.kind.as_str(), q.name)),
            ("status", enum_str(&q.status)),
            ("created", format_ms(q.created_ms)),
            ("run", q.run_id.to_string()),
            ("action", q.action.clone()),
            ("record", q.record.clone()),
            ("key", q.key_text.clone()),
            ("failure kind", q.failure_kind.as_str().to_owned()),
            ("message", q.message.clone()),
            ("attempts", q.attempts.to_string()),
            ("first failure", format_ms(q.first_failure_ms)),
            ("last failure", format_ms(q.last_failure_ms)),
        ];
        let mut lines = lines;
        if let Some(by) = &q.claimed_by {
            lines.push(("by", by.clone()));
        }
        if let Some(note) = &q.note {
            lines.push(("note", note.clone()));
        }
        if let Some(at) = q.closed_ms {
            lines.push(("closed", format_ms(at)));
        }
        fields(out, &lines)?;
        writeln!(out, "payload:\n{}", indent(&pretty(&q.payload)))?;
        Ok(())
    }

    async fn blast_radius(&self, args: SelectArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let query = self.select(&args).await?;
        let radius = ops::blast_radius(self.store.as_ref(), &query).await?;
        if args.json {
            let values: Vec<Value> = radius
                .records
                .iter()
                .map(|r| {
                    json!({
                        "record": r.record,
                        "action": r.action,
                        "seq": r.seq,
                        "seqs": r.seqs,
                        "writes": r.writes,
                        "at_ms": r.at_ms,
                        "time": format_ms(r.at_ms),
                        "run_id": r.run_id,
                        "key": r.key_text,
                        "before": r.before,
                        "after": r.after,
                    })
                })
                .collect();
            return print_json(out, &values);
        }
        // One row per record: the state before its first write → after its last, over `writes`.
        let mut t = Table::new(&[
            "seq",
            "time",
            "action",
            "record",
            "writes",
            "before → after",
        ]);
        for r in &radius.records {
            let seq = match r.seqs.first() {
                Some(first) if r.writes > 1 => format!("{first}…{}", r.seq),
                _ => r.seq.to_string(),
            };
            t.row(vec![
                seq,
                format_short(r.at_ms),
                r.action.clone(),
                cut(&r.record, 24),
                r.writes.to_string(),
                format!(
                    "{} → {}",
                    cut(&compact(r.before.as_ref()), 40),
                    cut(&compact(r.after.as_ref()), 40)
                ),
            ]);
        }
        write!(out, "{}", t.render())?;
        let writes = radius.writes();
        if writes == radius.len() {
            writeln!(out, "{} written", count(radius.len(), "record", "records"))?;
        } else {
            writeln!(
                out,
                "{} written, by {}",
                count(radius.len(), "record", "records"),
                count(writes, "write", "writes")
            )?;
        }
        Ok(())
    }

    /// The agent operator actions run as: the mounted agent, or one on the store with no actions
    /// (enough for claim, resolve and discard, which run no application code).
    fn operator_agent(&self) -> Result<Agent, CliError> {
        match &self.agent {
            Some(agent) => Ok(agent.clone()),
            None => Agent::builder()
                .shared_store(self.store.clone())
                .build()
                .map_err(|e| CliError::Failed(e.to_string())),
        }
    }

    /// The log query of a selection (`--action`, `--run`, `--record`, `--since`, `--until`).
    pub(crate) async fn select(&self, args: &SelectArgs) -> Result<LogQuery, CliError> {
        if args.action.is_none() && args.run.is_none() && args.record.is_none() {
            return Err(CliError::Usage(
                "select the entries with at least one of --action, --run or --record".to_owned(),
            ));
        }
        Ok(LogQuery {
            run_id: self.resolve_run(args.run.as_deref()).await?,
            action: args.action.clone(),
            record: args.record.clone(),
            outcome: None,
            from_ms: self.time(args.since)?,
            to_ms: self.time(args.until)?,
            after_seq: None,
            limit: None,
        })
    }

    fn time(&self, time: Option<TimeArg>) -> Result<Option<Millis>, CliError> {
        time.map(|t| t.resolve(self.now_ms)).transpose()
    }

    /// A full run id, or the unique run of the log whose id ends (or starts) with `text`.
    pub(crate) async fn resolve_run(&self, text: Option<&str>) -> Result<Option<Uuid>, CliError> {
        let Some(text) = text else { return Ok(None) };
        if let Ok(id) = Uuid::parse_str(text) {
            return Ok(Some(id));
        }
        let needle = text.to_ascii_lowercase().replace('-', "");
        if needle.len() < 4 || !needle.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CliError::Usage(format!(
                "`{text}` is not a run id: give the full id or the short id shown by `runs` and `log`"
            )));
        }
        let mut found: Vec<Uuid> = Vec::new();
        for e in self.store.log(&LogQuery::default()).await? {
            let id = e.entry.run_id;
            let s = id.simple().to_string();
            if (s.ends_with(&needle) || s.starts_with(&needle)) && !found.contains(&id) {
                found.push(id);
            }
        }
        match found.as_slice() {
            [id] => Ok(Some(*id)),
            [] => Err(CliError::NotFound(format!(
                "no run in the log matches `{text}`"
            ))),
            _ => Err(CliError::Usage(format!(
                "`{text}` matches {} runs: give more of the id",
                found.len()
            ))),
        }
    }

    pub(crate) async fn entry(&self, seq: u64) -> Result<LogEntry, CliError> {
        let page = self
            .store
            .log(&LogQuery {
                after_seq: Some(seq.saturating_sub(1)),
                limit: Some(1),
                ..LogQuery::default()
            })
            .await?;
        page.into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| CliError::NotFound(format!("no log entry with seq {seq}")))
    }

    pub(crate) async fn queue_entry(&self, id: u64) -> Result<QueueEntry, CliError> {
        self.store
            .queue_entry(id)
            .await?
            .ok_or_else(|| CliError::NotFound(format!("no queue entry with id {id}")))
    }
}

struct RunSummary {
    run_id: Uuid,
    first_ms: Millis,
    last_ms: Millis,
    entries: usize,
    outcomes: BTreeMap<&'static str, usize>,
    halted: Option<(String, Millis)>,
    /// The run's last entry: the log's head when the run last wrote to it.
    head: LogHead,
}

/// The snake_case spelling of a serializable enum.
fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// What the log table shows in its last column: the failure kind and message, or the note.
fn detail(e: &LogEntry) -> String {
    let n = &e.entry;
    let mut parts = Vec::new();
    if let Some(k) = n.failure_kind {
        parts.push(k.as_str().to_owned());
    }
    if let Some(q) = n.queue_entry {
        parts.push(format!("queue #{q}"));
    }
    let head = parts.join(", ");
    match (&n.message, head.is_empty()) {
        (Some(m), true) => m.clone(),
        (Some(m), false) => format!("{head}: {m}"),
        (None, _) => head,
    }
}

fn entry_json(e: &LogEntry) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("time".to_owned(), Value::String(format_ms(e.entry.at_ms)));
    }
    v
}

fn queue_json(q: &QueueEntry) -> Value {
    let mut v = serde_json::to_value(q).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("created".to_owned(), Value::String(format_ms(q.created_ms)));
    }
    v
}

fn print_json<T: Serialize>(out: &mut dyn Write, value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn compact(v: Option<&Value>) -> String {
    v.map_or("none".to_owned(), Value::to_string)
}

/// Labelled lines (`key:` padded to 15 columns, then the value), the values escaped ([`escape`]).
fn fields(out: &mut dyn Write, lines: &[(&str, String)]) -> Result<(), CliError> {
    for (k, v) in lines {
        writeln!(out, "{:<15}{}", format!("{k}:"), escape(v))?;
    }
    Ok(())
}

/// `text` (pretty JSON) indented by two spaces, each line escaped ([`escape`]).
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {}", escape(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
