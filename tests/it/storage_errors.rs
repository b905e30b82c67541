//! Bad storage under `SqliteStore`: every failure is a `StoreError` whose message names the file and
//! says what to do, and no `begin` answers `Claimed` without the claim being written.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actguard::store::{Begin, BeginRequest};
use actguard::{SqliteStore, Store, StoreError};
use tempfile::TempDir;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn request(key: &str, record: &str) -> BeginRequest {
    BeginRequest {
        run_id: Uuid::from_u128(7),
        ..actguard_tests::begin_request("disburse", key, record, T0)
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a corruption is the same on every run.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("actguard.db")
}

/// A store with `n` completed-looking claims in it, closed so that everything is in the main file.
async fn populated(path: &Path, n: usize) {
    let store = SqliteStore::open(path).expect("the store opens");
    for i in 0..n {
        let r = BeginRequest {
            payload: actguard::PayloadJson::from(
                serde_json::json!({ "padding": "x".repeat(500), "i": i }),
            ),
            ..request(&format!("k{i}"), &format!("rec-{i}"))
        };
        assert!(matches!(store.begin(&r).await.unwrap(), Begin::Claimed(_)));
    }
    store.close().expect("the store closes");
    assert!(
        !Path::new(&format!("{}-wal", path.display())).exists(),
        "closing checkpoints the write-ahead log into the main file"
    );
}

/// The message names the file and tells the user what to do.
fn assert_actionable(message: &str, path: &Path, advice: &str) {
    assert!(
        message.contains(&path.display().to_string()),
        "`{message}` does not name `{}`",
        path.display()
    );
    assert!(
        message.contains(advice),
        "`{message}` does not say `{advice}`"
    );
}

fn expect_corrupt(result: Result<SqliteStore, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(m)) => m.to_string(),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(store) => panic!("expected Corrupt, but {store:?} opened"),
    }
}

fn expect_unavailable(result: Result<SqliteStore, StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable(m)) => m.to_string(),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(store) => panic!("expected Unavailable, but {store:?} opened"),
    }
}

#[tokio::test]
async fn random_bytes_are_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let bytes = noise(64 * 1024, 0x5eed);
    std::fs::write(&path, &bytes).unwrap();
    let message = expect_corrupt(SqliteStore::open(&path));
    assert_actionable(&message, &path, "restore it from a backup");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a refused file is left as it was"
    );
}

#[tokio::test]
async fn a_short_file_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    std::fs::write(&path, b"SQLite format 3\0 but nothing else").unwrap();
    let message = expect_corrupt(SqliteStore::open(&path));
    assert_actionable(&message, &path, "move it aside");
}

#[tokio::test]
async fn a_truncated_database_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 200).await;
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(
        len > 64 * 1024,
        "the database spans many pages ({len} bytes)"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let message = expect_corrupt(SqliteStore::open(&path));
    assert_actionable(&message, &path, "truncated");
    assert_actionable(&message, &path, "restore it from a backup");
}

#[tokio::test]
async fn damaged_pages_never_yield_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 200).await;
    // Overwrite everything after the first page (the schema) with noise: the tables' pages are gone.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let len = bytes.len();
    bytes[page..].copy_from_slice(&noise(len - page, 0xbad));
    std::fs::write(&path, &bytes).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Corrupt(m)) => assert_actionable(&m, &path, "restore"),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(store) => match store.begin(&request("k-new", "rec-new")).await {
            Err(StoreError::Corrupt(m)) => assert_actionable(&m, &path, "restore"),
            other => panic!("a begin on a damaged file must fail as Corrupt, got {other:?}"),
        },
    }
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 1).await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let message = expect_corrupt(SqliteStore::open(&path));
    assert_actionable(&message, &path, "upgrade actguard");
    assert!(
        message.contains(&format!(
            "schema version {}",
            SqliteStore::SCHEMA_VERSION + 1
        )),
        "`{message}` names the version found"
    );
    // Refusing does not touch the file: the version is still the newer one.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION + 1);
}

#[tokio::test]
async fn the_current_schema_version_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 3).await;
    let store = SqliteStore::open(&path).unwrap();
    // The claims written before survive the reopen: the key is still held.
    let again = request("k0", "rec-0");
    assert!(matches!(
        store.begin(&again).await.unwrap(),
        Begin::InProgress { .. }
    ));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_directory_is_refused_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let message = expect_unavailable(SqliteStore::open(dir.path()));
    assert_actionable(&message, dir.path(), "check that the path names a file");
}

