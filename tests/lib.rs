//! Shared helpers of the behaviour tests.

use actguard::testing::RecordingAlert;
use actguard::{Agent, AgentBuilder, MemoryStore};

/// An agent on a fresh [`MemoryStore`], with a recording alert sink and reproducible jitter; the store
/// and the recorder stay reachable for assertions.
pub struct World {
    pub agent: Agent,
    pub store: MemoryStore,
    pub alerts: RecordingAlert,
}

impl World {
    /// The default world.
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// A world whose agent is configured further by `configure`.
    pub fn with(configure: impl FnOnce(AgentBuilder) -> AgentBuilder) -> Self {
        let store = MemoryStore::new();
        let alerts = RecordingAlert::new();
        let builder = Agent::builder()
            .store(store.clone())
            .alert_sink(alerts.clone())
            .jitter_seed(7);
        World {
            agent: configure(builder).build().expect("the agent builds"),
            store,
            alerts,
        }
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// A `static` action spec, as `#[agent_action]` generates one, for tests that drive the guarded call
/// by hand: `static S: ActionSpec = action_spec!("name", Write, retries: 2, owner: Some("ops"));`
/// (any [`actguard::Policy`] field; the rest keep their defaults).
#[macro_export]
macro_rules! action_spec {
    ($name:literal, $effect:ident $(, $field:ident : $value:expr)* $(,)?) => {
        ::actguard::ActionSpec {
            name: $name,
            fn_name: $name,
            module_path: module_path!(),
            file: file!(),
            line: line!(),
            effect: ::actguard::Effect::$effect,
            key: Some("{key}"),
            record: None,
            policy: ::actguard::Policy {
                $($field: $value,)*
                ..::actguard::Policy::DEFAULT
            },
            compensate: None,
            explicit: &[],
            payload: &[],
            deps: &[],
            result_type: "",
            error_type: "",
            invoke: None,
        }
    };
}

/// A request to begin `key` of `action` on `record` at `now_ms`, for the tests that drive
/// `Store::begin` directly: a fresh run and claim id, digest `digest:{key}`, a 30 s lease, no loop
/// filter, a payload naming the key. Tests adjust it with struct update syntax.
pub fn begin_request(
    action: &str,
    key: &str,
    record: &str,
    now_ms: actguard::store::Millis,
) -> actguard::store::BeginRequest {
    actguard::store::BeginRequest {
        run_id: uuid::Uuid::now_v7(),
        action: action.into(),
        key_text: key.into(),
        key_digest: format!("digest:{key}").into(),
        record: record.into(),
        fingerprint: "fp".into(),
        payload: actguard::PayloadJson::from(serde_json::json!({ "key": key })),
        claim_id: uuid::Uuid::now_v7(),
        now_ms,
        lease_ms: 30_000,
        dedup_ms: None,
        replay_of: None,
    }
}
