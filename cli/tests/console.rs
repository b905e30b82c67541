//! The review console over HTTP: who may see it (token, session, trusted proxy), CSRF on every form,
//! the security headers, and each operation changing the store and logging who did it.

#![cfg(feature = "console")]

use std::sync::Arc;

use actguard::store::{QueueQuery, QueueStatus};
use actguard::{Agent, LogQuery, Redacted, Run, SqliteStore, Store, agent_action};
use actguard_cli::console::{Access, Console};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

const TOKEN: &str = "a-console-token-long-enough";

#[derive(Debug, actguard::Classify, thiserror::Error)]
enum BankError {
    #[error("the account is closed")]
    #[classify(validation)]
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transfer {
    id: u32,
    account: String,
    pin: Redacted<String>,
}

#[agent_action(key = "transfer:{t.id}", record = "{t.account}", owner = "payments")]
async fn transfer(run: &Run, t: &Transfer) -> Result<u32, BankError> {
    let _ = run;
    if t.account == "closed" {
        return Err(BankError::Closed);
    }
    Ok(t.id)
}

#[agent_action(key = "payout:{id}", approve = "treasury")]
async fn payout(run: &Run, id: u32) -> Result<u32, BankError> {
    let _ = run;
    Ok(id)
}

/// A store with an owner entry (whose payload holds a secret) and an approval request.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    agent: Agent,
    owner_entry: u64,
    approval: u64,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("actguard.db")).unwrap());
    let agent = Agent::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let run = agent.start_run();
    let routed = transfer(
        &run,
        &Transfer {
            id: 1,
            account: "closed".into(),
            pin: Redacted::new("4321-secret-pin".into()),
        },
    )
    .await
    .unwrap_err();
    let owner_entry = routed.queue_entry().unwrap().id;
    let approval = payout(&run, 9).await.unwrap_err().queue_entry().unwrap().id;
    Fixture {
        _dir: dir,
        store,
        agent,
        owner_entry,
        approval,
    }
}

fn console(f: &Fixture, access: Access) -> Router {
    Console::new(f.store.clone(), f.agent.clone(), access).router()
}

fn token_access() -> Access {
    Access::Token {
        token: TOKEN.to_owned(),
        user_header: Some("x-forwarded-user".to_owned()),
    }
}

async fn send(app: &Router, request: Request<Body>) -> (Response<Body>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method("GET")
        .uri(path)
        .header(header::HOST, "127.0.0.1:7878")
}

fn post_form(path: &str, form: &str) -> axum::http::request::Builder {
    let _ = form;
    Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, "127.0.0.1:7878")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

