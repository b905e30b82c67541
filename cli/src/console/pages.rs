//! The console's pages and operations.

use std::collections::BTreeMap;
use std::sync::Arc;

use actguard::ops::{self, OpsError};
use actguard::store::{Millis, QueueEntry, QueueKind, QueueQuery, QueueStatus, RunState};
use actguard::{LogEntry, LogQuery, StoreError};
use askama::Template;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::Console;
use super::auth::{self, Access, COOKIE, Person};
use crate::time::{format_ms, system_now_ms};

/// Why a page could not be shown: what the person reads.
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    Forbidden(String),
    Failed(String),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => PageError::NotFound(what.to_string()),
            other => PageError::Failed(other.to_string()),
        }
    }
}

impl From<OpsError> for PageError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Store(s) => s.into(),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Failed(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            PageError::Failed(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, message).into_response()
    }
}

type Page = Result<Html<String>, PageError>;

/// What every page shows around its content.
pub struct Frame {
    pub person: String,
    pub csrf: String,
    pub section: &'static str,
}

impl Frame {
    fn new(person: &Person, section: &'static str) -> Frame {
        Frame {
            person: person.name.clone(),
            csrf: person.csrf.clone().unwrap_or_default(),
            section,
        }
    }
}

/// A queue entry as a row.
pub struct EntryRow {
    pub id: u64,
    pub kind: &'static str,
    pub name: String,
    pub status: &'static str,
    pub age: String,
    pub action: String,
    pub record: String,
    pub failure: String,
    pub attempts: u32,
    pub message: String,
}

impl EntryRow {
    fn of(e: &QueueEntry, now_ms: Millis) -> EntryRow {
        EntryRow {
            id: e.id,
            kind: e.kind.as_str(),
            name: e.name.clone(),
            status: e.status.as_str(),
            age: crate::time::format_age(now_ms.saturating_sub(e.created_ms)),
            action: e.action.clone(),
            record: e.record.clone(),
            failure: if e.kind == QueueKind::Approval {
                "approval".to_owned()
            } else {
                e.failure_kind.as_str().to_owned()
            },
            attempts: e.attempts,
            message: e.message.clone(),
        }
    }
}

/// A log entry as a row.
pub struct LogRow {
    pub seq: u64,
    pub at: String,
    pub run: String,
    /// The run id's last 12 characters, as the command line shows it.
    pub run_short: String,
    pub action: String,
    pub record: String,
    pub key: String,
    pub attempt: u32,
    pub outcome: &'static str,
    pub message: String,
}

