//! Checking a committed manifest file against the code: a snapshot test that reports the policy
//! changes and a line diff, or rewrites the file when asked to.

use std::path::Path;

use super::{Manifest, ManifestError};

/// The environment variable that makes [`Manifest::check_file`] rewrite the file instead of failing.
pub const UPDATE_ENV: &str = "ACTGUARD_UPDATE_MANIFEST";

impl Manifest {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
