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
