//! The manifest as JSON: the schema it follows, serialization, parsing and the SHA-256 digest.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Manifest, ManifestError};
use crate::canonical;

/// The `schema_version` of manifests this version writes.
pub const SCHEMA_VERSION: &str = "actguard.manifest/1";

/// The JSON Schema (draft 2020-12) of the manifest, `runtime/schema/manifest.schema.json`.
pub const JSON_SCHEMA: &str = include_str!("../../schema/manifest.schema.json");

impl Manifest {
    /// Reads a manifest written by [`Manifest::to_json`].
    pub fn from_json(json: &str) -> Result<Manifest, ManifestError> {
        serde_json::from_str(json).map_err(|source| ManifestError::Parse {
            which: "given",
            source,
        })
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

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical::to_string(&v).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
