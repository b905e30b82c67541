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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::policy::{ActionSpec, Effect, FailureKind, Jitter, ParamSpec, Route};
use crate::registry::registry;

/// The `schema_version` of manifests this version writes.
pub const SCHEMA_VERSION: &str = "actguard.manifest/1";

/// The JSON Schema (draft 2020-12) of the manifest, `runtime/schema/manifest.schema.json`.
pub const JSON_SCHEMA: &str = include_str!("../schema/manifest.schema.json");

/// The store named in a manifest until the agent names its own ([`Manifest::with_store`]).
pub const DEFAULT_STORE: &str = "embedded SQLite (actguard.db)";

/// The environment variable that makes [`Manifest::check_file`] rewrite the file instead of failing.
pub const UPDATE_ENV: &str = "ACTGUARD_UPDATE_MANIFEST";

/// How the body of an action hands its idempotency key to the downstream system.
pub const DOWNSTREAM_KEY: &str = "run.attempt().key()";

/// Every option of `#[agent_action]`, in the attribute's documented order.
pub const OPTIONS: [&str; 18] = [
    "name",
    "effect",
    "key",
    "record",
    "retries",
    "max_elapsed",
    "backoff",
    "jitter",
    "dedup",
    "cycle",
    "lease",
    "on_transient",
    "on_validation",
    "on_conflict",
    "on_security",
    "owner",
    "expert",
    "compensate",
];

/// The five answers of every registered action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// `"sha256:<hex>"` of the canonical JSON (sorted keys, no whitespace) of this manifest without
    /// this field.
    pub digest: String,
    /// Question 5: what an action-log entry holds and where it is stored. Shared by every action.
    pub log: LogAnswer,
    /// One entry per action, sorted by name.
    pub actions: Vec<ActionEntry>,
}

/// Question 5: the action log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAnswer {
    /// Where the log (and the claims and queues) are stored.
    pub store: String,
    /// When an entry is written.
    pub written: String,
    /// How tampering is detected.
    pub integrity: String,
    /// The fields of an entry.
    pub entry_fields: Vec<FieldDoc>,
}

/// One field of an action-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDoc {
    /// The field's name in the log.
    pub name: String,
    /// What it holds.
    pub holds: String,
}

/// One action's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    /// The stable action name.
    pub name: String,
    /// Where it is declared.
    pub source: Source,
    /// Question 1: the idempotency key.
    pub idempotency: Idempotency,
    /// Question 2: retries before dead-lettering.
    pub retries: Retries,
    /// Question 3: the loop filter.
    pub dedup: Dedup,
    /// Question 4: where each kind of failure goes.
    pub failure_routing: FailureRouting,
    /// The action that reverses this one.
    pub compensate: Option<String>,
    /// Whether a person approves each key before it acts (`approve`); absent when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalGate>,
    /// Whether the action is an LLM tool (`tool`), with its description; absent when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The function's signature.
    pub signature: Signature,
    /// For each option of the attribute ([`OPTIONS`]), whether it was written or left to its default.
    pub options: BTreeMap<String, OptionSource>,
}

/// Who approves an action's keys, and for how long an approval holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalGate {
    /// The approvers' queue.
    pub queue: String,
    /// How long an approval may wait to be used (`approval_expires`).
    pub expires: String,
}

/// Where an action is declared. No line number: moving code must not change the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Source file.
    pub file: String,
    /// `module_path!()` of the function.
    pub module_path: String,
    /// The Rust function's name.
    pub fn_name: String,
}

/// Question 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// What the action does to the outside world.
    pub effect: Effect,
    /// The key template (none for a read without one).
    pub key: Option<String>,
    /// The record template, the business object the action acts on: `null` when none is declared
    /// (each key is then its own record, so the loop filter is off; see [`Dedup::off_because`]).
    pub record: Option<String>,
    /// The expression the body uses to pass the key downstream ([`DOWNSTREAM_KEY`]), when there is a key.
    pub downstream_key: Option<String>,
}

/// Question 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// Retries after the first attempt.
    pub retries: u32,
    /// `retries + 1`.
    pub max_attempts: u32,
    /// Total time budget of one call, e.g. `"2m"`.
    pub max_elapsed: String,
    /// Exponential backoff bounds.
    pub backoff: Backoff,
    /// How delays are randomized.
    pub jitter: Jitter,
}

/// Backoff bounds, e.g. `"100ms"` to `"30s"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// First delay.
    pub base: String,
    /// Largest delay.
    pub cap: String,
}

/// Question 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// Whether the loop filter can skip a repeat on the same record.
    pub loop_filter: LoopFilter,
    /// Why the loop filter is off; `null` when it is on.
    pub off_because: Option<FilterOff>,
    /// Loop-filter window for (record, action), e.g. `"24h"`; `null` when the filter is off.
    pub window: Option<String>,
    /// The longest run cycle, if declared.
    pub cycle: Option<String>,
    /// How long an in-progress claim on a record holds.
    pub lease: String,
}

