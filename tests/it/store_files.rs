//! Which files `SqliteStore` treats as stores: a file that is not an actguard store (another
//! application's database, one with another application id, a file that is not SQLite, an empty file,
//! a symbolic link to nothing) is refused and left byte for byte as it was, with no file created
//! beside it; a store is created only where nothing is, and read-only opens write nothing.

use crate::support::compat;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actguard::store::Begin;
use actguard::{LogQuery, SqliteStore, Store, StoreError};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;

/// Every file of a directory, by name, with its bytes: what "left unchanged" is checked against.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = if e.file_type().unwrap().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (name, bytes)
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

fn names(dir: &Path) -> Vec<String> {
    snapshot(dir).into_keys().collect()
}

/// The message of a refused open, which must name the file and say it was left unchanged.
fn refused(result: Result<SqliteStore, StoreError>, path: &Path, says: &str) -> StoreError {
    let e = match result {
        Ok(store) => panic!("{store:?} opened, but the file is not an actguard store"),
        Err(e) => e,
    };
    let message = e.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "`{message}` names the file"
    );
    assert!(message.contains(says), "`{message}` says `{says}`");
    e
}

/// Every way to open `path` refuses it, saying `says` and that it was left unchanged, and the
/// directory is exactly as it was.
fn every_open_refuses(dir: &Path, path: &Path, says: &str) {
    let before = snapshot(dir);
    for (open, result) in [
        ("open", SqliteStore::open(path)),
        ("open_existing", SqliteStore::open_existing(path)),
        ("open_read_only", SqliteStore::open_read_only(path)),
    ] {
        let e = refused(result, path, says);
        assert!(matches!(e, StoreError::Corrupt(_)), "{open}: {e:?}");
        assert!(e.to_string().contains("left unchanged"), "{open}: {e}");
        assert_unchanged(dir, &before);
    }
}

/// Another program's database, written by SQLite in `journal_mode`, closed cleanly.
fn foreign_database(path: &Path, journal_mode: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode.to_lowercase());
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO users (name) VALUES ('ada'), ('grace');
         CREATE TABLE log (line TEXT);",
    )
    .unwrap();
    conn.close().unwrap();
}

#[test]
fn another_applications_database_is_refused_and_left_unchanged() {
    for journal_mode in ["DELETE", "WAL"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other-app.db");
        foreign_database(&path, journal_mode);
        assert_eq!(names(dir.path()), ["other-app.db"]);
        every_open_refuses(dir.path(), &path, "another application (tables log, users)");
    }
}

#[test]
fn a_database_with_another_application_id_is_refused_even_with_actguards_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    SqliteStore::open(&path).unwrap().close().unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", 0x1234_5678)
            .unwrap();
        conn.close().unwrap();
    }
    every_open_refuses(dir.path(), &path, "application_id is 0x12345678");
}

#[test]
fn a_store_of_an_earlier_release_needs_every_table_it_had() {
    // Without the application id, a store is recognised by its tables: a database holding only some
    // of them (with a plausible version) is another application's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE keys (k TEXT); CREATE TABLE log (l TEXT); PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    every_open_refuses(dir.path(), &path, "another application (tables keys, log)");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "# notes\n".repeat(100)).unwrap();
    every_open_refuses(dir.path(), &path, "does not start with the SQLite header");
}

#[test]
fn an_empty_sqlite_database_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
    }
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    every_open_refuses(dir.path(), &path, "empty SQLite database");
}

#[test]
fn an_empty_file_is_refused_and_left_unchanged_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    std::fs::write(&path, b"").unwrap();
    every_open_refuses(dir.path(), &path, "empty file");
    // Read-only, even when asked: a read-only open writes nothing.
    refused(
        SqliteStore::options()
            .init_empty_file(true)
            .open_read_only(&path),
        &path,
        "empty file",
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    let store = SqliteStore::options()
        .init_empty_file(true)
        .label("prepared")
        .open_existing(&path)
        .expect("an empty file is made a store when asked");
    assert_eq!(store.label(), Some("prepared"));
    store.close().unwrap();
    SqliteStore::open_read_only(&path).unwrap();
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_nothing_is_refused_and_its_target_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere").join("store.db");
    let link = dir.path().join("actguard.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = snapshot(dir.path());
    for result in [
        SqliteStore::open(&link),
        SqliteStore::open_existing(&link),
        SqliteStore::open_read_only(&link),
    ] {
        let e = refused(result, &link, "is a symbolic link to");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("which does not exist"), "{e}");
        assert!(!target.exists());
        assert!(!target.parent().unwrap().exists());
        assert_unchanged(dir.path(), &before);
    }
    // Even with the target's directory present, nothing is created through the link.
    std::fs::create_dir(target.parent().unwrap()).unwrap();
    refused(SqliteStore::open(&link), &link, "which does not exist");
    assert!(!target.exists());
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
}

