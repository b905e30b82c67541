//! The versioned schema: migrations, the application id, connection settings.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::file::{self, Kind};
use crate::redacted::RedactionKey;
use crate::store::StoreError;

/// `PRAGMA application_id` of an actguard store: the ASCII bytes `AGrd` (`0x41477264`), written in the
/// transaction that creates the store, and in the first read-write open of a store written by a
/// release that did not write it.
pub(crate) const APPLICATION_ID: u32 = 0x4147_7264;

/// The schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// The oldest version a read-only open reads as it is: the queries have not changed since.
pub(crate) const READ_ONLY_VERSION: i64 = 4;

/// Migrations, in order: `MIGRATIONS[n]` brings a database from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        reason        TEXT NOT NULL,
        halted_at_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- One row per idempotency key: its claim while in progress, its result once completed, its queue
    -- entry once terminally failed, and the fingerprint it was first seen with.
    CREATE TABLE keys (
        key_digest      TEXT PRIMARY KEY,
        key_text        TEXT NOT NULL,
        action          TEXT NOT NULL,
        record          TEXT NOT NULL,
        run_id          TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('claimed', 'completed', 'failed', 'released')),
        claim_id        TEXT,
        lease_until_ms  INTEGER,
        fencing_token   INTEGER,
        result          TEXT,
        completed_at_ms INTEGER,
        queue_id        INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,  -- log entries with attempt > 0 under this key
        updated_ms      INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- One row per record: the last fencing token issued and the live lease, if any.
    CREATE TABLE records (
        record          TEXT PRIMARY KEY,
        last_token      INTEGER NOT NULL,
        holder_digest   TEXT,
        holder_key      TEXT,
        lease_until_ms  INTEGER
    ) WITHOUT ROWID;

    -- The loop filter: the last completion of (record, action).
    CREATE TABLE acted (
        record       TEXT NOT NULL,
        action       TEXT NOT NULL,
        key_text     TEXT NOT NULL,
        key_digest   TEXT NOT NULL,
        acted_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (record, action)
    ) WITHOUT ROWID;

    CREATE TABLE queue (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        action      TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        entry       TEXT NOT NULL
    );

    -- The action log. `entry` is the JSON of the `NewLogEntry` exactly as hashed; the other columns
    -- are copies for queries.
    CREATE TABLE log (
        seq         INTEGER PRIMARY KEY,
        at_ms       INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        action      TEXT NOT NULL,
        record      TEXT NOT NULL,
        key_digest  TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        entry       TEXT NOT NULL,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
    );
    CREATE INDEX log_by_run ON log (run_id, seq);
    CREATE INDEX log_by_action ON log (action, seq);
    CREATE INDEX log_by_record ON log (record, seq);
    CREATE INDEX log_by_time ON log (at_ms);
    "#,
    // 1 → 2: operators on queue entries (who claimed it, the note, when it was closed).
    r#"
    ALTER TABLE queue ADD COLUMN claimed_by TEXT;
    ALTER TABLE queue ADD COLUMN note TEXT;
    ALTER TABLE queue ADD COLUMN closed_ms INTEGER;
    "#,
    // 2 → 3: `records` and `acted` become one table keyed by record, so that the lease of a record
    // and the loop-filter marks of its actions share a page: a completion writes one page for both.
    // `kind` 0 is the record's row (last fencing token, live lease; `action` is empty); `kind` 1 is
    // the last completion of `action` on the record.
    r#"
    CREATE TABLE record_rows (
        record          TEXT NOT NULL,
        kind            INTEGER NOT NULL CHECK (kind IN (0, 1)),
        action          TEXT NOT NULL,
        last_token      INTEGER,
        holder_digest   TEXT,
        holder_key      TEXT,
        lease_until_ms  INTEGER,
        key_text        TEXT,
        key_digest      TEXT,
        acted_at_ms     INTEGER,
        PRIMARY KEY (record, kind, action)
    ) WITHOUT ROWID;
    INSERT INTO record_rows (record, kind, action, last_token, holder_digest, holder_key, lease_until_ms)
        SELECT record, 0, '', last_token, holder_digest, holder_key, lease_until_ms FROM records;
    INSERT INTO record_rows (record, kind, action, key_text, key_digest, acted_at_ms)
        SELECT record, 1, action, key_text, key_digest, acted_at_ms FROM acted;
    DROP TABLE records;
    DROP TABLE acted;
    ALTER TABLE record_rows RENAME TO records;
    "#,
    // 3 → 4: fewer B-tree writes per action.
    //
    // The same rule on `keys.state`, written as comparisons: SQLite evaluates `IN (…)` of four values
    // with a temporary B-tree, built on every insert or update of a key (twice per action).
    //
    // The log's four indexes (run, action, record, time) become one table, `log_index`, that the
    // writer fills for many entries at once (in the transaction of the batch that appends the
    // entry after every `LOG_INDEX_EVERY`-th one), instead of four B-tree inserts, and at one
    // commit four more pages written, per entry. `log_indexed.upto`: the entries with
    // `seq <= upto` are in `log_index`; a query reads the later ones (fewer than
    // `LOG_INDEX_EVERY` plus a batch) from `log` directly.
    r#"
    DROP INDEX log_by_run;
    DROP INDEX log_by_action;
    DROP INDEX log_by_record;
    DROP INDEX log_by_time;
    CREATE TABLE log_index (
        kind   INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 3),  -- 0 run_id, 1 action, 2 record, 3 at_ms
        value  NOT NULL,                                       -- no type: `at_ms` stays an integer
        seq    INTEGER NOT NULL,
        PRIMARY KEY (kind, value, seq)
    ) WITHOUT ROWID;
    CREATE TABLE log_indexed (upto INTEGER NOT NULL);
    INSERT INTO log_index (kind, value, seq)
        SELECT 0, run_id, seq FROM log
        UNION ALL SELECT 1, action, seq FROM log
        UNION ALL SELECT 2, record, seq FROM log
        UNION ALL SELECT 3, at_ms, seq FROM log;
    INSERT INTO log_indexed (upto) SELECT coalesce(max(seq), 0) FROM log;

    CREATE TABLE keys_v4 (
        key_digest      TEXT PRIMARY KEY,
        key_text        TEXT NOT NULL,
        action          TEXT NOT NULL,
        record          TEXT NOT NULL,
        run_id          TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state = 'claimed' OR state = 'completed'
                                            OR state = 'failed' OR state = 'released'),
        claim_id        TEXT,
        lease_until_ms  INTEGER,
        fencing_token   INTEGER,
        result          TEXT,
        completed_at_ms INTEGER,
        queue_id        INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,  -- log entries with attempt > 0 under this key
        updated_ms      INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO keys_v4 (key_digest, key_text, action, record, run_id, fingerprint, payload, state,
            claim_id, lease_until_ms, fencing_token, result, completed_at_ms, queue_id, attempts,
            updated_ms)
        SELECT key_digest, key_text, action, record, run_id, fingerprint, payload, state, claim_id,
            lease_until_ms, fencing_token, result, completed_at_ms, queue_id, attempts, updated_ms
        FROM keys;
    DROP TABLE keys;
    ALTER TABLE keys_v4 RENAME TO keys;
    "#,
    // 4 → 5: the store's settings. The first is the store's secret keying the digests of `Redacted`
    // values (`redaction_key`), written by `add_redaction_secret` in the same transaction: it comes
    // from the operating system's random generator, which SQL does not reach.
    r#"
    CREATE TABLE settings (
        name   TEXT PRIMARY KEY,
        value  BLOB NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// The version whose migration creates the redaction secret.
pub(crate) const REDACTION_SECRET_VERSION: i64 = 5;

/// The row of `settings` holding the redaction secret.
const REDACTION_SECRET: &str = "redaction_key";

/// Writes a new random redaction secret (the migration to [`REDACTION_SECRET_VERSION`]).
fn add_redaction_secret(tx: &Connection, at: &Location) -> Result<(), StoreError> {
    let secret = RedactionKey::generate_secret();
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)",
        rusqlite::params![REDACTION_SECRET, &secret[..]],
    )
    .map_err(|e| at.error(e))?;
    Ok(())
}