/// Whether the loop filter of an action can skip anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopFilter {
    /// A repeat on the same record within the window is skipped.
    On,
    /// Nothing is skipped; [`Dedup::off_because`] says why.
    Off,
}

/// Why the loop filter of an action is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOff {
    /// The action only reads: reads are not claimed or deduplicated.
    Read,
    /// `dedup = none`.
    DedupNone,
    /// No `record` is declared: each key is its own record, so a repeat on the same business object
    /// comes with another key and is not skipped (and one with the same key is a replay, not a skip).
    NoRecord,
}

impl FilterOff {
    /// `"read"`, `"dedup_none"` or `"no_record"`, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOff::Read => "read",
            FilterOff::DedupNone => "dedup_none",
            FilterOff::NoRecord => "no_record",
        }
    }
}

/// Question 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRouting {
    /// Transient failures (timeouts, 503, throttling).
    pub transient: RouteAnswer,
    /// Validation failures (the input is wrong).
    pub validation: RouteAnswer,
    /// State conflicts (the target's state does not allow the write).
    pub conflict: RouteAnswer,
    /// Security failures (forbidden, tampered, suspicious).
    pub security: RouteAnswer,
    /// The data owner's queue.
    pub owner: Option<String>,
    /// The domain expert's queue.
    pub expert: Option<String>,
}

/// Where one kind of failure goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAnswer {
    /// The declared route.
    pub route: Route,
    /// The queue the failure ends in: the owner's or expert's queue, `"dead_letter"` (also after
    /// exhausted retries), or `null` for `halt`.
    pub queue: Option<String>,
}

/// The function's signature, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Payload parameters (fingerprinted, stored with queue entries, replayable).
    pub payload: Vec<Param>,
    /// `#[dep]` parameters.
    pub deps: Vec<Param>,
    /// `T` of `Result<T, E>`.
    pub result_type: String,
    /// `E` of `Result<T, E>`.
    pub error_type: String,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
}

/// Whether an option was written in the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionSource {
    /// Written in the attribute.
    Explicit,
    /// Left to actguard's default.
    Default,
}

/// MCP tool annotations of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpTool {
    /// The tool (action) name.
    pub name: String,
    /// The hints.
    pub annotations: McpAnnotations,
}

/// The MCP `ToolAnnotations` hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpAnnotations {
    /// `effect = read`.
    pub read_only_hint: bool,
    /// Any effect but `read`: a `write` may overwrite what is there (an update is not additive), so
    /// only a read claims `false`; MCP's default for a tool that is not read-only is `true` too.
    pub destructive_hint: bool,
    /// An idempotency key is declared: calling again with the same arguments has no further effect.
    pub idempotent_hint: bool,
    /// Always true: actions act on external systems.
    pub open_world_hint: bool,
}

