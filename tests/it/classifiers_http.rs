//! The classifiers of the `reqwest` and `http` features against a real HTTP server on 127.0.0.1 and
//! reqwest as the client: each answer of the server goes where its classification says, and a
//! server's Retry-After, in either form, is waited for exactly (tokio's paused clock).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actguard::classify::HttpFailure;
use actguard::store::QueueQuery;
use actguard::{ActionError, Classify, FailureKind, QueueKind, Run, Store, agent_action};
use actguard_tests::{World, holding_time};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the test server answers to the next request.
#[derive(Clone)]
enum Reply {
    /// This status, with these headers.
    Status(u16, Vec<(&'static str, String)>),
    /// Nothing, ever: the request is read and the response never comes.
    Never,
}

fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new())
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: Option<String>,
    at: Instant,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers from a script, in order (200 once it runs out).
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(replies: impl IntoIterator<Item = Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(replies.into_iter().collect::<VecDeque<_>>()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, n) = (script, seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, seen) = (s.clone(), n.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (script, seen) = (script.clone(), seen.clone());
                    async move {
                        seen.lock().unwrap().push(Seen {
                            idempotency_key: request
                                .headers()
                                .get("idempotency-key")
                                .map(|v| v.to_str().unwrap().to_owned()),
                            at: Instant::now(),
                        });
                        let reply = script.lock().unwrap().pop_front();
                        let (code, headers) = match reply {
                            None => (200, Vec::new()),
                            Some(Reply::Status(code, headers)) => (code, headers),
                            Some(Reply::Never) => std::future::pending().await,
                        };
                        let mut response = Response::builder().status(code);
                        for (name, value) in headers {
                            response = response.header(name, value);
                        }
                        Ok::<_, Infallible>(response.body(Full::new(Bytes::new())).unwrap())
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Server { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn api(&self) -> Api {
        Api::new(format!("http://{}/charges", self.addr))
    }
}

/// The client an action writes through.
struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    fn new(url: String) -> Api {
        Api::with_timeout(url, Duration::from_secs(5))
    }

    fn with_timeout(url: String, timeout: Duration) -> Api {
        Api {
            // A connection per request, so that each request meets the server afresh.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(timeout)
                .build()
                .unwrap(),
            url,
        }
    }
}

/// How an application wraps the errors of its HTTP client: each variant delegates to actguard's
/// classifier of the type it holds.
#[derive(Debug, thiserror::Error, actguard::Classify)]
enum ApiError {
    #[error(transparent)]
    #[classify(from)]
    Request(#[from] reqwest::Error),
    #[error(transparent)]
    #[classify(from)]
    Status(HttpFailure),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    id: u32,
    cents: i64,
}

async fn send(run: &Run, api: &Api, charge: &Charge) -> Result<u16, ApiError> {
    let response = api
        .client
        .post(&api.url)
        .header("idempotency-key", run.attempt().key())
        .body(format!(
            "{{\"id\":{},\"cents\":{}}}",
            charge.id, charge.cents
        ))
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(ApiError::Status(HttpFailure::from(&response)));
    }
    Ok(response.status().as_u16())
}

#[agent_action(
    key = "charge:{c.id}",
    record = "{c.id}",
    retries = 3,
    max_elapsed = "1m",
    backoff = "1s..10s",
    jitter = none,
    on_validation = route_owner,
    owner = "billing",
    on_conflict = escalate,
    expert = "payments",
    on_security = halt
)]
async fn charge(run: &Run, #[dep] api: &Api, c: &Charge) -> Result<u16, ApiError> {
    // The clock stands still while the request is on the wire: only backoff moves it.
    holding_time(send(run, api, c)).await
}

/// The same write on the real clock, where reqwest's timeout ends a request only after the server
/// has it; one retry, after a millisecond.
#[agent_action(
    key = "charge_timed:{charge.id}",
    record = "{charge.id}",
    retries = 1,
    backoff = "1ms..1ms",
    jitter = none
)]
async fn charge_timed(run: &Run, #[dep] api: &Api, charge: &Charge) -> Result<u16, ApiError> {
    send(run, api, charge).await
}

fn a_charge(id: u32) -> Charge {
    Charge { id, cents: 1250 }
}