/// The store's redaction secret, as its migration wrote it.
pub(crate) fn redaction_secret(
    conn: &Connection,
    at: &Location,
) -> Result<RedactionKey, StoreError> {
    let secret: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM settings WHERE name = ?1",
            [REDACTION_SECRET],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(at.error(e)),
        })?;
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "`{}` {why}: its `Redacted` digests cannot be computed again; restore it from a backup",
            at.display
        ).into())
    };
    match secret {
        None => Err(corrupt("has lost its redaction secret".to_owned())),
        Some(bytes) => RedactionKey::new(&bytes)
            .map_err(|_| corrupt(format!("has a redaction secret of {} bytes", bytes.len()))),
    }
}

/// Where a connection points, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// The file path, or `:memory:`.
    pub(crate) display: String,
    /// Opened read-only: an error opening the file is one reading it.
    pub(crate) read_only: bool,
}

impl Location {
    /// Turns a SQLite error into a [`StoreError`] whose message names the file and says what to do.
    pub(crate) fn error(&self, e: rusqlite::Error) -> StoreError {
        let detail = self.describe(&e);
        detail.with_source(e)
    }

    /// What a driver error means for this file, and what to do about it.
    fn describe(&self, e: &rusqlite::Error) -> StoreError {
        let file = &self.display;
        let code = match e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
            _ => None,
        };
        match code {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt(format!(
                    "`{file}` is not a readable actguard database ({e}): restore it from a backup, or move it \
                 aside so that a new store is created"
                ).into())
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!(
                    "`{file}` is locked by another connection ({e}): stop the process holding the lock, or \
                 raise the busy timeout"
                ).into())
            }
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen)
                if self.read_only =>
            {
                StoreError::Unavailable(format!(
                    "cannot read `{file}` ({e}): check that the file exists and is readable by this \
                     user, and that its `-wal` and `-shm` files exist or its directory is writable"
                ).into())
            }
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                StoreError::Unavailable(format!(
                    "cannot write `{file}` ({e}): check that the file and its directory exist and are \
                     writable by this user"
                ).into())
            }
            Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => StoreError::Unavailable(
                format!("cannot write `{file}` ({e}): check free disk space and the file system").into(),
            ),
            _ => StoreError::Backend(format!("`{file}`: {e}").into()),
        }
    }

    pub(crate) fn io_error(&self, what: &str, e: &std::io::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "cannot {what} `{}` ({e}): check that the path names a file in an existing directory that \
             this user may read and write",
            self.display
        ).into())
    }
}