/// Why a manifest could not be checked or compared.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The committed manifest differs from the one generated from the code.
    #[error(
        "the committed manifest {} is out of date with the actions in the code\n{changes}{diff}\nset {UPDATE_ENV}=1 to rewrite it",
        path.display()
    )]
    Outdated {
        /// The committed file.
        path: PathBuf,
        /// The policy changes, one per line (empty when the old file does not parse).
        changes: String,
        /// A line diff, committed (`-`) against generated (`+`).
        diff: String,
    },
    /// There is no committed manifest yet.
    #[error("the manifest {} does not exist; set {UPDATE_ENV}=1 to write it", path.display())]
    Missing {
        /// The expected file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("cannot access the manifest {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A manifest given to [`Manifest::diff`] is not valid JSON.
    #[error("the {which} manifest is not valid JSON: {source}")]
    Parse {
        /// `"old"` or `"new"` (in a diff), or `"given"`.
        which: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
}

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

    /// Reads a manifest written by [`Manifest::to_json`].
    pub fn from_json(json: &str) -> Result<Manifest, ManifestError> {
        serde_json::from_str(json).map_err(|source| ManifestError::Parse {
            which: "given",
            source,
        })
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

    /// `"sha256:<hex>"` of the [canonical JSON](crate::canonical) of the content, without the `digest`
    /// field.
    pub fn compute_digest(&self) -> String {
        let value = canonical::to_value(self).expect("a manifest always serializes");
        digest_of_json(&value)
    }

    /// Pretty JSON with a trailing newline, in a fixed field order.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        json.push('\n');
        json
    }

    /// The MCP tool annotations of every action, in manifest order.
    pub fn mcp_annotations(&self) -> Vec<McpTool> {
        self.actions
            .iter()
            .map(|a| McpTool {
                name: a.name.clone(),
                annotations: a.mcp_annotations(),
            })
            .collect()
    }

    /// Compares the manifest with the committed file at `path` (Markdown if it ends in `.md`, else
    /// JSON). On a difference returns [`ManifestError::Outdated`] with the policy changes and a line
    /// diff, unless the environment variable [`UPDATE_ENV`] is set (to anything but `0` or nothing):
    /// then the file is rewritten and the check passes.
    pub fn check_file(&self, path: impl AsRef<Path>) -> Result<(), ManifestError> {
        let update =
            std::env::var_os(UPDATE_ENV).is_some_and(|v| !v.is_empty() && v.as_os_str() != "0");
        self.check_file_with(path.as_ref(), update)
    }

    fn check_file_with(&self, path: &Path, update: bool) -> Result<(), ManifestError> {
        let markdown = path.extension().is_some_and(|e| e == "md");
        let generated = if markdown {
            self.to_markdown()
        } else {
            self.to_json()
        };
        let committed = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ManifestError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        if committed.as_deref() == Some(generated.as_str()) {
            return Ok(());
        }
        if update {
            let io = |source| ManifestError::Io {
                path: path.to_owned(),
                source,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            return std::fs::write(path, generated).map_err(io);
        }
        let Some(committed) = committed else {
            return Err(ManifestError::Missing {
                path: path.to_owned(),
            });
        };
        let changes = if markdown {
            String::new()
        } else {
            match Manifest::diff(&committed, &generated) {
                Ok(d) if !d.is_empty() => format!("policy changes:\n{d}\n"),
                _ => String::new(),
            }
        };
        Err(ManifestError::Outdated {
            path: path.to_owned(),
            changes,
            diff: line_diff(&committed, &generated, 2, 60),
        })
    }

    /// The changes from the manifest `old_json` to `new_json`, naming each changed value per action
    /// (`disburse: retries 3 → 5`). Works on any JSON with the manifest's shape, so manifests of
    /// other versions can be compared.
    pub fn diff(old_json: &str, new_json: &str) -> Result<ManifestDiff, ManifestError> {
        let old: Value = serde_json::from_str(old_json).map_err(|source| ManifestError::Parse {
            which: "old",
            source,
        })?;
        let new: Value = serde_json::from_str(new_json).map_err(|source| ManifestError::Parse {
            which: "new",
            source,
        })?;
        Ok(diff_values(&old, &new))
    }

    /// The "five questions" sign-off sheet: one section per action, in plain sentences.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# The five questions: action sign-off sheet\n\n");
        md.push_str(&format!(
            "Generated from the code by actguard. Manifest `{}` ({}), {}.\n\n",
            self.digest,
            self.schema_version,
            count(self.actions.len(), "action")
        ));
        md.push_str(
            "Each action below answers, from its `#[agent_action]` attribute: (1) its idempotency key, \
             (2) how often and how long it retries, (3) how it avoids acting twice on the same record, \
             (4) where each kind of failure goes, and (5) what the action log keeps. \"Left to defaults\" \
             lists the options the code did not write down.\n\n",
        );
        if !self.actions.is_empty() {
            md.push_str(
                "| action | effect | idempotency key | retries | dedup window | compensated by |\n",
            );
            md.push_str("|---|---|---|---|---|---|\n");
            for a in &self.actions {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    cell(&a.name),
                    a.idempotency.effect.as_str(),
                    a.idempotency
                        .key
                        .as_deref()
                        .map_or("none".to_owned(), |k| format!("`{}`", cell(k))),
                    a.retry_summary(),
                    a.dedup_summary(),
                    a.compensate.as_deref().map_or("none".to_owned(), cell),
                ));
            }
            md.push('\n');
        }
        for a in &self.actions {
            a.write_markdown(&self.log, &mut md);
        }
        md
    }
}

impl ActionEntry {
    pub(crate) fn from_spec(spec: &ActionSpec) -> ActionEntry {
        let p = &spec.policy;
        let queue_of = |route: Route| -> Option<String> {
            match route {
                Route::Retry | Route::DeadLetter => Some("dead_letter".to_owned()),
                Route::RouteOwner => p.owner.map(str::to_owned),
                Route::Escalate => p.expert.map(str::to_owned),
                Route::Halt => None,
            }
        };
        let answer = |kind: FailureKind| {
            let route = p.route_for(kind);
            RouteAnswer {
                route,
                queue: queue_of(route),
            }
        };
        let params = |ps: &[ParamSpec]| -> Vec<Param> {
            ps.iter()
                .map(|p| Param {
                    name: p.name.to_owned(),
                    ty: p.ty.to_owned(),
                })
                .collect()
        };
        // An explicit `dedup = none` is the first reason: the filter would be off with a record too.
        let off_because = if spec.effect == Effect::Read {
            Some(FilterOff::Read)
        } else if p.dedup.is_none() {
            Some(FilterOff::DedupNone)
        } else if spec.record.is_none() {
            Some(FilterOff::NoRecord)
        } else {
            None
        };
        ActionEntry {
            name: spec.name.to_owned(),
            source: Source {
                file: spec.file.to_owned(),
                module_path: spec.module_path.to_owned(),
                fn_name: spec.fn_name.to_owned(),
            },
            idempotency: Idempotency {
                effect: spec.effect,
                key: spec.key.map(str::to_owned),
                record: spec.record.map(str::to_owned),
                downstream_key: spec.key.map(|_| DOWNSTREAM_KEY.to_owned()),
            },
            retries: Retries {
                retries: p.retries,
                max_attempts: p.retries.saturating_add(1),
                max_elapsed: short_duration(p.max_elapsed),
                backoff: Backoff {
                    base: short_duration(p.backoff_base),
                    cap: short_duration(p.backoff_cap),
                },
                jitter: p.jitter,
            },
            dedup: Dedup {
                loop_filter: if off_because.is_some() {
                    LoopFilter::Off
                } else {
                    LoopFilter::On
                },
                off_because,
                window: p
                    .dedup
                    .filter(|_| off_because.is_none())
                    .map(short_duration),
                cycle: p.cycle.map(short_duration),
                lease: short_duration(p.lease),
            },
            failure_routing: FailureRouting {
                transient: answer(FailureKind::Transient),
                validation: answer(FailureKind::Validation),
                conflict: answer(FailureKind::Conflict),
                security: answer(FailureKind::Security),
                owner: p.owner.map(str::to_owned),
                expert: p.expert.map(str::to_owned),
            },
            compensate: spec.compensate.map(str::to_owned),
            approval: p.approve.map(|queue| ApprovalGate {
                queue: queue.to_owned(),
                expires: short_duration(p.approval_expires),
            }),
            tool: spec.tool.map(|t| t.description.to_owned()),
            signature: Signature {
                payload: params(spec.payload),
                deps: params(spec.deps),
                result_type: spec.result_type.to_owned(),
                error_type: spec.error_type.to_owned(),
            },
            options: OPTIONS
                .iter()
                .map(|o| {
                    let source = if spec.is_explicit(o) {
                        OptionSource::Explicit
                    } else {
                        OptionSource::Default
                    };
                    ((*o).to_owned(), source)
                })
                .collect(),
        }
    }

