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

/// Makes `subscriber` this thread's default until the guard is dropped, as `set_default` does, with
/// the process-wide [`Undecided`] subscriber installed first.
///
/// The other modules' tests of this binary run at the same time on threads without a subscriber of
/// their own. While a single dispatcher is registered in the process, tracing-core (0.1.36) takes a
/// callsite's interest from the thread that reaches the callsite first: one first reached by another
/// test's thread would be cached as "never", and its events lost to this thread's subscriber too.
/// With a second dispatcher registered, the interest is asked of every registered dispatcher.
fn capture_on_this_thread(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        tracing::subscriber::set_global_default(Undecided)
            .expect("no other global subscriber in the test binary");
    });
    tracing::subscriber::set_default(subscriber)
}

/// The global subscriber of the test binary: records nothing, and keeps every callsite's interest at
/// "sometimes", so that each event asks the subscriber of its own thread whether it wants it.
struct Undecided;

impl tracing::Subscriber for Undecided {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
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
    let _guard = capture_on_this_thread(subscriber);

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
    assert_eq!(m.get("notify", actguard::MetricOutcome::Retrying), 1);
    assert_eq!(m.get("notify", actguard::MetricOutcome::Succeeded), 1);
    assert_eq!(m.get("notify", actguard::MetricOutcome::Replayed), 1);
    assert_eq!(m.get("notify", actguard::MetricOutcome::Skipped), 1);
    assert_eq!(m.get("notify", actguard::MetricOutcome::DeadLettered), 1);
    assert_eq!(m.total(actguard::MetricOutcome::Halted), 0);
}

#[tokio::test(start_paused = true)]
async fn a_halt_is_an_error_event_from_the_default_alert_sink() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = capture_on_this_thread(subscriber);

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
    assert_eq!(
        agent
            .metrics()
            .get("notify", actguard::MetricOutcome::Halted),
        1
    );
}