/// Settings shared by every connection of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) busy_timeout: Duration,
}

/// Opens a connection with the store's settings (`synchronous = FULL`, a busy timeout). Changes
/// nothing in the file: a read-write connection is switched to the write-ahead log by [`use_wal`],
/// once the file is known to be a store.
pub(crate) fn connect(
    path: &Path,
    at: &Location,
    settings: Settings,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| at.error(e))?;
    configure(&conn, at, settings)?;
    Ok(conn)
}

/// Puts the store in write-ahead-log mode (a store created by actguard already is: this only checks).
pub(crate) fn use_wal(conn: &Connection, at: &Location) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| at.error(e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "`{}` cannot use a write-ahead log (journal mode stays `{mode}`): put the file on a local \
             file system that supports shared memory",
            at.display
        ).into()));
    }
    Ok(())
}

/// Per-connection settings.
pub(crate) fn configure(
    conn: &Connection,
    at: &Location,
    settings: Settings,
) -> Result<(), StoreError> {
    more_lookaside(conn);
    conn.busy_timeout(settings.busy_timeout)
        .map_err(|e| at.error(e))?;
    // synchronous = FULL: in WAL mode every commit fsyncs the log, so a claim is on disk before
    // `begin` answers. temp_store = MEMORY: the savepoint journals of a batch never spill to a
    // temporary file. cache_size: 16 MiB of pages, so lookups of keys and records rarely read the file.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;",
    )
    .map_err(|e| at.error(e))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Lookaside slots of each connection: SQLite's per-connection allocator for small objects, used
/// among others for the values bound to statements. The default (40 slots) is used up by the prepared
/// statements, so every bound string went through `malloc` and its global mutex; 256 slots of 1200
/// bytes (300 KiB per connection) cut the writer's instructions per action by a tenth.
const LOOKASIDE_SLOTS: std::ffi::c_int = 256;
const LOOKASIDE_SLOT_SIZE: std::ffi::c_int = 1200;

/// Gives `conn` [`LOOKASIDE_SLOTS`] lookaside slots. Only an optimization: if SQLite refuses (it does
/// while lookaside memory is in use), the connection keeps its default.
fn more_lookaside(conn: &Connection) {
    // SAFETY: `handle` is the open connection owned by `conn`, used on this thread only for the
    // duration of the call. SQLITE_DBCONFIG_LOOKASIDE takes exactly three more arguments (buffer,
    // slot size, slot count); a null buffer makes SQLite allocate the slots itself and own them.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE_SLOT_SIZE,
            LOOKASIDE_SLOTS,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!(rc, "SQLite kept the default lookaside");
    }
}

