//! Why a manifest could not be read, checked or compared.

use std::path::PathBuf;

use super::UPDATE_ENV;

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
    /// A manifest given to [`Manifest::diff`](super::Manifest::diff) is not valid JSON.
    #[error("the {which} manifest is not valid JSON: {source}")]
    Parse {
        /// `"old"` or `"new"` (in a diff), or `"given"`.
        which: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
}