    /// The MCP hints of this action.
    pub fn mcp_annotations(&self) -> McpAnnotations {
        let effect = self.idempotency.effect;
        McpAnnotations {
            read_only_hint: effect == Effect::Read,
            destructive_hint: effect != Effect::Read,
            idempotent_hint: self.idempotency.key.is_some(),
            open_world_hint: true,
        }
    }

    /// `"5 within 2m"`, or `"none"` when transient failures are not retried.
    fn retry_summary(&self) -> String {
        if self.retries.retries == 0 || self.failure_routing.transient.route != Route::Retry {
            "none".to_owned()
        } else {
            format!(
                "{} within {}",
                self.retries.retries, self.retries.max_elapsed
            )
        }
    }

    /// The dedup window, or `"off (no record)"` and the like: the loop filter in one table cell.
    fn dedup_summary(&self) -> String {
        match (&self.dedup.window, self.dedup.off_because) {
            (Some(window), None) => window.clone(),
            (_, Some(FilterOff::Read)) => "off (read)".to_owned(),
            (_, Some(FilterOff::DedupNone)) => "off (`dedup = none`)".to_owned(),
            (_, Some(FilterOff::NoRecord)) => "off (no record)".to_owned(),
            (None, None) => "off".to_owned(),
        }
    }

    /// The options left to their defaults, in the attribute's order.
    pub fn defaulted_options(&self) -> Vec<&str> {
        OPTIONS
            .iter()
            .copied()
            .filter(|o| self.options.get(*o) != Some(&OptionSource::Explicit))
            .collect()
    }