impl LogRow {
    fn of(e: &LogEntry) -> LogRow {
        let n = &e.entry;
        LogRow {
            seq: e.seq,
            at: format_ms(n.at_ms),
            run: n.run_id.to_string(),
            run_short: n.run_id.simple().to_string()[20..].to_owned(),
            action: n.action.to_string(),
            record: n.record.to_string(),
            key: n.key_text.to_string(),
            attempt: n.attempt,
            outcome: n.outcome.as_str(),
            message: n.message.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    frame: Frame,
    tabs: Vec<(&'static str, usize, bool)>,
    /// The queue kind shown.
    kind: &'static str,
    /// One tab per queue of that kind (an owner queue per data owner, ...): name, open entries,
    /// whether it is the one shown.
    queues: Vec<(String, usize, bool)>,
    status: String,
    name: String,
    rows: Vec<EntryRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueFilter {
    kind: Option<String>,
    status: Option<String>,
    name: Option<String>,
}

/// The review queues: one tab per kind, and under it one per queue of that kind (the owner queue of
/// each data owner, ...); open entries first, filtered by status and queue name.
pub async fn queues(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
    Query(filter): Query<QueueFilter>,
) -> Page {
    let kind = match filter.kind.as_deref().filter(|k| !k.is_empty()) {
        None => QueueKind::Owner,
        Some(k) => QueueKind::parse(k)
            .ok_or_else(|| PageError::BadRequest(format!("no queue kind `{k}`")))?,
    };
    let status = match filter.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            QueueStatus::parse(s)
                .ok_or_else(|| PageError::BadRequest(format!("no queue status `{s}`")))?,
        ),
    };
    let name = filter.name.unwrap_or_default();
    let all = console.store.queue_entries(&QueueQuery::default()).await?;
    let tabs = QueueKind::ALL
        .iter()
        .map(|k| {
            let open = all
                .iter()
                .filter(|e| e.kind == *k && !e.status.is_terminal())
                .count();
            (k.as_str(), open, *k == kind)
        })
        .collect();
    let mut queues: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in all.iter().filter(|e| e.kind == kind) {
        *queues.entry(e.name.as_str()).or_default() += usize::from(!e.status.is_terminal());
    }
    let queues = queues
        .into_iter()
        .map(|(q, open)| (q.to_owned(), open, q == name))
        .collect();
    let now = system_now_ms();
    let mut entries: Vec<&QueueEntry> = all
        .iter()
        .filter(|e| e.kind == kind)
        .filter(|e| status.is_none_or(|s| e.status == s))
        .filter(|e| name.is_empty() || e.name == name)
        .collect();
    // Open entries first, oldest first within each group.
    entries.sort_by_key(|e| (e.status.is_terminal(), e.created_ms, e.id));
    let page = QueuesPage {
        frame: Frame::new(&person, "queues"),
        tabs,
        kind: kind.as_str(),
        queues,
        status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        name,
        rows: entries.iter().map(|e| EntryRow::of(e, now)).collect(),
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    frame: Frame,
    row: EntryRow,
    approval: bool,
    open: bool,
    key: String,
    run: String,
    payload: String,
    claimed_by: String,
    note: String,
    closed: String,
    log: Vec<LogRow>,
}

/// One queue entry: everything `actguard queue show` shows, its key's log, and the operations.
pub async fn entry(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
    Path(id): Path<u64>,
) -> Page {
    let e = console
        .store
        .queue_entry(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no queue entry {id}")))?;
    let log = console
        .store
        .log(&LogQuery {
            action: Some(e.action.clone()),
            record: Some(e.record.clone()),
            ..LogQuery::default()
        })
        .await?;
    let log = log
        .iter()
        .filter(|l| *l.entry.key_digest == *e.key_digest || l.entry.queue_entry == Some(id))
        .map(LogRow::of)
        .collect();
    let page = EntryPage {
        frame: Frame::new(&person, "queues"),
        row: EntryRow::of(&e, system_now_ms()),
        approval: e.kind == QueueKind::Approval,
        open: !e.status.is_terminal(),
        key: e.key_text.clone(),
        run: e.run_id.to_string(),
        payload: serde_json::to_string_pretty(&e.payload).unwrap_or_default(),
        claimed_by: e.claimed_by.clone().unwrap_or_default(),
        note: e.note.clone().unwrap_or_default(),
        closed: e.closed_ms.map(format_ms).unwrap_or_default(),
        log,
    };
    Ok(Html(page.render()?))
}

/// An operation's form.
#[derive(Debug, Default, Deserialize)]
pub struct Operation {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    release: Option<String>,
}

fn check_csrf(person: &Person, form_token: &str) -> Result<(), PageError> {
    match &person.csrf {
        Some(expected) if !auth::same(expected, form_token) => Err(PageError::Forbidden(
            "the form's CSRF token does not match your session: reload the page and try again"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

fn note(form: &Operation) -> Result<&str, PageError> {
    let note = form.note.trim();
    if note.is_empty() {
        return Err(PageError::BadRequest("write a note: why".to_owned()));
    }
    Ok(note)
}

/// Claim, resolve (optionally releasing the key), discard, approve or reject an entry, as the person
/// at the console: the same operations as the command line, logged with their name.
pub async fn operate(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
    Path((id, op)): Path<(u64, String)>,
    Form(form): Form<Operation>,
) -> Result<Redirect, PageError> {
    check_csrf(&person, &form.csrf)?;
    let agent = &console.agent;
    let by = person.name.as_str();
    match op.as_str() {
        "claim" => ops::queue_claim(agent, id, by).await?,
        "resolve" if form.release.is_some() => {
            ops::queue_release(agent, id, by, note(&form)?).await?
        }
        "resolve" => ops::queue_resolve(agent, id, by, note(&form)?).await?,
        "discard" => ops::queue_discard(agent, id, by, note(&form)?).await?,
        "approve" => ops::queue_approve(agent, id, by).await?,
        "reject" => ops::queue_reject(agent, id, by, note(&form)?).await?,
        other => return Err(PageError::NotFound(format!("no operation `{other}`"))),
    };
    Ok(Redirect::to(&format!("/entries/{id}")))
}

/// A run as a row.
pub struct RunRow {
    pub id: String,
    pub first: String,
    pub last: String,
    pub entries: usize,
    pub outcomes: String,
    pub halted: String,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    frame: Frame,
    runs: Vec<RunRow>,
}

/// The runs of the log, newest first, with a halted run's cause.
pub async fn runs(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
) -> Page {
    /// A run's entries, as the log has them.
    struct Tally {
        first: Millis,
        last: Millis,
        entries: usize,
        outcomes: BTreeMap<&'static str, usize>,
    }
    let log = console.store.log(&LogQuery::default()).await?;
    let mut runs: BTreeMap<Uuid, Tally> = BTreeMap::new();
    for e in &log {
        let n = &e.entry;
        let r = runs.entry(n.run_id).or_insert(Tally {
            first: n.at_ms,
            last: n.at_ms,
            entries: 0,
            outcomes: BTreeMap::new(),
        });
        r.first = r.first.min(n.at_ms);
        r.last = r.last.max(n.at_ms);
        r.entries += 1;
        *r.outcomes.entry(n.outcome.as_str()).or_default() += 1;
    }
    let mut rows = Vec::new();
    for (
        id,
        Tally {
            first,
            last,
            entries,
            outcomes,
        },
    ) in runs
    {
        let halted = match console.store.run_state(id).await? {
            RunState::Halted { reason, .. } => reason,
            RunState::Active => String::new(),
        };
        rows.push((
            last,
            RunRow {
                id: id.to_string(),
                first: format_ms(first),
                last: format_ms(last),
                entries,
                outcomes: outcomes
                    .iter()
                    .map(|(o, n)| format!("{n} {o}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                halted,
            },
        ));
    }
    rows.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
    let page = RunsPage {
        frame: Frame::new(&person, "runs"),
        runs: rows.into_iter().map(|(_, r)| r).collect(),
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    frame: Frame,
    id: String,
    halted: String,
    log: Vec<LogRow>,
}

/// One run: its state and its log.
pub async fn run(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Page {
    let id = Uuid::parse_str(&id)
        .map_err(|_| PageError::BadRequest(format!("`{id}` is not a run id")))?;
    let log = console
        .store
        .log(&LogQuery {
            run_id: Some(id),
            ..LogQuery::default()
        })
        .await?;
    if log.is_empty() {
        return Err(PageError::NotFound(format!("no run {id} in the log")));
    }
    let halted = match console.store.run_state(id).await? {
        RunState::Halted { reason, .. } => reason,
        RunState::Active => String::new(),
    };
    let page = RunPage {
        frame: Frame::new(&person, "runs"),
        id: id.to_string(),
        halted,
        log: log.iter().map(LogRow::of).collect(),
    };
    Ok(Html(page.render()?))
}

/// A record written by the selection.
pub struct AffectedRow {
    pub record: String,
    pub action: String,
    pub writes: usize,
    pub before: String,
    pub after: String,
}

#[derive(Template)]
#[template(path = "blast_radius.html")]
struct BlastRadiusPage {
    frame: Frame,
    selection: String,
    command: String,
    records: Vec<AffectedRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Selection {
    run: Option<String>,
    action: Option<String>,
}

/// The records a run or an action wrote, before the first write and after the last, and the
/// command that reverts them (revert runs the application's code, from the agent's own binary).
pub async fn blast_radius(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
    Query(selection): Query<Selection>,
) -> Page {
    let run = match selection.run.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Some(
            Uuid::parse_str(r)
                .map_err(|_| PageError::BadRequest(format!("`{r}` is not a run id")))?,
        ),
        None => None,
    };
    let action = selection.action.filter(|a| !a.is_empty());
    let (described, args) = match (&run, &action) {
        (Some(r), Some(a)) => (
            format!("run {r}, action {a}"),
            format!("--run {r} --action {a}"),
        ),
        (Some(r), None) => (format!("run {r}"), format!("--run {r}")),
        (None, Some(a)) => (format!("action {a}"), format!("--action {a}")),
        (None, None) => {
            return Err(PageError::BadRequest(
                "select a run or an action: /blast-radius?run=ID or ?action=NAME".to_owned(),
            ));
        }
    };
    let radius = ops::blast_radius(
        console.store.as_ref(),
        &LogQuery {
            run_id: run,
            action,
            ..LogQuery::default()
        },
    )
    .await?;
    let json = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .unwrap_or_else(|| "(not captured)".to_owned())
    };
    let page = BlastRadiusPage {
        frame: Frame::new(&person, "runs"),
        selection: described,
        command: format!("my-agent ops revert {args} --dry-run"),
        records: radius
            .records
            .iter()
            .map(|r| AffectedRow {
                record: r.record.clone(),
                action: r.action.clone(),
                writes: r.writes,
                before: json(&r.before),
                after: json(&r.after),
            })
            .collect(),
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    frame: Frame,
    ok: bool,
    entries: u64,
    head: String,
    problem: String,
}

/// The hash chain's verification and its head.
pub async fn verify(
    State(console): State<Arc<Console>>,
    Extension(person): Extension<Person>,
) -> Page {
    let (ok, entries, head, problem) =
        match actguard::verify_report(console.store.as_ref(), None).await {
            Ok(report) => (
                true,
                report.entries,
                report
                    .head
                    .map(|h| format!("{}:{}", h.seq, h.hash))
                    .unwrap_or_else(|| "(empty log)".to_owned()),
                String::new(),
            ),
            Err(e) => (false, 0, String::new(), e.to_string()),
        };
    let page = VerifyPage {
        frame: Frame::new(&person, "verify"),
        ok,
        entries,
        head,
        problem,
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    problem: String,
}

/// The login form.
pub async fn login_form() -> Page {
    Ok(Html(
        LoginPage {
            problem: String::new(),
        }
        .render()?,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct Login {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

/// Checks the token and starts a session under the name given.
pub async fn login(State(console): State<Arc<Console>>, Form(login): Form<Login>) -> Response {
    let refuse = |problem: &str| {
        let page = LoginPage {
            problem: problem.to_owned(),
        };
        match page.render() {
            Ok(html) => (StatusCode::UNAUTHORIZED, Html(html)).into_response(),
            Err(e) => PageError::from(e).into_response(),
        }
    };
    let Access::Token { token, .. } = &console.access else {
        return Redirect::to("/queues").into_response();
    };
    if !auth::same(login.token.trim(), token) {
        return refuse("That token is not the console's.");
    }
    if !auth::valid_name(&login.name) {
        return refuse("Give your name (1 to 64 characters): it is logged with what you do.");
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        auth::session_cookie(token, &login.name)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/queues")).into_response()
}

/// Ends the session.
pub async fn logout(
    Extension(person): Extension<Person>,
    Form(form): Form<Operation>,
) -> Result<Response, PageError> {
    check_csrf(&person, &form.csrf)?;
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

/// The one stylesheet.
pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/style.css"),
    )
}