#[cfg(unix)]
#[tokio::test]
async fn a_symbolic_link_to_a_store_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.db");
    let link = dir.path().join("actguard.db");
    SqliteStore::open(&real).unwrap().close().unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = SqliteStore::open(&link).unwrap();
    let claimed = store.begin(&request("k1", "rec-1")).await.unwrap();
    assert!(matches!(claimed, Begin::Claimed(_)));
    store.close().unwrap();
    let read = SqliteStore::open_read_only(&real).unwrap();
    assert_eq!(read.current_fencing_token("rec-1").await.unwrap(), Some(1));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
}

fn request(key: &str, record: &str) -> actguard::store::BeginRequest {
    actguard_tests::begin_request("disburse", key, record, T0)
}

#[test]
fn a_missing_file_is_created_by_open_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    for result in [
        SqliteStore::open_existing(&path),
        SqliteStore::open_read_only(&path),
    ] {
        let e = refused(result, &path, "no actguard store at");
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
        assert!(names(dir.path()).is_empty(), "nothing was created");
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.label(), None);
    store.close().unwrap();
    assert_eq!(
        names(dir.path()),
        ["actguard.db"],
        "no temporary file is left behind"
    );
    let header = std::fs::read(&path).unwrap();
    let id = u32::from_be_bytes(header[68..72].try_into().unwrap());
    assert_eq!(id, SqliteStore::APPLICATION_ID);
    assert_eq!(&id.to_be_bytes(), b"AGrd");
}

#[test]
fn processes_creating_the_same_store_at_once_all_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let opens: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    SqliteStore::open(&path)
                })
            })
            .collect();
        for open in opens {
            let store = open.join().unwrap().expect("every opener gets the store");
            store.close().unwrap();
        }
    });
    assert_eq!(names(dir.path()), ["actguard.db"]);
}

#[test]
fn a_label_is_kept_from_creation_and_removes_only_its_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    assert!(!SqliteStore::remove_labelled(&path, "demo").unwrap());

    let store = SqliteStore::options().label("demo").open(&path).unwrap();
    assert_eq!(store.label(), Some("demo"));
    store.close().unwrap();
    // An existing store keeps the label it was created with.
    let store = SqliteStore::options().label("other").open(&path).unwrap();
    assert_eq!(store.label(), Some("demo"));
    drop(store);
    assert_eq!(
        SqliteStore::open_read_only(&path).unwrap().label(),
        Some("demo")
    );

    let before = snapshot(dir.path());
    let e = SqliteStore::remove_labelled(&path, "other").unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(e.to_string().contains("labelled `demo`"), "{e}");
    assert!(e.to_string().contains("left unchanged"), "{e}");
    assert_unchanged(dir.path(), &before);

    // Removed with its side files: a reader leaves an empty `-wal` and the `-shm` behind.
    drop(SqliteStore::open_read_only(&path).unwrap());
    assert_eq!(
        names(dir.path()),
        ["actguard.db", "actguard.db-shm", "actguard.db-wal"]
    );
    assert!(SqliteStore::remove_labelled(&path, "demo").unwrap());
    for suffix in ["", "-wal", "-shm"] {
        assert!(!Path::new(&format!("{}{suffix}", path.display())).exists());
    }
}

#[test]
fn remove_labelled_leaves_every_other_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let unlabelled = dir.path().join("agent.db");
    SqliteStore::open(&unlabelled).unwrap().close().unwrap();
    let foreign = dir.path().join("other-app.db");
    foreign_database(&foreign, "WAL");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "notes").unwrap();
    let before = snapshot(dir.path());
    for (path, says) in [
        (&unlabelled, "without a label"),
        (&foreign, "another application"),
        (&empty, "empty file"),
        (&text, "not an actguard store"),
    ] {
        let e = SqliteStore::remove_labelled(path, "demo").unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
        assert_unchanged(dir.path(), &before);
    }
}

