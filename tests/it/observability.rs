//! Observability: one `agent_action` span per call with its action, record, key, run id and attempt;
//! events for retries (with the delay), skips, routes, dead-letters, halts and replays; counters per
//! action and outcome readable from the agent.

use std::io::Write;
use std::sync::{Arc, Mutex};

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{ActionError, Run, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    id: u32,
    at: u32,
}

#[agent_action(
    key = "notify:{t.id}:{t.at}",
    record = "{t.id}",
    backoff = "2s..2s",
    jitter = none,
    on_validation = dead_letter
)]
async fn notify(run: &Run, #[dep] out: &Downstream, t: &Task) -> Result<Receipt, DownstreamError> {
    out.write_for(run.attempt()).await
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn each_call_has_a_span_and_each_step_an_event() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = World::new();
    let run = w.agent.start_run();
    let out = Downstream::new();
    out.fail_next(DownstreamError::AckTimeout);
    notify(&run, &out, &Task { id: 1, at: 0 }).await.unwrap();
    notify(&run, &out, &Task { id: 1, at: 0 }).await.unwrap();
    let skipped = notify(&run, &out, &Task { id: 1, at: 5 }).await;
    assert!(matches!(skipped, Err(ActionError::Skipped { .. })));
    out.fail_next(DownstreamError::Invalid("bad".into()));
    let dead = notify(&run, &out, &Task { id: 2, at: 0 }).await;
    assert!(matches!(dead, Err(ActionError::DeadLettered { .. })));

    let text = captured.text();
    let span = format!(
        "agent_action{{action=\"notify\" record=1 key=notify:1:0 run_id={}",
        run.id()
    );
    assert!(text.contains(&span), "{text}");
    assert!(
        text.contains("attempt=2}: actguard::guard: succeeded"),
        "{text}"
    );
    assert!(text.contains("delay_ms=2000"), "{text}");
    assert!(text.contains("retrying"), "{text}");
    assert!(text.contains("replayed"), "{text}");
    assert!(text.contains("skipped by the loop filter"), "{text}");
    assert!(text.contains("dead-lettered"), "{text}");

    let m = w.agent.metrics();
    assert_eq!(m.get("notify", "retrying"), 1);
    assert_eq!(m.get("notify", "succeeded"), 1);
    assert_eq!(m.get("notify", "replayed"), 1);
    assert_eq!(m.get("notify", "skipped"), 1);
    assert_eq!(m.get("notify", "dead_lettered"), 1);
    assert_eq!(m.total("halted"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_halt_is_an_error_event_from_the_default_alert_sink() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // The default alert sink: a tracing error event.
    let agent = actguard::Agent::in_memory().unwrap();
    let run = agent.start_run();
    let out = Downstream::new();
    out.fail_next(DownstreamError::Forbidden("revoked".into()));
    let halted = notify(&run, &out, &Task { id: 3, at: 0 }).await;
    assert!(matches!(halted, Err(ActionError::SecurityHalt { .. })));
    let text = captured.text();
    assert!(text.contains("ERROR"), "{text}");
    assert!(text.contains("run halted"), "{text}");
    assert!(text.contains("actguard::alert"), "{text}");
    assert_eq!(agent.metrics().get("notify", "halted"), 1);
}