async fn queue(w: &World, kind: QueueKind) -> Vec<actguard::QueueEntry> {
    w.store
        .queue_entries(&QueueQuery {
            kind: Some(kind),
            ..QueueQuery::default()
        })
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_in_seconds_is_retried_exactly_then_with_the_same_key() {
    let server = Server::start([Reply::Status(429, vec![("retry-after", "2".to_owned())])]).await;
    let w = World::new();
    let run = w.agent.start_run();
    let start = Instant::now();
    assert_eq!(
        charge(&run, &server.api(), &a_charge(1)).await.unwrap(),
        200
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].at - seen[0].at,
        Duration::from_secs(2),
        "the server asked for 2s; the backoff would have waited 1s"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("charge:1"));
    assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_as_an_http_date_waits_until_that_date() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let server = Server::start([Reply::Status(503, vec![("retry-after", date)])]).await;
    let w = World::new();
    let run = w.agent.start_run();
    charge(&run, &server.api(), &a_charge(2)).await.unwrap();
    let seen = server.seen();
    let waited = seen[1].at - seen[0].at;
    // An HTTP-date has whole seconds: the wait is what was left of the 30th second.
    assert!(
        waited > Duration::from_secs(28) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_without_retry_after_is_retried_by_the_backoff() {
    let server = Server::start([status(503), status(503)]).await;
    let w = World::new();
    let run = w.agent.start_run();
    let start = Instant::now();
    charge(&run, &server.api(), &a_charge(3)).await.unwrap();
    assert_eq!(server.seen().len(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(1 + 2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_budget_dead_letters_at_once_saying_what_the_server_asked() {
    let server =
        Server::start([Reply::Status(503, vec![("retry-after", "3600".to_owned())])]).await;
    let w = World::new();
    let run = w.agent.start_run();
    let start = Instant::now();
    let err = charge(&run, &server.api(), &a_charge(4)).await.unwrap_err();
    assert!(
        matches!(err, ActionError::DeadLettered { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
    assert_eq!(server.seen().len(), 1);
    let dead = queue(&w, QueueKind::DeadLetter).await;
    assert_eq!(
        dead[0].message,
        "HTTP 503 Service Unavailable: the server asked to retry after 1h, \
         but only 1m of the 1m budget remain"
    );
}

#[tokio::test(start_paused = true)]
async fn a_403_halts_the_run_a_409_goes_to_the_expert_a_422_to_the_owner() {
    let server = Server::start([status(409), status(422), status(403)]).await;
    let w = World::new();
    let run = w.agent.start_run();
    match charge(&run, &server.api(), &a_charge(5)).await {
        Err(ActionError::Routed { kind, queue, .. }) => {
            assert_eq!(kind, FailureKind::Conflict);
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Expert, "payments")
            );
        }
        other => panic!("409: {other:?}"),
    }
    match charge(&run, &server.api(), &a_charge(6)).await {
        Err(ActionError::Routed { kind, queue, .. }) => {
            assert_eq!(kind, FailureKind::Validation);
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Owner, "billing")
            );
        }
        other => panic!("422: {other:?}"),
    }
    let err = charge(&run, &server.api(), &a_charge(7)).await.unwrap_err();
    assert!(
        matches!(err, ActionError::SecurityHalt { .. }),
        "403: {err:?}"
    );
    assert_eq!(w.alerts.alerts().len(), 1);
    assert_eq!(server.seen().len(), 3, "each answered once, none retried");
    assert_eq!(
        queue(&w, QueueKind::Owner).await[0].message,
        "HTTP 422 Unprocessable Entity"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_transient_and_retried_until_the_retries_run_out() {
    // A port that nothing listens on any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let w = World::new();
    let run = w.agent.start_run();
    let api = Api::new(format!("http://{addr}/charges"));
    let err = charge(&run, &api, &a_charge(8)).await.unwrap_err();
    let ActionError::DeadLettered {
        attempts, error, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*attempts, 4, "3 retries after the first attempt");
    let ApiError::Request(e) = error else {
        panic!("{error:?}")
    };
    assert!(e.is_connect(), "{e:?}");
    assert_eq!(error.classify(), FailureKind::Transient);
    assert_eq!(error.note(), None, "nothing was sent");
}

#[tokio::test]
async fn a_response_that_never_comes_times_out_as_transient_and_the_retry_carries_the_same_key() {
    let server = Server::start([Reply::Never]).await;
    let w = World::new();
    let run = w.agent.start_run();
    let api = Api::with_timeout(
        format!("http://{}/charges", server.addr),
        Duration::from_millis(200),
    );
    charge_timed(&run, &api, &a_charge(9)).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("charge_timed:9"));
    assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);
    let log = actguard::testing::log(&w.agent).await;
    let retried = &log[0].entry;
    assert_eq!(retried.failure_kind, Some(FailureKind::Transient));
    let message = retried.message.as_deref().unwrap();
    assert!(
        message.contains(
            "(the request may have reached the server: the retry carries the same idempotency key)"
        ),
        "{message}"
    );
}
