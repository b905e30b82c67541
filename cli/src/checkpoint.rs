//! Checkpoints of the action log's head, kept in a file outside the store (`verify --checkpoint`).
//!
//! One line per checkpoint, appended when the head has moved since the last one:
//!
//! ```text
//! 136:4be0c0f1d9e35a2c7c1b84e2f0a6d3b59e7f81c2a4d60b3e9f5c7a1d2e8b4f60 2026-12-02T07:45:00.000Z 136 entries
//! ```
//!
//! The first field is the head (`SEQ:HASH`); the rest is for people. Empty lines and lines starting
//! with `#` are skipped. The last checkpoint is what the next `verify --checkpoint` expects the log to
//! still hold, so entries deleted from the end, or a chain rewritten, since the last checkpoint are
//! reported (exit 2) even though the shortened or rewritten chain verifies on its own.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use actguard::LogHead;
use actguard::store::Millis;

use crate::CliError;
use crate::time::format_ms;

/// The last checkpoint in `path`; `None` if the file does not exist or holds none yet.
pub fn last(path: &Path) -> Result<Option<LogHead>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read the checkpoint file {}: {e}",
                path.display()
            )));
        }
    };
    let Some((n, line)) = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .last()
    else {
        return Ok(None);
    };
    let head = line.split_whitespace().next().unwrap_or_default();
    head.parse().map(Some).map_err(|e| {
        CliError::Usage(format!(
            "the checkpoint file {} line {}: {e}",
            path.display(),
            n + 1
        ))
    })
}

/// Appends `head` to `path` (created if missing) and flushes it to disk.
pub fn append(path: &Path, head: &LogHead, entries: u64, now_ms: Millis) -> Result<(), CliError> {
    let line = format!("{head} {} {entries} entries\n", format_ms(now_ms));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| {
        CliError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot write the checkpoint file {}: {e}", path.display()),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, c: char) -> LogHead {
        LogHead {
            seq,
            hash: c.to_string().repeat(64),
        }
    }

    #[test]
    fn the_last_line_is_the_checkpoint_comments_and_blank_lines_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        assert_eq!(last(&path).unwrap(), None);
        append(&path, &head(3, 'a'), 3, 0).unwrap();
        append(&path, &head(9, 'b'), 9, 1_000).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\n# copied to the vault\n")
            .unwrap();
        assert_eq!(last(&path).unwrap(), Some(head(9, 'b')));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("3:{} 1970-01-01T00:00:00", "a".repeat(64))));
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        std::fs::write(&path, "# heads\nnot-a-head 2026\n").unwrap();
        let e = last(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("is not a log head"),
            "{e}"
        );
    }
}