/// Logs in as `name`; answers the session cookie.
async fn log_in(app: &Router, name: &str) -> String {
    let form = format!("token={TOKEN}&name={name}");
    let (response, _) = send(
        app,
        post_form("/login", &form).body(Body::from(form)).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_owned()
}

async fn status_of(f: &Fixture, id: u64) -> QueueStatus {
    f.store.queue_entry(id).await.unwrap().unwrap().status
}

async fn operator_messages(f: &Fixture) -> Vec<String> {
    f.store
        .log(&LogQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.outcome == actguard::Outcome::Operator)
        .filter_map(|e| e.entry.message)
        .collect()
}

#[tokio::test]
async fn nothing_but_the_health_check_is_served_without_the_token() {
    let f = fixture().await;
    let app = console(&f, token_access());
    let (health, body) = send(&app, get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!((health.status(), body.as_str()), (StatusCode::OK, "ok"));
    for page in [
        "/queues",
        "/entries/1",
        "/runs",
        "/verify",
        "/blast-radius?action=transfer",
    ] {
        let (response, _) = send(&app, get(page).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(response.headers()[header::LOCATION], "/login", "{page}");
    }
    let path = format!("/entries/{}/discard", f.owner_entry);
    let (response, _) = send(
        &app,
        post_form(&path, "").body(Body::from("note=x")).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let wrong = get("/queues")
        .header(header::AUTHORIZATION, "Bearer not-the-token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, wrong).await.0.status(), StatusCode::SEE_OTHER);
    let forged = get("/queues")
        .header(header::COOKIE, "actguard_console=616c696365.00.00")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, forged).await.0.status(), StatusCode::SEE_OTHER);
    let form = "token=wrong-token-of-some-length&name=mallory";
    let (refused, page) = send(
        &app,
        post_form("/login", form).body(Body::from(form)).unwrap(),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(page.contains("not the console"));
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Open);
}

#[tokio::test]
async fn every_response_forbids_scripts_frames_and_foreign_resources() {
    let f = fixture().await;
    let app = console(&f, token_access());
    for page in ["/health", "/login", "/queues", "/no-such-page"] {
        let (response, _) = send(&app, get(page).body(Body::empty()).unwrap()).await;
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{page}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{page}");
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let app = console(&f, token_access());
    let cookie = log_in(&app, "alice").await;
    let path = format!("/entries/{}/discard", f.owner_entry);
    for form in [
        "note=gone",
        "note=gone&csrf=00",
        &format!("note=gone&csrf={}", "0".repeat(64)),
    ] {
        let request = post_form(&path, form)
            .header(header::COOKIE, &cookie)
            .body(Body::from(form.to_owned()))
            .unwrap();
        let (response, body) = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{form}");
        assert!(body.contains("CSRF"), "{body}");
    }
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Open);
    // Another person's session has another token.
    let (_, page) = send(
        &app,
        get(&format!("/entries/{}", f.owner_entry))
            .header(header::COOKIE, log_in(&app, "bob").await)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let form = format!("note=gone&csrf={}", csrf_of(&page));
    let request = post_form(&path, &form)
        .header(header::COOKIE, &cookie)
        .body(Body::from(form.clone()))
        .unwrap();
    assert_eq!(send(&app, request).await.0.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn each_operation_changes_the_store_and_logs_who_did_it() {
    let f = fixture().await;
    let app = console(&f, token_access());
    let cookie = log_in(&app, "alice").await;
    let entry_page = format!("/entries/{}", f.owner_entry);
    let (response, page) = send(
        &app,
        get(&entry_page)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(page.contains("alice"), "the person is shown");
    assert!(page.contains("the account is closed"));
    assert!(
        !page.contains("4321-secret-pin"),
        "nothing Redacted is rendered"
    );
    assert!(page.contains("hmac-sha256:"), "its digest is");
    let csrf = csrf_of(&page);
    let operate = |op: &str, form: String| {
        post_form(&format!("/entries/{}/{op}", f.owner_entry), &form)
            .header(header::COOKIE, &cookie)
            .body(Body::from(form))
            .unwrap()
    };
    let (claimed, _) = send(&app, operate("claim", format!("csrf={csrf}"))).await;
    assert_eq!(claimed.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Claimed);
    let (resolved, _) = send(
        &app,
        operate(
            "resolve",
            format!("csrf={csrf}&note=account+reopened&release=yes"),
        ),
    )
    .await;
    assert_eq!(resolved.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Resolved);
    let messages = operator_messages(&f).await;
    assert!(
        messages.iter().any(|m| m.contains("claimed by alice")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("resolved by alice, its key released: account reopened")),
        "{messages:?}"
    );
    // A note is required.
    let (empty, _) = send(&app, operate("discard", format!("csrf={csrf}&note=+"))).await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);

    // Through a trusted proxy: the bearer token, and the name in its header.
    let approve = post_form(&format!("/entries/{}/approve", f.approval), "")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header("x-forwarded-user", "carol")
        .body(Body::from(""))
        .unwrap();
    assert_eq!(send(&app, approve).await.0.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&f, f.approval).await, QueueStatus::Resolved);
    let messages = operator_messages(&f).await;
    assert!(
        messages
            .iter()
            .any(|m| m == &format!("approval request {} approved by carol", f.approval)),
        "{messages:?}"
    );
    let run = f.agent.start_run();
    assert_eq!(
        payout(&run, 9).await.unwrap(),
        9,
        "approved in the console: it acts"
    );
}

#[tokio::test]
async fn the_pages_show_queues_runs_blast_radius_and_the_chain() {
    let f = fixture().await;
    let app = console(&f, Access::open());
    let page = |path: &'static str| {
        let app = app.clone();
        async move {
            let (response, body) = send(&app, get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}: {body}");
            body
        }
    };
    let owner = page("/queues?kind=owner").await;
    assert!(owner.contains("payments") && owner.contains("transfer"));
    // One tab per owner queue, by name, with its open entries; it shows that queue alone.
    assert!(
        owner.contains(
            r#"<a href="/queues?kind=owner&amp;name=payments">payments <span class="count">1</span></a>"#
        ),
        "{owner}"
    );
    let payments = page("/queues?kind=owner&name=payments").await;
    assert!(
        payments.contains(r#"<a href="/queues?kind=owner&amp;name=payments" class="here">"#),
        "{payments}"
    );
    assert!(payments.contains("transfer"), "{payments}");
    assert!(
        page("/queues?kind=owner&name=elsewhere")
            .await
            .contains("No entry here.")
    );
    let approvals = page("/queues?kind=approval&status=open").await;
    assert!(approvals.contains("treasury") && approvals.contains("payout"));
    assert!(page("/runs").await.contains("active"));
    let verify = page("/verify").await;
    assert!(
        verify.contains("ok: ") && verify.contains("entries verified"),
        "{verify}"
    );
    let entries = f.store.queue_entries(&QueueQuery::default()).await.unwrap();
    assert_eq!(entries.len(), 2);
    let blast = page("/blast-radius?action=transfer").await;
    assert!(
        blast.contains("my-agent ops revert --action transfer --dry-run"),
        "{blast}"
    );
    let (bad, _) = send(
        &app,
        get("/queues?kind=nonsense").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let (missing, _) = send(&app, get("/entries/999").body(Body::empty()).unwrap()).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_authentication_forms_still_need_the_consoles_csrf_token() {
    let f = fixture().await;
    let app = console(&f, Access::open());
    let path = format!("/entries/{}/claim", f.owner_entry);
    // What a foreign page could post to a console on 127.0.0.1: no token.
    let (refused, _) = send(&app, post_form(&path, "").body(Body::from("")).unwrap()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Open);
    let (_, page) = send(
        &app,
        get(&format!("/entries/{}", f.owner_entry))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let form = format!("csrf={}", csrf_of(&page));
    let (done, _) = send(
        &app,
        post_form(&path, &form)
            .body(Body::from(form.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&f, f.owner_entry).await, QueueStatus::Claimed);
    let messages = operator_messages(&f).await;
    assert!(
        messages.iter().any(|m| m.contains("claimed by local")),
        "{messages:?}"
    );
}

#[test]
fn the_console_refuses_to_start_without_a_token_unless_on_loopback_with_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("actguard.db");
    drop(SqliteStore::open(&store).unwrap());
    let serve = || {
        let mut cmd = assert_cmd::Command::cargo_bin("actguard").unwrap();
        cmd.env_remove("ACTGUARD_CONSOLE_TOKEN")
            .env_remove("ACTGUARD_STORE")
            .arg("--store")
            .arg(&store)
            .arg("serve");
        cmd
    };
    let refused = |cmd: &mut assert_cmd::Command, message: &str| {
        let out = cmd.assert().code(1).get_output().stderr.clone();
        let stderr = String::from_utf8_lossy(&out);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{stderr}"
        );
    };
    refused(
        &mut serve(),
        "the console needs a token: set ACTGUARD_CONSOLE_TOKEN",
    );
    refused(
        serve().args(["--no-auth", "--addr", "0.0.0.0:7878"]),
        "--no-auth serves without authentication, so only on a loopback address",
    );
    refused(
        serve().env("ACTGUARD_CONSOLE_TOKEN", "short"),
        "shorter than 16 characters",
    );
    let missing = dir.path().join("no-token-here");
    refused(
        serve().arg("--token-file").arg(&missing),
        "cannot read the token file",
    );
}
