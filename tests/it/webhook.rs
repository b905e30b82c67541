//! `WebhookAlert` against a local HTTP receiver: a halt and (when the agent opts in) each new queue
//! entry arrive as JSON with a Slack-compatible `text`; a refused delivery is sent again; the guarded
//! call does not wait for the receiver.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{ActionError, Agent, MemoryStore, Run, WebhookAlert, agent_action};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

/// A receiver on 127.0.0.1: answers each POST with the next status of its script (200 after), and
/// passes each body on; `held` keeps its answers back until released.
struct Receiver {
    url: String,
    bodies: mpsc::UnboundedReceiver<Value>,
    release: Arc<Notify>,
}

async fn receiver(script: &[u16], held: bool) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, bodies) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, script, gate) = (tx.clone(), script.clone(), gate.clone());
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let (tx, script, gate) = (tx.clone(), script.clone(), gate.clone());
                async move {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    if held {
                        gate.notified().await;
                    }
                    tx.send(serde_json::from_slice::<Value>(&body).unwrap())
                        .unwrap();
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Receiver {
        url,
        bodies,
        release,
    }
}

impl Receiver {
    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(10), self.bodies.recv())
            .await
            .expect("the alert arrives")
            .unwrap()
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
}

#[agent_action(key = "ship:{o.id}", name = "ship_order_alerted", record = "{o.id}", owner = "warehouse", on_security = halt)]
async fn ship(run: &Run, #[dep] d: &Downstream, o: &Order) -> Result<Receipt, DownstreamError> {
    d.write_for(run.attempt()).await
}

fn agent(url: &str, queue_entries: bool) -> Agent {
    Agent::builder()
        .store(MemoryStore::new())
        .alert_sink(WebhookAlert::new(url).unwrap().first_delay(Duration::ZERO))
        .alert_on_queue_entries(queue_entries)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_queue_entry_and_a_halt_arrive_as_json_with_a_text_line() {
    let mut hook = receiver(&[], false).await;
    let agent = agent(&hook.url, true);
    let run = agent.start_run();
    let downstream = Downstream::new();
    downstream.fail_next(DownstreamError::Invalid("no address".into()));
    let routed = ship(&run, &downstream, &Order { id: 1 }).await.unwrap_err();
    let entry_id = routed.queue_entry().unwrap().id;
    let alert = hook.next().await;
    assert_eq!(alert["event"], "queue_entry");
    assert_eq!(alert["entry"]["entry_id"], entry_id);
    assert_eq!(alert["entry"]["kind"], "owner");
    assert_eq!(alert["entry"]["queue"], "warehouse");
    assert_eq!(alert["entry"]["failure_kind"], "validation");
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "queue entry {entry_id} in the owner queue `warehouse`"
        )) && text.contains("invalid request: no address"),
        "{text}"
    );

    downstream.fail_next(DownstreamError::Forbidden("token revoked".into()));
    let halted = ship(&run, &downstream, &Order { id: 2 }).await.unwrap_err();
    assert!(
        matches!(halted, ActionError::SecurityHalt { .. }),
        "{halted:?}"
    );
    let alert = hook.next().await;
    assert_eq!(alert["event"], "halt", "{alert}");
    assert_eq!(alert["halt"]["run_id"], run.id().to_string());
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("halted by `ship_order_alerted`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_opt_in_only_halts_are_sent() {
    let mut hook = receiver(&[], false).await;
    let agent = agent(&hook.url, false);
    let run = agent.start_run();
    let downstream = Downstream::new();
    downstream.fail_next(DownstreamError::Invalid("no address".into()));
    ship(&run, &downstream, &Order { id: 1 }).await.unwrap_err();
    run.halt("stopped by hand").await.unwrap();
    assert_eq!(
        hook.next().await["event"],
        "halt",
        "the queue entry was not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_is_sent_again() {
    let mut hook = receiver(&[500, 503], false).await;
    let agent = agent(&hook.url, false);
    let run = agent.start_run();
    run.halt("stopped by hand").await.unwrap();
    let first = hook.next().await;
    assert_eq!(hook.next().await, first);
    assert_eq!(hook.next().await, first, "the third try is answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_call_does_not_wait_for_the_receiver() {
    let mut hook = receiver(&[], true).await;
    let agent = agent(&hook.url, true);
    let run = agent.start_run();
    let downstream = Downstream::new();
    downstream.fail_next(DownstreamError::Invalid("no address".into()));
    // The receiver answers nothing until released: the call returns all the same.
    tokio::time::timeout(
        Duration::from_secs(5),
        ship(&run, &downstream, &Order { id: 3 }),
    )
    .await
    .expect("the call returns while the webhook waits")
    .unwrap_err();
    hook.release.notify_one();
    assert_eq!(hook.next().await["event"], "queue_entry");
}