/// `store_info`: facts about the store that are not part of its numbered schema (`label`). Created
/// with every store and when a store of an earlier release is first opened read-write; releases that
/// read schema version 4 without it ignore it.
const STORE_INFO: &str = "
    CREATE TABLE IF NOT EXISTS store_info (
        name   TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
";

/// In one write transaction, checks again that the database is an actguard store (or, when `create`
/// allows it, a blank database, which becomes a store labelled `label`), writes the application id
/// if it lacks it, and brings the schema to [`SCHEMA_VERSION`]. Anything else is refused with the
/// transaction rolled back: nothing is written.
pub(crate) fn upgrade(
    conn: &mut Connection,
    at: &Location,
    create: bool,
    label: Option<&str>,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| at.error(e))?;
    let contents = file::contents(&tx, at)?;
    let (version, stamped) = match file::classify(&contents, at)? {
        Kind::Store { version, stamped } => (version, stamped),
        Kind::Blank if create => (0, false),
        Kind::Blank => {
            return Err(StoreError::Corrupt(format!(
                "`{}` is an empty SQLite database (no tables), not an actguard store: it was left \
                 unchanged",
                at.display
            ).into()));
        }
    };
    if !stamped {
        tx.pragma_update(None, "application_id", APPLICATION_ID as i32)
            .map_err(|e| at.error(e))?;
        tx.execute_batch(STORE_INFO).map_err(|e| at.error(e))?;
    }
    if version == 0 {
        if let Some(label) = label {
            tx.execute(
                "INSERT INTO store_info (name, value) VALUES ('label', ?1)",
                [label],
            )
            .map_err(|e| at.error(e))?;
        }
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|e| at.error(e))?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(|e| at.error(e))?;
    }
    if version < REDACTION_SECRET_VERSION {
        add_redaction_secret(&tx, at)?;
    }
    tx.commit().map_err(|e| at.error(e))?;
    Ok(())
}