#[tokio::test]
async fn a_missing_directory_is_refused_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("actguard.db");
    let message = expect_unavailable(SqliteStore::open(&path));
    assert_actionable(&message, &path, "existing directory");
    assert!(!path.exists());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_directory_that_refuses_new_files_is_unavailable() {
    // sysfs refuses to create files, even for root.
    let path = Path::new("/sys/actguard.db");
    assert!(Path::new("/sys").is_dir(), "this test needs sysfs at /sys");
    let message = expect_unavailable(SqliteStore::open(path));
    assert_actionable(&message, path, "may read and write");
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_only_file_is_unavailable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 1).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let immutable = std::fs::OpenOptions::new().write(true).open(&path).is_ok();
    if immutable {
        // Permissions do not stop root: make the file immutable instead.
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .expect("`chattr` makes the file read-only for root");
        assert!(status.success(), "chattr +i failed");
    }
    assert!(
        std::fs::OpenOptions::new().write(true).open(&path).is_err(),
        "the file is read-only for this user"
    );
    let result = SqliteStore::open(&path);
    if immutable {
        std::process::Command::new("chattr")
            .arg("-i")
            .arg(&path)
            .status()
            .unwrap();
    }
    let message = expect_unavailable(result);
    assert_actionable(&message, &path, "may read and write");
}

#[tokio::test]
async fn a_lock_held_by_another_connection_times_out_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = SqliteStore::options()
        .busy_timeout(Duration::from_millis(200))
        .open(&path)
        .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    match store.begin(&request("k1", "rec-1")).await {
        Err(StoreError::Unavailable(m)) => {
            assert_actionable(&m, &path, "locked by another connection");
            assert_actionable(&m, &path, "stop the process holding the lock");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the store waited for the busy timeout"
    );

    // Once the lock is gone, the same key is claimed fresh: the refused begin wrote nothing.
    other.execute_batch("ROLLBACK").unwrap();
    match store.begin(&request("k1", "rec-1")).await.unwrap() {
        Begin::Claimed(claim) => {
            assert_eq!(claim.fencing_token, 1);
            assert!(!claim.takeover);
        }
        other => panic!("expected Claimed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_lock_held_at_open_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    populated(&path, 1).await;
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let message = expect_unavailable(
        SqliteStore::options()
            .busy_timeout(Duration::from_millis(100))
            .open(&path),
    );
    assert_actionable(&message, &path, "locked by another connection");
}

#[tokio::test]
async fn a_batch_that_cannot_take_the_write_lock_claims_nothing() {
    // Every request of a batch that cannot start its transaction fails, and none of them is stored.
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = std::sync::Arc::new(
        SqliteStore::options()
            .busy_timeout(Duration::from_millis(100))
            .open(&path)
            .unwrap(),
    );
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let requests: Vec<BeginRequest> = (0..16)
        .map(|i| request(&format!("k{i}"), &format!("rec-{i}")))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for r in requests.clone() {
        let store = store.clone();
        tasks.spawn(async move { store.begin(&r).await });
    }
    let answers = tasks.join_all().await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Err(StoreError::Unavailable(_)))),
        "{answers:?}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    for r in &requests {
        assert_eq!(store.current_fencing_token(&r.record).await.unwrap(), None);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = SqliteStore::open(&path).unwrap();
    store.begin(&request("k1", "rec-1")).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(
        wal.exists(),
        "the write-ahead log exists while the store is open"
    );
    assert_eq!(
        mode(&wal),
        0o600,
        "the write-ahead log has the file's permissions"
    );
    store.close().unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn an_existing_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // An empty file prepared with the store's permissions, made a store on request.
    let prepared = db(&dir);
    std::fs::write(&prepared, b"").unwrap();
    std::fs::set_permissions(&prepared, std::fs::Permissions::from_mode(0o640)).unwrap();
    SqliteStore::options()
        .init_empty_file(true)
        .open(&prepared)
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(mode(&prepared), 0o640);
    // A store whose permissions were changed after it was created.
    let changed = dir.path().join("changed.db");
    SqliteStore::open(&changed).unwrap().close().unwrap();
    std::fs::set_permissions(&changed, std::fs::Permissions::from_mode(0o640)).unwrap();
    SqliteStore::open(&changed).unwrap().close().unwrap();
    assert_eq!(mode(&changed), 0o640);
}
