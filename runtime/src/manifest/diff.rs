//! The policy changes between two manifests, named per action as in the attribute
//! (`disburse: retries 3 → 5`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{Manifest, ManifestError};
use crate::canonical;

impl Manifest {
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
}

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