    fn write_markdown(&self, log: &LogAnswer, md: &mut String) {
        let r = &self.retries;
        let d = &self.dedup;
        let f = &self.failure_routing;
        let effect = self.idempotency.effect;

        md.push_str(&format!("## {}\n\n", self.name));
        md.push_str(&format!(
            "`{}::{}` in `{}`. Effect: **{}**",
            self.source.module_path,
            self.source.fn_name,
            self.source.file,
            effect.as_str()
        ));
        match &self.compensate {
            Some(c) => md.push_str(&format!("; reversed by the action `{c}`.\n\n")),
            None if effect == Effect::Destructive => {
                md.push_str("; **no compensating action is declared**.\n\n")
            }
            None => md.push_str(".\n\n"),
        }
        if let Some(a) = &self.approval {
            md.push_str(&format!(
                "**Approval.** A person in the queue `{}` approves each key, with its payload, before \
                 it acts; an approval unused for {} expires.\n\n",
                a.queue,
                long_duration_str(&a.expires)
            ));
        }

        // 1. Idempotency.
        md.push_str("**1. Idempotency key.** ");
        match (&self.idempotency.key, effect) {
            (Some(key), _) => {
                md.push_str(&format!(
                    "Every call is identified by the key `{key}`, saved in the store before the action \
                     runs. A call whose key has already completed returns the stored result without \
                     acting again, and a retry reuses the same key. The key is handed to the downstream \
                     system as `{DOWNSTREAM_KEY}`: confirm that the downstream honours it."
                ));
                match &self.idempotency.record {
                    Some(record) => {
                        md.push_str(&format!(" The record this action touches is `{record}`."))
                    }
                    None => md.push_str(
                        " No record is declared: each key is its own record (the log's `record` is \
                         the key).",
                    ),
                }
                md.push_str("\n\n");
            }
            (None, Effect::Read) => {
                md.push_str("This action only reads, so it needs no idempotency key.\n\n")
            }
            (None, _) => md.push_str(
                "**None declared**: a retry after a timeout may write twice. The startup audit rejects this.\n\n",
            ),
        }

        // 2. Retries.
        md.push_str("**2. Retries.** ");
        let transient = &f.transient;
        if transient.route == Route::Retry && r.retries > 0 {
            md.push_str(&format!(
                "If the downstream fails with a transient error (a timeout, a 503, throttling), this \
                 action retries at most {} within {} ({} in all), waiting {} to {} between attempts \
                 (exponential backoff, {}), then puts the call in the dead-letter queue. Retries of one \
                 call never overlap.\n\n",
                count(r.retries as usize, "time"),
                long_duration_str(&r.max_elapsed),
                count(r.max_attempts as usize, "attempt"),
                long_duration_str(&r.backoff.base),
                long_duration_str(&r.backoff.cap),
                jitter_words(r.jitter),
            ));
        } else if transient.route == Route::Retry {
            md.push_str(
                "This action does not retry (`retries = 0`): a transient failure (a timeout, a 503, \
                 throttling) puts the call in the dead-letter queue.\n\n",
            );
        } else {
            md.push_str(&format!(
                "Transient failures (a timeout, a 503, throttling) are not retried: {}.\n\n",
                fate(transient, f)
            ));
        }

        // 3. Dedup.
        md.push_str("**3. Deduplication.** ");
        let record = self
            .idempotency
            .record
            .as_deref()
            .map_or("the same business object".to_owned(), |r| {
                format!("the record `{r}`")
            });
        match (&d.window, d.off_because) {
            (_, Some(FilterOff::Read)) => md.push_str(
                "This action only reads, so the loop filter does not apply: reads are not claimed, \
                 deduplicated or serialized.",
            ),
            (_, Some(FilterOff::DedupNone)) => md.push_str(&format!(
                "The loop filter is off (`dedup = none`): this action may act on {record} again on any \
                 new call; only calls with the same key are deduplicated."
            )),
            (_, Some(FilterOff::NoRecord)) => md.push_str(
                "**The loop filter is off: no record is declared.** Without a `record`, each key is its \
                 own record, so nothing is ever skipped: a repeat on the same business object under \
                 another key acts again, and only calls with the same key are deduplicated. Declare the \
                 business object this action acts on (the invoice, the work order, the shipment) as its \
                 `record` to turn the filter on.",
            ),
            (Some(window), None) => {
                md.push_str(&format!(
                    "Once this action has acted on {record}, it does not act on it again for {}: a \
                     repeat is skipped without calling the downstream, and the skip is logged.",
                    long_duration_str(window)
                ));
                if let Some(cycle) = &d.cycle {
                    md.push_str(&format!(
                        " The longest run cycle is {}, shorter than that window, so the next cycle \
                         cannot act twice.",
                        long_duration_str(cycle)
                    ));
                }
            }
            (None, None) => md.push_str("The loop filter is off."),
        }
        if effect != Effect::Read {
            match &self.idempotency.record {
                Some(_) => md.push_str(&format!(
                    " Calls on the same record run one at a time: a worker's claim holds for {} before \
                     another worker may take it over, and each claim carries a fencing token.",
                    long_duration_str(&d.lease)
                )),
                None => md.push_str(&format!(
                    " Only calls with the same key run one at a time (a worker's claim holds for {} \
                     before another worker may take it over, and each claim carries a fencing token): \
                     calls on one business object under different keys may overlap.",
                    long_duration_str(&d.lease)
                )),
            }
        }
        md.push_str("\n\n");

        // 4. Failures.
        md.push_str(
            "**4. Failures.** Failures are classified by deterministic code (the `Classify` \
                     implementation of `",
        );
        md.push_str(&self.signature.error_type);
        md.push_str("`), not by a model.\n\n");
        md.push_str("| failure | meaning | where it goes |\n|---|---|---|\n");
        for (kind, meaning, answer) in [
            (
                "transient",
                "may succeed if tried again (timeout, 503, throttling)",
                &f.transient,
            ),
            ("validation", "the input is wrong", &f.validation),
            (
                "conflict",
                "the target's state does not allow the write",
                &f.conflict,
            ),
            ("security", "forbidden, tampered or suspicious", &f.security),
        ] {
            md.push_str(&format!(
                "| {kind} | {meaning} | {} |\n",
                cell(&destination(answer, f))
            ));
        }
        md.push('\n');

        // 5. Log.
        md.push_str(&format!(
            "**5. Action log.** {} It is stored in {}; {} An entry holds: {}.\n\n",
            log.written,
            log.store,
            log.integrity,
            log.entry_fields
                .iter()
                .map(|f| format!("`{}`", f.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));

        // Signature and defaults.
        let payload = if self.signature.payload.is_empty() {
            "none".to_owned()
        } else {
            self.signature
                .payload
                .iter()
                .map(|p| format!("`{}: {}`", p.name, p.ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        md.push_str(&format!(
            "Payload (stored with queue entries for replay): {payload}. Returns `{}`, fails with `{}`.\n\n",
            self.signature.result_type, self.signature.error_type
        ));
        let defaults = self.defaulted_options();
        if defaults.is_empty() {
            md.push_str("Left to defaults: nothing, every option is written in the code.\n\n");
        } else {
            md.push_str(&format!(
                "Left to defaults: {}.\n\n",
                defaults
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
}

impl LogAnswer {
    fn new(store: &str) -> LogAnswer {
        let fields: [(&str, &str); 20] = [
            ("seq", "position in the log: 1, 2, 3, … with no gaps"),
            ("at_ms", "when the step ended (Unix milliseconds)"),
            ("run_id", "the run (UUIDv7)"),
            ("action", "the action name"),
            ("record", "the record touched"),
            ("key_text", "the idempotency key, readable"),
            ("key_digest", "the idempotency key's digest"),
            (
                "attempt",
                "attempt number (0 for skips, replays and operator steps)",
            ),
            ("retry", "whether the attempt is a retry"),
            (
                "outcome",
                "succeeded, replayed, skipped, retrying, routed, dead_lettered, halted, compensated or operator",
            ),
            (
                "failure_kind",
                "transient, validation, conflict or security, if it failed",
            ),
            ("route", "where the failure went"),
            ("message", "the failure message or a note"),
            ("queue_entry", "the review-queue entry created or acted on"),
            ("before", "the record's state before the write"),
            (
                "after",
                "the record's state after the write (default: the result)",
            ),
            ("fencing_token", "the fencing token of the claim"),
            ("duration_ms", "how long the step took"),
            ("prev_hash", "hash of the previous entry"),
            ("hash", "SHA-256 of the previous hash and this entry"),
        ];
        LogAnswer {
            store: store.to_owned(),
            written:
                "Every attempt, skip, replay, routing, dead-letter, halt and operator step is \
                      appended to the action log as it happens, so the record of what was done \
                      survives a failed run."
                    .to_owned(),
            integrity:
                "entries are chained by SHA-256, so an edited, deleted or reordered entry is \
                        detected (`actguard verify`)."
                    .to_owned(),
            entry_fields: fields
                .iter()
                .map(|(name, holds)| FieldDoc {
                    name: (*name).to_owned(),
                    holds: (*holds).to_owned(),
                })
                .collect(),
        }
    }
}

fn destination(answer: &RouteAnswer, f: &FailureRouting) -> String {
    let queue = |q: &Option<String>, missing: &str| {
        q.as_deref()
            .map_or(format!("**{missing}**"), |q| format!("`{q}`"))
    };
    match answer.route {
        Route::Retry => "retried (see question 2), then the dead-letter queue".to_owned(),
        Route::RouteOwner => format!(
            "the data owner's queue {}",
            queue(&f.owner, "no owner named")
        ),
        Route::Escalate => format!(
            "escalated to the domain expert's queue {}",
            queue(&f.expert, "no expert named")
        ),
        Route::DeadLetter => "the dead-letter queue".to_owned(),
        Route::Halt => "halts the whole run and raises an alert".to_owned(),
    }
}

/// What happens to a failed call, as the end of a sentence.
fn fate(answer: &RouteAnswer, f: &FailureRouting) -> String {
    match answer.route {
        Route::Retry | Route::DeadLetter => "the call goes to the dead-letter queue".to_owned(),
        Route::Halt => "the whole run halts and an alert is raised".to_owned(),
        Route::RouteOwner => format!("the call goes to {}", destination(answer, f)),
        Route::Escalate => format!("the call is {}", destination(answer, f)),
    }
}

fn jitter_words(j: Jitter) -> &'static str {
    match j {
        Jitter::Full => "full jitter",
        Jitter::Equal => "equal jitter",
        Jitter::Decorrelated => "decorrelated jitter",
        Jitter::None => "no jitter",
    }
}

fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

const UNITS: [(u128, &str, &str); 5] = [
    (86_400_000, "d", "day"),
    (3_600_000, "h", "hour"),
    (60_000, "m", "minute"),
    (1_000, "s", "second"),
    (1, "ms", "millisecond"),
];

/// A duration as the attribute writes it: `"100ms"`, `"30s"`, `"2m"`, `"24h"`, `"7d"` (the largest
/// unit that divides it; a single day is `"24h"`).
pub fn short_duration(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{}ns", d.as_nanos());
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "0ms".to_owned();
    }
    for (unit, suffix, _) in UNITS {
        if ms % unit == 0 && !(suffix == "d" && ms / unit == 1) {
            return format!("{}{suffix}", ms / unit);
        }
    }
    unreachable!("every whole number of milliseconds is divisible by 1")
}

/// `"2m"` → `"2 minutes"`; anything else is returned as is.
fn long_duration_str(short: &str) -> String {
    let digits = short.trim_end_matches(|c: char| !c.is_ascii_digit());
    let suffix = &short[digits.len()..];
    match (digits.parse::<u128>(), UNITS.iter().find(|u| u.1 == suffix)) {
        (Ok(n), Some((_, _, word))) => count(n as usize, word),
        _ => short.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Diff

/// The changes between two manifests, per action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestDiff {
    /// Removed actions, added actions, then changed values, each sorted by action.
    pub changes: Vec<Change>,
}

impl ManifestDiff {
    /// No change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for ManifestDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// One change between two manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An action exists only in the new manifest.
    ActionAdded {
        /// Its name.
        action: String,
    },
    /// An action exists only in the old manifest.
    ActionRemoved {
        /// Its name.
        action: String,
    },
    /// A value changed: of one action, or of the whole manifest (`action: None`, e.g. the log store).
    ValueChanged {
        /// The action, if the value is one action's.
        action: Option<String>,
        /// The option or value, named as in the attribute where there is one (`retries`, `dedup`,
        /// `on_validation`, `backoff cap`, `retries source` for explicit/default).
        field: String,
        /// The old value (`none` for null or absent).
        old: String,
        /// The new value.
        new: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ActionAdded { action } => write!(f, "added action `{action}`"),
            Change::ActionRemoved { action } => write!(f, "removed action `{action}`"),
            Change::ValueChanged {
                action,
                field,
                old,
                new,
            } => {
                if let Some(a) = action {
                    write!(f, "{a}: ")?;
                }
                write!(f, "{field} {old} → {new}")
            }
        }
    }
}

/// Paths inside an action entry, in the order the five questions come, with their names in a diff.
/// `None`: derived from other values, not reported.
const ACTION_FIELDS: &[(&str, Option<&str>)] = &[
    ("idempotency.effect", Some("effect")),
    ("idempotency.key", Some("key")),
    ("idempotency.record", Some("record")),
    ("idempotency.downstream_key", Some("downstream key")),
    ("retries.retries", Some("retries")),
    ("retries.max_attempts", None),
    ("retries.max_elapsed", Some("max_elapsed")),
    ("retries.backoff.base", Some("backoff base")),
    ("retries.backoff.cap", Some("backoff cap")),
    ("retries.jitter", Some("jitter")),
    ("dedup.loop_filter", Some("loop filter")),
    ("dedup.off_because", None),
    ("dedup.window", Some("dedup")),
    ("dedup.cycle", Some("cycle")),
    ("dedup.lease", Some("lease")),
    ("failure_routing.transient.route", Some("on_transient")),
    ("failure_routing.transient.queue", None),
    ("failure_routing.validation.route", Some("on_validation")),
    ("failure_routing.validation.queue", None),
    ("failure_routing.conflict.route", Some("on_conflict")),
    ("failure_routing.conflict.queue", None),
    ("failure_routing.security.route", Some("on_security")),
    ("failure_routing.security.queue", None),
    ("failure_routing.owner", Some("owner")),
    ("failure_routing.expert", Some("expert")),
    ("compensate", Some("compensate")),
    ("source.file", Some("source file")),
    ("source.module_path", Some("module path")),
    ("source.fn_name", Some("fn name")),
    ("signature.payload", Some("payload")),
    ("signature.deps", Some("deps")),
    ("signature.result_type", Some("result type")),
    ("signature.error_type", Some("error type")),
    ("name", None),
];

fn diff_values(old: &Value, new: &Value) -> ManifestDiff {
    let mut changes = Vec::new();

    // Manifest-wide values: everything but the actions and the digest (derived).
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("actions");
            m.remove("digest");
        }
        v
    };
    let (old_top, new_top) = (flatten(&strip(old)), flatten(&strip(new)));
    for (path, old_v, new_v) in changed_paths(&old_top, &new_top) {
        changes.push(Change::ValueChanged {
            action: None,
            field: path.replace('.', " "),
            old: old_v,
            new: new_v,
        });
    }

    let actions = |v: &Value| -> BTreeMap<String, Value> {
        v.get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                (name, a.clone())
            })
            .collect()
    };
    let (old_actions, new_actions) = (actions(old), actions(new));
    for name in old_actions.keys().filter(|n| !new_actions.contains_key(*n)) {
        changes.push(Change::ActionRemoved {
            action: name.clone(),
        });
    }
    for name in new_actions.keys().filter(|n| !old_actions.contains_key(*n)) {
        changes.push(Change::ActionAdded {
            action: name.clone(),
        });
    }
    for (name, old_a) in &old_actions {
        let Some(new_a) = new_actions.get(name) else {
            continue;
        };
        let (o, n) = (flatten(old_a), flatten(new_a));
        let mut changed = changed_paths(&o, &n);
        changed.sort_by_key(|(path, _, _)| rank(path));
        for (path, old_v, new_v) in changed {
            let field = match ACTION_FIELDS.iter().find(|(p, _)| *p == path) {
                Some((_, None)) => continue,
                Some((_, Some(label))) => (*label).to_owned(),
                None => match path.strip_prefix("options.") {
                    Some(option) => format!("{option} source"),
                    None => path.clone(),
                },
            };
            changes.push(Change::ValueChanged {
                action: Some(name.clone()),
                field,
                old: old_v,
                new: new_v,
            });
        }
    }
    ManifestDiff { changes }
}

fn rank(path: &str) -> (usize, String) {
    let i = ACTION_FIELDS
        .iter()
        .position(|(p, _)| *p == path)
        .unwrap_or(ACTION_FIELDS.len());
    (i, path.to_owned())
}

fn changed_paths(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let none = "none".to_owned();
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (o, n) = (old.get(p).unwrap_or(&none), new.get(p).unwrap_or(&none));
            (o != n).then(|| (p.clone(), o.clone(), n.clone()))
        })
        .collect()
}

/// Leaves of a JSON value by dotted path; arrays are leaves (rendered as compact JSON).
fn flatten(value: &Value) -> BTreeMap<String, String> {
    fn walk(v: &Value, path: &mut String, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(child, path, out);
                    path.truncate(len);
                }
            }
            leaf => {
                let text = match leaf {
                    Value::Null => "none".to_owned(),
                    Value::String(s) => s.clone(),
                    Value::Array(_) => {
                        canonical::to_string(leaf).expect("a JSON value always serializes")
                    }
                    other => other.to_string(),
                };
                out.insert(path.clone(), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, &mut String::new(), &mut out);
    out
}

/// A short line diff of `old` against `new`: `-` lines only in `old`, `+` lines only in `new`,
/// `context` unchanged lines around each change, at most `max_lines` lines of output.
fn line_diff(old: &str, new: &str, context: usize, max_lines: usize) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut lines: Vec<String> = Vec::new();
    for hunk in diff.grouped_ops(context) {
        let Some(first) = hunk.first() else { continue };
        lines.push(format!(
            "@@ line {} → {} @@",
            first.old_range().start + 1,
            first.new_range().start + 1
        ));
        for change in hunk.iter().flat_map(|op| diff.iter_changes(op)) {
            let sign = match change.tag() {
                similar::ChangeTag::Equal => ' ',
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
            };
            let line = change.value().trim_end_matches(['\n', '\r']);
            lines.push(format!("{sign} {line}"));
        }
    }
    let total = lines.len();
    if total > max_lines {
        lines.truncate(max_lines);
        lines.push(format!("… {} more lines", total - max_lines));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The digest of a manifest given as JSON (`"sha256:<hex>"` of its canonical JSON without its
/// `digest` field): what [`Manifest::compute_digest`] computes, for a manifest file of any version.
pub fn digest_of_json(manifest: &Value) -> String {
    let mut value = manifest.clone();
    if let Value::Object(map) = &mut value {
        map.remove("digest");
    }
    let mut bytes = Vec::with_capacity(16 * 1024);
    canonical::write_value(&mut bytes, &value);
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogEntry, NewLogEntry, Outcome};

    #[test]
    fn durations_render_in_the_largest_exact_unit() {
        let cases = [
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(24 * 3600), "24h"),
            (Duration::from_secs(7 * 24 * 3600), "7d"),
            (Duration::ZERO, "0ms"),
            (Duration::from_nanos(1500), "1500ns"),
        ];
        for (d, text) in cases {
            assert_eq!(short_duration(d), text, "{d:?}");
        }
        assert_eq!(long_duration_str("2m"), "2 minutes");
        assert_eq!(long_duration_str("1h"), "1 hour");
        assert_eq!(long_duration_str("100ms"), "100 milliseconds");
        assert_eq!(long_duration_str("1500ns"), "1500ns");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical::to_string(&v).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn line_diff_shows_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
        let diff = line_diff(old, new, 1, 60);
        assert_eq!(
            diff,
            "@@ line 3 → 3 @@\n  c\n- d\n+ D\n  e\n@@ line 7 → 7 @@\n  g\n+ h\n"
        );
    }

    #[test]
    fn line_diff_is_cut_to_the_limit() {
        let old: String = (0..100).map(|i| format!("{i}\n")).collect();
        let new: String = (0..100).map(|i| format!("x{i}\n")).collect();
        let diff = line_diff(&old, &new, 2, 10);
        assert_eq!(diff.lines().count(), 11);
        assert!(diff.ends_with("… 191 more lines\n"), "{diff}");
    }

    #[test]
    fn the_log_answer_names_every_field_of_a_log_entry() {
        let entry = LogEntry::chain(
            None,
            NewLogEntry {
                at_ms: 1,
                run_id: uuid::Uuid::nil(),
                action: "a".into(),
                record: "r".into(),
                key_text: "k".into(),
                key_digest: "d".into(),
                attempt: 1,
                retry: false,
                outcome: Outcome::Succeeded,
                failure_kind: None,
                route: None,
                message: None,
                queue_entry: None,
                before: None,
                after: None,
                fencing_token: None,
                duration_ms: 0,
            },
        );
        let Value::Object(fields) = serde_json::to_value(&entry).unwrap() else {
            panic!("a log entry serializes to an object");
        };
        let documented: Vec<String> = LogAnswer::new(DEFAULT_STORE)
            .entry_fields
            .into_iter()
            .map(|f| f.name)
            .collect();
        let mut actual: Vec<String> = fields.keys().cloned().collect();
        let mut expected = documented.clone();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected);
    }
}