/// The label the store was created with (`store_info` must exist).
pub(crate) fn label(conn: &Connection, at: &Location) -> Result<Option<String>, StoreError> {
    conn.query_row(
        "SELECT value FROM store_info WHERE name = 'label'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| at.error(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database at schema version 3, as a file written by that version holds it.
    fn version_3_file() -> (Connection, Location) {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        let at = Location {
            display: ":memory:".to_owned(),
            read_only: false,
        };
        (conn, at)
    }

    /// A version 3 store of an earlier release (no application id) is refused by a read-only open,
    /// which leaves it unchanged, and upgraded and given the application id by a read-write open.
    #[test]
    fn an_earlier_schema_is_refused_read_only_and_upgraded_and_stamped_read_write() {
        use crate::sqlite::SqliteStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actguard.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        match SqliteStore::open_read_only(&path) {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains("schema version 3"), "{m}");
                assert!(m.contains("left unchanged"), "{m}");
                assert!(m.contains("open it read-write once"), "{m}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(std::fs::read(&path).unwrap() == before);
        let files = || -> Vec<_> {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        assert_eq!(files(), ["actguard.db"]);

        SqliteStore::open_existing(&path).unwrap().close().unwrap();
        let conn = Connection::open(&path).unwrap();
        let pragma = |name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("user_version"), SCHEMA_VERSION);
        assert_eq!(pragma("application_id"), i64::from(APPLICATION_ID));
        drop(conn);
        SqliteStore::open_read_only(&path).unwrap();
    }

    /// A version 3 file keeps every column of its keys in version 4, and the state rule still holds.
    #[test]
    fn version_3_keys_survive_the_upgrade() {
        let (mut conn, at) = version_3_file();
        conn.execute_batch(
            "INSERT INTO keys VALUES ('d1', 'k1', 'pay', 'loan-1', 'run', 'fp', '{}', 'completed', NULL,
                 NULL, 4, '\"ok\"', 900, NULL, 2, 900);
             INSERT INTO keys VALUES ('d2', 'k2', 'pay', 'loan-2', 'run', 'fp', '[1]', 'claimed', 'c2',
                 1000, 5, NULL, NULL, 7, 1, 800);",
        )
        .unwrap();
        let before: Vec<String> = dump_keys(&conn);
        upgrade(&mut conn, &at, false, None).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(dump_keys(&conn), before);
        assert_eq!(before.len(), 2);
        let bad = conn.execute("UPDATE keys SET state = 'lost' WHERE key_digest = 'd1'", []);
        assert!(bad.is_err(), "the state rule survives the upgrade");
    }

    /// The log entries of a version 3 file are in the log index of version 4, which starts after them.
    #[test]
    fn version_3_log_entries_are_indexed_by_the_upgrade() {
        let (mut conn, at) = version_3_file();
        conn.execute_batch(
            "INSERT INTO log VALUES (1, 500, 'run-a', 'pay', 'loan-1', 'd1', 1, 'succeeded', '{}', 'p', 'h1');
             INSERT INTO log VALUES (2, 400, 'run-b', 'pay', 'loan-2', 'd2', 1, 'succeeded', '{}', 'h1', 'h2');",
        )
        .unwrap();
        upgrade(&mut conn, &at, false, None).unwrap();
        let upto: i64 = conn
            .query_row("SELECT upto FROM log_indexed", [], |r| r.get(0))
            .unwrap();
        assert_eq!(upto, 2);
        let mut stmt = conn
            .prepare("SELECT kind, value, seq FROM log_index ORDER BY kind, value, seq")
            .unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}:{:?}:{}",
                    r.get::<_, i64>(0)?,
                    r.get_ref(1)?,
                    r.get::<_, i64>(2)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                r#"0:Text([114, 117, 110, 45, 97]):1"#,
                r#"0:Text([114, 117, 110, 45, 98]):2"#,
                r#"1:Text([112, 97, 121]):1"#,
                r#"1:Text([112, 97, 121]):2"#,
                r#"2:Text([108, 111, 97, 110, 45, 49]):1"#,
                r#"2:Text([108, 111, 97, 110, 45, 50]):2"#,
                "3:Integer(400):2",
                "3:Integer(500):1",
            ]
        );
    }

    fn dump_keys(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT key_digest, key_text, action, record, run_id, fingerprint, payload, state,
                     claim_id, lease_until_ms, fencing_token, result, completed_at_ms, queue_id,
                     attempts, updated_ms FROM keys ORDER BY key_digest",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let cols: Vec<String> = (0..16)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            Ok(cols.join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// A version 4 file gets a random redaction secret in its upgrade, once: opening it again keeps
    /// it, and another file gets another.
    #[test]
    fn the_upgrade_to_version_5_adds_a_redaction_secret_once() {
        let at = Location {
            display: ":memory:".to_owned(),
            read_only: false,
        };
        let version_4 = || {
            let conn = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..4] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 4).unwrap();
            conn
        };
        let (mut a, mut b) = (version_4(), version_4());
        upgrade(&mut a, &at, false, None).unwrap();
        upgrade(&mut b, &at, false, None).unwrap();
        let secret = |conn: &Connection| -> Vec<u8> {
            conn.query_row(
                "SELECT value FROM settings WHERE name = 'redaction_key'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let kept = secret(&a);
        assert_eq!(kept.len(), RedactionKey::SECRET_LEN);
        assert_ne!(kept, secret(&b));
        // Opened again: already at version 5, the secret stays.
        upgrade(&mut a, &at, false, None).unwrap();
        assert_eq!(secret(&a), kept);
        assert_eq!(
            redaction_secret(&a, &at).unwrap().id(),
            RedactionKey::new(&kept).unwrap().id()
        );
        // A file whose secret was removed or cut is refused: its digests cannot be computed again.
        a.execute(
            "UPDATE settings SET value = x'0102' WHERE name = 'redaction_key'",
            [],
        )
        .unwrap();
        let short = redaction_secret(&a, &at).unwrap_err();
        assert!(
            matches!(&short, StoreError::Corrupt(m) if m.contains("2 bytes")),
            "{short:?}"
        );
        a.execute("DELETE FROM settings", []).unwrap();
        let lost = redaction_secret(&a, &at).unwrap_err();
        assert!(
            matches!(&lost, StoreError::Corrupt(m) if m.contains("lost its redaction secret")),
            "{lost:?}"
        );
    }

    /// A version 2 file keeps its records' tokens and leases and its loop-filter marks in version 3.
    #[test]
    fn version_2_records_and_marks_survive_the_upgrade() {
        let at = Location {
            display: ":memory:".to_owned(),
            read_only: false,
        };
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO records VALUES ('loan-1', 7, 'd1', 'k1', 1000);
             INSERT INTO records VALUES ('loan-2', 3, NULL, NULL, NULL);
             INSERT INTO acted VALUES ('loan-2', 'disburse', 'k2', 'd2', 500);",
        )
        .unwrap();
        upgrade(&mut conn, &at, false, None).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let lease: (i64, Option<String>, Option<String>, Option<i64>) = conn
            .query_row(
                "SELECT last_token, holder_digest, holder_key, lease_until_ms FROM records
                 WHERE record = 'loan-1' AND kind = 0 AND action = ''",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(lease, (7, Some("d1".into()), Some("k1".into()), Some(1000)));
        let mark: (String, String, i64) = conn
            .query_row(
                "SELECT key_text, key_digest, acted_at_ms FROM records
                 WHERE record = 'loan-2' AND kind = 1 AND action = 'disburse'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(mark, ("k2".into(), "d2".into(), 500));
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }
}
