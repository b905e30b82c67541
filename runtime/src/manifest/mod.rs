//! The manifest: every action's answers to the five questions, exported for the people who sign off.
//!
//! Three renderings of one [`Manifest`]: JSON ([`Manifest::to_json`], described by
//! `runtime/schema/manifest.schema.json` and identified by a SHA-256 digest), a Markdown sign-off
//! sheet ([`Manifest::to_markdown`]) and MCP tool annotations ([`Manifest::mcp_annotations`]).
//! The output is deterministic (sorted actions, fixed field order, no timestamps), so a committed
//! copy can be checked in a test with [`Manifest::check_file`] and compared across versions with
//! [`Manifest::diff`].
//!
//! ```no_run
//! // tests/manifest.rs of an agent crate: fails when a policy changes and the committed manifest
//! // does not; `ACTGUARD_UPDATE_MANIFEST=1 cargo test` rewrites it.
//! #[test]
//! fn manifest_is_committed() {
//!     actguard::Manifest::from_registry().check_file("actguard.manifest.json").unwrap();
//! }
//! ```
//!
//! The source location of an action is its file and module path, not its line: moving code around
//! does not change the manifest, so every manifest diff is worth reading.

mod answers;
mod diff;
mod duration;
mod error;
mod json;
mod mcp;
mod model;
mod sheet;
mod snapshot;

pub use diff::{Change, ManifestDiff};
pub use duration::short_duration;
pub use error::ManifestError;
pub use json::{JSON_SCHEMA, SCHEMA_VERSION, digest_of_json};
pub use mcp::{McpAnnotations, McpTool};
pub use model::{
    ActionEntry, ApprovalGate, BackoffPolicy, DEFAULT_STORE, DOWNSTREAM_KEY, Dedup, FailureRouting,
    FieldDoc, FilterOff, Idempotency, LogAnswer, LoopFilter, Manifest, OPTIONS, OptionSource,
    Param, Retries, RouteAnswer, Signature, Source,
};
pub use snapshot::UPDATE_ENV;

use crate::policy::ActionSpec;
use crate::registry::registry;

impl Manifest {
    /// The manifest of every action compiled into this program.
    pub fn from_registry() -> Manifest {
        Manifest::from_specs(&registry())
    }

    /// The manifest of `specs`, sorted by name.
    pub fn from_specs(specs: &[&ActionSpec]) -> Manifest {
        let mut actions: Vec<ActionEntry> =
            specs.iter().map(|s| ActionEntry::from_spec(s)).collect();
        actions.sort_by(|a, b| {
            (
                &a.name,
                &a.source.file,
                &a.source.module_path,
                &a.source.fn_name,
            )
                .cmp(&(
                    &b.name,
                    &b.source.file,
                    &b.source.module_path,
                    &b.source.fn_name,
                ))
        });
        let mut manifest = Manifest {
            schema_version: SCHEMA_VERSION.to_owned(),
            digest: String::new(),
            log: LogAnswer::new(DEFAULT_STORE),
            actions,
        };
        manifest.digest = manifest.compute_digest();
        manifest
    }

    /// Names the store the agent uses (the answer to "where is the log stored"), updating the digest.
    pub fn with_store(mut self, store: impl Into<String>) -> Manifest {
        self.log.store = store.into();
        self.digest = self.compute_digest();
        self
    }

    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&ActionEntry> {
        self.actions.iter().find(|a| a.name == name)
    }
}
