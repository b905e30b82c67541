//! What `actguard` does to the file named by `--store`: the commands that only read open it
//! read-only (nothing created, upgraded or written, no wait for an agent writing it), the commands
//! that write open an existing store only, and a file that is not an actguard store is refused and
//! left byte for byte as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use actguard::{SqliteStore, Store};
use assert_cmd::Command;
use predicates::prelude::*;

fn actguard(store: &Path) -> Command {
    let mut cmd = Command::cargo_bin("actguard").unwrap();
    cmd.env_remove("ACTGUARD_STORE").arg("--store").arg(store);
    cmd
}

/// A plain error (exit 1) saying `message`.
fn plain_error(cmd: &mut Command, message: &str) {
    cmd.assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains(message))
        .stderr(predicate::str::contains("panicked").not());
}

/// Every file of a directory, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = if e.file_type().unwrap().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

fn assert_unchanged(dir: &Path, before: &BTreeMap<String, Vec<u8>>) {
    let after = snapshot(dir);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no file was created or removed"
    );
    for (name, bytes) in before {
        assert!(after[name] == *bytes, "`{name}` is byte for byte unchanged");
    }
}

/// The commands that only read, and (last) the ones that write.
const READS: [&[&str]; 7] = [
    &["log"],
    &["verify"],
    &["show", "1"],
    &["runs"],
    &["queue", "ls"],
    &["queue", "show", "1"],
    &["blast-radius", "--action", "ship"],
];
const WRITES: [&[&str]; 3] = [
    &["queue", "claim", "1", "--by", "dana"],
    &["queue", "resolve", "1", "--by", "dana", "--note", "fixed"],
    &["queue", "discard", "1", "--by", "dana", "--note", "dropped"],
];

/// A store holding three log entries, closed (everything in the main file).
fn closed_store(dir: &Path) -> PathBuf {
    let path = dir.join("actguard.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        for i in 1..=3u64 {
            store
                .append_log(&actguard::log::NewLogEntry {
                    at_ms: 1_700_000_000_000 + i as i64 * 1000,
                    run_id: uuid::Uuid::from_u128(7),
                    action: "ship".into(),
                    record: format!("rec-{i}").into(),
                    key_text: format!("ship:rec-{i}").into(),
                    key_digest: format!("digest:{i}").into(),
                    attempt: 1,
                    retry: false,
                    outcome: actguard::Outcome::Succeeded,
                    failure_kind: None,
                    route: None,
                    message: None,
                    queue_entry: None,
                    before: None,
                    after: None,
                    fencing_token: None,
                    duration_ms: 3,
                })
                .await
                .unwrap();
        }
        store.close().unwrap();
    });
    assert!(!dir.join("actguard.db-wal").exists());
    path
}

#[test]
fn another_applications_database_is_refused_and_left_unchanged() {
    for journal_mode in ["DELETE", "WAL"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other-app.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |_| {
                Ok(())
            })
            .unwrap();
            conn.execute_batch(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
                 INSERT INTO users (name) VALUES ('ada');",
            )
            .unwrap();
            conn.close().unwrap();
        }
        let before = snapshot(dir.path());
        for args in READS.iter().chain(&WRITES) {
            plain_error(
                actguard(&path).args(*args),
                &format!(
                    "`{}` is an SQLite database of another application (tables users), not an \
                     actguard store: it was left unchanged",
                    path.display()
                ),
            );
            assert_unchanged(dir.path(), &before);
        }
    }
}

#[test]
fn an_empty_file_and_a_text_file_are_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "notes\n".repeat(50)).unwrap();
    let before = snapshot(dir.path());
    for args in READS.iter().chain(&WRITES) {
        plain_error(actguard(&empty).args(*args), "is an empty file");
        plain_error(
            actguard(&text).args(*args),
            "does not start with the SQLite header",
        );
        assert_unchanged(dir.path(), &before);
    }
}

#[test]
fn a_missing_store_is_created_by_no_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    for args in READS.iter().chain(&WRITES) {
        plain_error(
            actguard(&missing).args(*args),
            &format!("no action store at {}", missing.display()),
        );
        assert!(snapshot(dir.path()).is_empty(), "{args:?} created nothing");
    }
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_nothing_is_refused_and_its_target_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("store.db");
    let link = dir.path().join("actguard.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for args in READS.iter().chain(&WRITES) {
        plain_error(actguard(&link).args(*args), "is a symbolic link to `");
        assert!(!target.exists());
    }
}

#[test]
fn a_store_of_an_earlier_release_is_read_without_being_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/store-0.1.db");
    std::fs::copy(&fixture, &path).unwrap();
    let before = snapshot(dir.path());
    for args in [&["verify"][..], &["log"], &["runs"], &["queue", "ls"]] {
        actguard(&path).args(args).assert().success();
        assert_unchanged(dir.path(), &before);
    }
    // Still a file an agent of release 0.1 opens: no application id, no write-ahead log mode.
    let header = std::fs::read(&path).unwrap();
    assert_eq!(header[68..72], [0, 0, 0, 0]);
}

#[test]
fn read_commands_do_not_wait_for_an_agent_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path());
    // An agent's store is open, and another connection is in the middle of a write transaction.
    let agent = SqliteStore::open(&path).unwrap();
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO runs (run_id, reason, halted_at_ms) VALUES ('r', 'x', 1);",
        )
        .unwrap();
    let started = std::time::Instant::now();
    for args in READS.iter().filter(|a| !a.starts_with(&["queue", "show"])) {
        actguard(&path).args(*args).assert().success();
    }
    actguard(&path)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ok: 3 entries verified"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no command waited for the write lock (busy timeout 5 s)"
    );
    writer.execute_batch("COMMIT").unwrap();
    drop(agent);
}

/// A directory that not even root can write: mode 0555 and, for root, the immutable attribute (removed
/// again when dropped).
#[cfg(target_os = "linux")]
struct ReadOnlyDir(PathBuf);

#[cfg(target_os = "linux")]
impl ReadOnlyDir {
    fn new(dir: &Path) -> ReadOnlyDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let guard = ReadOnlyDir(dir.to_path_buf());
        if std::fs::write(dir.join("probe"), b"").is_ok() {
            std::fs::remove_file(dir.join("probe")).unwrap();
            // Permissions do not stop root: make the directory immutable instead.
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .expect("`chattr` makes the directory read-only for root");
            assert!(status.success(), "chattr +i failed");
        }
        assert!(std::fs::write(dir.join("probe"), b"").is_err());
        guard
    }
}

#[cfg(target_os = "linux")]
impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_read_only_copy_is_read_and_not_written() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path());
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("actguard.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = snapshot(copies.path());
    let _read_only = ReadOnlyDir::new(copies.path());
    for args in READS.iter().filter(|a| !a.starts_with(&["queue", "show"])) {
        actguard(&copy).args(*args).assert().success();
    }
    actguard(&copy)
        .args(["log", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("rec-3"));
    // A command that writes says it cannot.
    plain_error(
        actguard(&copy).args(WRITES[0]),
        &format!("`{}`", copy.display()),
    );
    assert_unchanged(copies.path(), &before);
}