#[tokio::test]
async fn a_store_of_an_earlier_release_is_read_as_it_is_and_stamped_when_opened_read_write() {
    let copy = compat::copy_of_store(Path::new(env!("CARGO_MANIFEST_DIR")));
    let dir = copy.parent().unwrap().to_path_buf();
    let application_id =
        |p: &Path| u32::from_be_bytes(std::fs::read(p).unwrap()[68..72].try_into().unwrap());
    assert_eq!(
        application_id(&copy),
        0,
        "release 0.1 wrote no application id"
    );
    let before = snapshot(&dir);

    let store = SqliteStore::open_read_only(&copy).unwrap();
    assert!(store.is_read_only());
    let entries = actguard::verify(&store)
        .await
        .expect("the 0.1 log verifies");
    assert!(entries > 0);
    let e = store
        .halt_run(uuid::Uuid::nil(), "x", T0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("opened read-only"), "{e}");
    store.close().unwrap();
    assert_unchanged(&dir, &before);

    let store = SqliteStore::open_existing(&copy).unwrap();
    assert_eq!(actguard::verify(&store).await.unwrap(), entries);
    store.close().unwrap();
    assert_eq!(application_id(&copy), SqliteStore::APPLICATION_ID);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store with a few claims, closed.
async fn populated(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    for i in 0..3 {
        let r = request(&format!("k{i}"), &format!("rec-{i}"));
        assert!(matches!(store.begin(&r).await.unwrap(), Begin::Claimed(_)));
    }
    let entry = actguard_tests::log_entry(1);
    store.append_log(&entry).await.unwrap();
    store.close().unwrap();
}

#[tokio::test]
async fn a_read_only_open_writes_nothing_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    populated(&path).await;
    let main_file = std::fs::read(&path).unwrap();
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.current_fencing_token("rec-2").await.unwrap(), Some(1));
    assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 1);
    match store.begin(&request("k9", "rec-9")).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("opened read-only"), "{m}"),
        other => panic!("a read-only store refuses writes, got {other:?}"),
    }
    store.close().unwrap();
    assert!(std::fs::read(&path).unwrap() == main_file);
}

#[tokio::test]
async fn reads_do_not_wait_for_an_agent_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    populated(&path).await;
    // An agent in the middle of a write transaction holds the write lock.
    let agent = SqliteStore::open(&path).unwrap();
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO runs (run_id, reason, halted_at_ms) VALUES ('r', 'x', 1);",
        )
        .unwrap();
    let store = SqliteStore::options()
        .busy_timeout(Duration::from_millis(50))
        .open_read_only(&path)
        .expect("a read-only open takes no write lock");
    assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 1);
    assert_eq!(store.current_fencing_token("rec-0").await.unwrap(), Some(1));
    writer.execute_batch("COMMIT").unwrap();
    drop(agent);
}

/// A directory that not even root can write: mode 0555 and, for root, the immutable attribute. The
/// attribute is removed again when dropped.
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
        assert!(
            std::fs::write(dir.join("probe"), b"").is_err(),
            "the directory is read-only for this user"
        );
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
#[tokio::test]
async fn a_read_only_copy_in_a_read_only_directory_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    populated(&path).await;
    let copies: TempDir = tempfile::tempdir().unwrap();
    let copy = copies.path().join("actguard.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = snapshot(copies.path());
    let _read_only = ReadOnlyDir::new(copies.path());

    let store = SqliteStore::open_read_only(&copy).expect("a read-only copy opens");
    assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 1);
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
    actguard::verify(&store).await.unwrap();
    store.close().unwrap();
    assert_unchanged(copies.path(), &before);
    // A read-write open cannot use it, and says so.
    let e = SqliteStore::open_existing(&copy).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_unchanged(copies.path(), &before);
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_only_copy_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    populated(&path).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let main_file = std::fs::read(&path).unwrap();
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 1);
    store.close().unwrap();
    assert!(std::fs::read(&path).unwrap() == main_file);
}
