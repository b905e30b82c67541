//! [`SqliteStore`]: the embedded default store, one SQLite file (`actguard.db`).
//!
//! # What is durable when
//!
//! The database runs in write-ahead-log mode with `synchronous = FULL`: every commit appends to the
//! `-wal` file and fsyncs it before the commit returns. A store method that changes anything (`begin`,
//! `complete`, `fail`, `append_log`, `halt_run`) answers only **after** the transaction holding its
//! change has committed, so:
//!
//! - when `begin` answers [`Begin::Claimed`], the claim, the record lease and the new fencing token are
//!   on disk: a process crash, an OS crash or a power cut after that point cannot lose them (on a disk
//!   that honours fsync);
//! - when `complete` returns, the result, the loop-filter mark, the released lease and the log entry
//!   are on disk, all together or not at all; the same for `fail` and its queue entry;
//! - when a write returns an error, nothing of it was written: a refused request (such as
//!   [`StoreError::ClaimLost`]) changed nothing, since every operation makes all its checks before its
//!   first change, and a failed commit rolls back the whole transaction.
//!
//! Per call that is two fsyncs for a guarded action (the claim's commit, then the completion's), each
//! shared with every request that joined the same batch (below). The log's query index
//! (`log_index`) is written in the transaction of the batch that brings the unindexed entries to 256,
//! so it is exactly as durable as the entries it indexes; the entries after it are found without it.
//! Nothing the writer keeps in memory is needed to recover: it is reloaded from the file.
//!
//! Checkpoints copy the log into the main file and fsync it before the log is reused, so they never
//! make a committed change less durable. A background thread with its own connection runs them
//! (`PASSIVE`, at most every 50 ms while writes arrive) so that the writer does not pay for them; the
//! writer checkpoints by itself only if the log grows past 4000 pages.
//!
//! A process killed at any point leaves at most claims whose lease will expire: a later `begin` of the
//! same key takes them over ([`Claim::takeover`](crate::store::Claim::takeover)) with the attempts the
//! dead worker had logged.
//!
//! # Group commit
//!
//! rusqlite is blocking, so all writes go to one dedicated writer thread through a channel, and each
//! caller awaits a oneshot reply. The writer takes every request waiting in the channel (up to 1024),
//! applies them in **one** transaction, commits once, and only then answers all of them. While one
//! commit waits for its fsync, the next batch accumulates: throughput grows with the number of
//! concurrent callers instead of being one fsync per call. A single caller pays one fsync per write,
//! as it must.
//!
//! Requests in a batch need no savepoints: each operation reads and checks first and writes only once
//! it will succeed, so a refused request (a lost claim, a busy record, a reused key) leaves the
//! transaction as it found it and the others go on. A request that fails *after* changing a row
//! (`total_changes` moved: an I/O error, a full disk) would leave part of itself in the transaction,
//! so it poisons the batch. A batch whose transaction cannot start, whose commit fails, or that is
//! poisoned (also when SQLite rolled the transaction back by itself after an I/O error) is rolled back
//! as a whole and every request in it gets the error: a `Claimed` answer always means a committed
//! claim.
//!
//! The writer's CPU is what bounds throughput beside the fsync, so it does as little per request as
//! it can: the statements of `begin` and `complete` are prepared once; the head of the log chain
//! (sequence number and hash), the halted runs and the end of the log index are kept in memory, and
//! loaded again whenever another connection may have committed (`PRAGMA data_version`, read once per
//! batch) or a batch was rolled back; callers serialize payloads, results and the canonical JSON of
//! log entries before they send them, so the writer only links the entry into the chain (one SHA-256
//! over the previous hash and those bytes). No write builds a temporary B-tree (no `IN (…)` checks,
//! no `RETURNING`).
//!
//! Reads (`log`, `run_state`, `current_fencing_token`, `queue_entries`, `queue_entry`) use a second,
//! read-only connection on its own thread, so they do not wait behind writes; they see every write
//! that has answered.
//!
//! # Schema
//!
//! Version 5 (`PRAGMA user_version`): `runs` (halted runs), `keys` (one row per idempotency key:
//! fingerprint, payload, state `claimed`/`completed`/`failed`/`released`, claim id and lease, stored
//! result, queue entry, attempts logged), `records` (per record, side by side in one B-tree: its last
//! fencing token and live lease, and the last completion of each action on it, the loop filter),
//! `queue` (review-queue entries, ids from 1, with the operator's claim, note and closing time), `log`
//! (the hash-chained action log: the entry's JSON, since version 4 the canonical form that is hashed,
//! plus copies of run, action, record and time), `log_index` (run, action, record and time of every
//! log entry up to `log_indexed.upto`, filled by the writer 256 entries at a time instead of four
//! index inserts per append; a query reads the indexed entries through it and the later ones from
//! `log` directly), `settings` (since version 5: the store's redaction secret, 32 random bytes drawn
//! when the file is created or upgraded, see [`Store::redaction_key`]). Files of versions 1 to 4 are
//! upgraded by a read-write open (version 4 rebuilds `keys` and indexes the existing log once; version
//! 5 draws the secret); a read-only open reads versions 4 and 5 as they are.
//!
//! Beside the numbered schema: the application id (`PRAGMA application_id`, `AGrd`) and
//! `store_info` (name → value; `label`, see [`SqliteOptions::label`]), both written when a store is
//! created and when a store of an earlier release is first opened read-write.
//!
//! # Files
//!
//! Nothing is written to a file before it is recognised as an actguard store (the rules are on
//! [`SqliteStore`]): an existing file is read with plain file reads (its type and SQLite header) and,
//! for a store of an earlier release, through a read-only connection that creates no `-wal` or `-shm`
//! file; only then does a read-write open switch it to the write-ahead log or upgrade it.
//!
//! [`SqliteStore::open`] creates a store where nothing is: in a temporary file of the same directory,
//! with permissions `0600` (owner only) on unix, whole (schema, application id, label, write-ahead-log
//! mode) before it is hard-linked to the path, which fails if anything appeared there meanwhile; so no
//! process ever sees a half-made store, two processes creating the same store both open the one that
//! won, and nothing is ever replaced. (On a file system without hard links the store is copied into a
//! file created only if none exists.) A process killed during creation may leave the temporary file,
//! `.NAME.PID-RANDOM.creating`, which nothing uses. SQLite gives the `-wal` and `-shm` files the
//! store's permissions; an existing file keeps its permissions.
//!
//! Before SQLite reads it, the file must start with the SQLite header and, when no write-ahead log is
//! pending, hold every page its header declares (a truncated copy is refused at open rather than
//! failing in the middle of a `begin`). A read-write open upgrades the schema; a file written by a
//! newer version is refused. Each refusal is a [`StoreError::Corrupt`], [`StoreError::Unavailable`]
//! or [`StoreError::NotFound`] whose message names the file, says what it is, and what to do. A lock
//! held by another process is waited for up to the busy timeout ([`SqliteOptions::busy_timeout`],
//! 5 s); a read-only store takes no write lock and never waits for a writer.

mod apply;
mod file;
mod hot;
mod reads;
mod rows;
mod schema;
mod statements;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::log::{LogEntry, LogHead, LogQuery, NewLogEntry};
use crate::redacted::RedactionKey;
use crate::store::{
    Appended, Begin, BeginRequest, Completion, Failure, KeyState, Millis, QueueEntry, QueueQuery,
    QueueUpdate, Renewal, RunState, Store, StoreError,
};
use file::Found;
use rows::Ctx;
use schema::{Location, Settings};
use writer::{
    Job, Thread, Threads, WRITER_CHECKPOINT_PAGES, Write, spawn_checkpointer, spawn_reader,
    spawn_writer,
};

/// The store in one SQLite file: durable claims, group-committed writes. See the [module
/// docs](crate::sqlite) for what is synced when.
///
/// # Which files are stores
///
/// A store carries the SQLite `PRAGMA application_id` [`APPLICATION_ID`](Self::APPLICATION_ID)
/// (`AGrd`), written in the transaction that creates it. A store written by an earlier release has
/// none (`0`); it is recognised by its tables instead: every table of its schema (`runs`, `keys`,
/// `records`, `queue`, `log`), no table that no version of actguard has, and a `user_version` from 1
/// to [`SCHEMA_VERSION`](Self::SCHEMA_VERSION); its first read-write open writes the application id
/// along with any upgrade.
///
/// Everything else is refused, and left byte for byte as it was with no file created beside it:
///
/// - a database of another application: another application id, or tables that are not actguard's;
/// - an SQLite database without tables, a file that is not SQLite, a damaged or truncated database;
/// - an **empty (0-byte) file**: it may be one another program has just created and is about to
///   write. A store is created only where nothing is; to make a store of an empty file prepared with
///   the owner and permissions the store should have, ask for it with
///   [`SqliteOptions::init_empty_file`];
/// - a store whose schema is newer than this version reads;
/// - a directory, device, pipe or socket.
///
/// # Creating, reading, and symbolic links
///
/// - [`open`](Self::open) (and [`Agent::builder().build()`](crate::Agent), for the default store)
///   creates a store if nothing is at the path, and otherwise opens only a store;
/// - [`open_existing`](Self::open_existing) never creates one: for tools working on an agent's store;
/// - [`open_read_only`](Self::open_read_only) never creates, upgrades or writes anything, takes no
///   write lock, and reads while an agent writes. It reads the current schema only: a store of an
///   earlier schema version is refused until a read-write open upgrades it.
///
/// A symbolic link to a store is followed. A symbolic link to nothing is refused: its target is
/// never created.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), actguard::StoreError> {
/// use actguard::{SqliteStore, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("actguard.db"))?;
/// assert_eq!(store.current_fencing_token("loan-7").await?, None);
/// # Ok(()) }
/// ```
pub struct SqliteStore {
    /// `None` for a store opened read-only.
    writer: Option<mpsc::Sender<Job>>,
    reader: mpsc::Sender<Job>,
    threads: Threads,
    location: Location,
    label: Option<String>,
    /// Read when the store is opened ([`Store::redaction_key`]); `None` for a store of version 4
    /// opened read-only (it has no secret yet).
    redaction: Option<RedactionKey>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.location.display)
            .finish_non_exhaustive()
    }
}

/// How to open a [`SqliteStore`]: `SqliteStore::options().busy_timeout(..).open(path)`.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    busy_timeout: Duration,
    label: Option<String>,
    init_empty_file: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            label: None,
            init_empty_file: false,
        }
    }
}

/// What an open may do to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Read and write; create the store if nothing is at the path.
    Create,
    /// Read and write an existing store.
    Existing,
    /// Read an existing store; write nothing.
    ReadOnly,
}

impl SqliteOptions {
    /// How long a write waits for a lock held by another connection (another process sharing the file)
    /// before failing with [`StoreError::Unavailable`]. Default: 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// A label kept in the store when this open creates it, read back with [`SqliteStore::label`]:
    /// who made the store, so that a program can later tell its own store from another one (see
    /// [`SqliteStore::remove_labelled`]). An existing store keeps the label it was created with (or
    /// none). Default: none.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Whether a read-write open makes an existing **empty** (0-byte) file a store, keeping the file's
    /// owner and permissions (a file prepared with the permissions the store should have). Default:
    /// `false`: an empty file is refused and left as it is, since it may be a file another program is
    /// about to write.
    pub fn init_empty_file(mut self, init: bool) -> Self {
        self.init_empty_file = init;
        self
    }

    /// Opens the store at `path`, creating it if nothing is there; see [`SqliteStore::open`].
    pub fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), self, Mode::Create)
    }

    /// Opens the existing store at `path`, never creating one; see [`SqliteStore::open_existing`].
    pub fn open_existing(self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), self, Mode::Existing)
    }

    /// Opens the existing store at `path` read-only; see [`SqliteStore::open_read_only`]. The busy
    /// timeout bounds the rare waits of a reader (recovering the write-ahead log's index).
    pub fn open_read_only(self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path.as_ref(), self, Mode::ReadOnly)
    }
}

impl SqliteStore {
    /// The schema version this version writes (`PRAGMA user_version` of the file). A file with a higher
    /// version is refused on open.
    pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

    /// The `PRAGMA application_id` of an actguard store: the ASCII bytes `AGrd`. Written when the store
    /// is created, and when a store of an earlier release (which has none) is first opened read-write.
    pub const APPLICATION_ID: u32 = schema::APPLICATION_ID;

    /// Opens the store at `path` to read and write it; if nothing is at `path`, creates a new store
    /// there (mode `0600` on unix), made whole in a temporary file and moved into place only if `path`
    /// is still free. This is what an agent does: its store is created on first use.
    ///
    /// An existing file is used only if it is recognised as an actguard store (see the [type
    /// docs](SqliteStore#which-files-are-stores)); anything else is refused and left unchanged. A
    /// store of an earlier schema version is upgraded.
    ///
    /// Fails with [`StoreError::Unavailable`] if the file cannot be created, opened or locked, or `path`
    /// is a symbolic link to nothing, and with [`StoreError::Corrupt`] if it is not an actguard store,
    /// is damaged, or was written by a newer version; each message names the file and what to do.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteOptions::default().open(path)
    }

    /// Opens the existing store at `path` to read and write it (upgrading an earlier schema version),
    /// like [`open`](Self::open) but never creating one: a missing file is
    /// [`StoreError::NotFound`]. For tools that act on an agent's store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteOptions::default().open_existing(path)
    }

    /// Opens the existing store at `path` to read it only: the file is opened with
    /// `SQLITE_OPEN_READONLY` and nothing is ever written to it (no upgrade, no application id, no
    /// write lock). Reads do not wait for an agent writing the store, nor make it wait. Every write
    /// method of the store answers [`StoreError::Unavailable`].
    ///
    /// A missing file is [`StoreError::NotFound`]. Stores of schema version 4 (release 0.1) and 5 are
    /// read as they are (the queries are the same; a version 4 store has no redaction secret yet, so
    /// [`Store::redaction_key`] answers `None`). An older store is refused ([`StoreError::Corrupt`],
    /// file unchanged): upgrading it is a write; open it once read-write (an agent of this version,
    /// [`open_existing`](Self::open_existing)) to upgrade it.
    ///
    /// SQLite readers of a write-ahead log need its `-shm` file: if it is missing and the directory is
    /// writable, SQLite creates it and an empty `-wal` (they hold no data, and stay after the store is
    /// closed). A store whose directory cannot be written and that has no `-wal` file (a copy of a
    /// store closed cleanly, on read-only media or in a read-only directory) is read as immutable: a
    /// change made to it by another process while it is open is not seen.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteOptions::default().open_read_only(path)
    }

    /// Options for [`SqliteOptions::open`].
    pub fn options() -> SqliteOptions {
        SqliteOptions::default()
    }

    /// Removes the store at `path`, with its `-wal` and `-shm` files, if it is an actguard store
    /// created with [`label`](SqliteOptions::label) `label`: for a program that starts each time from
    /// a new store of its own (a demo) and must never remove anyone else's. Answers `Ok(false)` if
    /// nothing is at `path`, `Ok(true)` once the store is removed.
    ///
    /// Anything else is left unchanged: a store with another label or none, any other file, and a
    /// symbolic link ([`StoreError::Conflict`], or the error [`open`](Self::open) gives for a file
    /// that is not a store). Do not call it while a store on the file is open.
    pub fn remove_labelled(path: impl AsRef<Path>, label: &str) -> Result<bool, StoreError> {
        file::remove_labelled(path.as_ref(), label)
    }

    /// A store in memory, for tests: same rules, nothing survives the store. Reads and writes share
    /// the writer thread.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let location = Location {
            display: ":memory:".to_owned(),
            read_only: false,
        };
        let settings = Settings {
            busy_timeout: SqliteOptions::default().busy_timeout,
        };
        let mut conn = Connection::open_in_memory().at(&location)?;
        schema::configure(&conn, &location, settings)?;
        schema::upgrade(&mut conn, &location, true, None)?;
        let redaction = Some(schema::redaction_secret(&conn, &location)?);
        let (writer, thread) = spawn_writer(conn, location.clone(), None)?;
        Ok(SqliteStore {
            reader: writer.clone(),
            writer: Some(writer),
            threads: Threads {
                writer: Some(thread),
                reader: None,
            },
            location,
            label: None,
            redaction,
        })
    }

    fn open_with(
        path: &Path,
        options: SqliteOptions,
        mode: Mode,
    ) -> Result<SqliteStore, StoreError> {
        let location = Location {
            display: path.display().to_string(),
            read_only: mode == Mode::ReadOnly,
        };
        let settings = Settings {
            busy_timeout: options.busy_timeout,
        };
        // Nothing is written before the file is recognised as a store (or created as one).
        let mut found = file::inspect(path, &location)?;
        if matches!(found, Found::Missing) && mode == Mode::Create {
            file::create(path, &location, settings, options.label.as_deref())?;
            // The new store, or whatever another process put there first.
            found = file::inspect(path, &location)?;
        }
        let init = match found {
            Found::Missing => {
                return Err(StoreError::NotFound(format!(
                    "no actguard store at `{}`: the file does not exist, and this open never creates \
                     one: run the agent first, or give the path of the store",
                    location.display
                ).into()));
            }
            Found::Empty if options.init_empty_file && mode != Mode::ReadOnly => true,
            Found::Empty => {
                return Err(StoreError::Corrupt(format!(
                    "`{}` is an empty file, not an actguard store: it was left unchanged, since an empty \
                     file may be one another program is about to write; remove it to have a store \
                     created there, or make it a store with `SqliteOptions::init_empty_file(true)`",
                    location.display
                ).into()));
            }
            Found::Store(store) if mode == Mode::ReadOnly => {
                return Self::open_reader(path, location, settings, store);
            }
            Found::Store(_) => false,
        };
        let mut conn = schema::connect(path, &location, settings, false)?;
        // SQLite opens a write-protected file read-only rather than fail.
        if conn.is_readonly(rusqlite::MAIN_DB).at(&location)? {
            return Err(StoreError::Unavailable(format!(
                "cannot open `{}` for writing (the file is write-protected): check that the path \
                 names a file in an existing directory that this user may read and write, or open it \
                 with `SqliteStore::open_read_only` to read it",
                location.display
            ).into()));
        }
        schema::upgrade(&mut conn, &location, init, options.label.as_deref())?;
        schema::use_wal(&conn, &location)?;
        let label = schema::label(&conn, &location)?;
        let redaction = Some(schema::redaction_secret(&conn, &location)?);
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .at(&location)?;
        let read = schema::connect(path, &location, settings, true)?;
        let checkpoint = schema::connect(path, &location, settings, false)?;
        let checkpointer = spawn_checkpointer(checkpoint, location.clone())?;
        let (writer, write_thread) = spawn_writer(conn, location.clone(), Some(checkpointer))?;
        let (reader, read_thread) = spawn_reader(read, location.clone())?;
        Ok(SqliteStore {
            writer: Some(writer),
            reader,
            threads: Threads {
                writer: Some(write_thread),
                reader: Some(read_thread),
            },
            location,
            label,
            redaction,
        })
    }

    /// The read-only store: one read-only connection, no writer.
    fn open_reader(
        path: &Path,
        location: Location,
        settings: Settings,
        store: file::Recognized,
    ) -> Result<SqliteStore, StoreError> {
        if store.version < schema::READ_ONLY_VERSION {
            return Err(StoreError::Corrupt(format!(
                "`{}` is an actguard store of schema version {}, older than the version {} this \
                 version of actguard reads, and a read-only open never upgrades a store: it was left \
                 unchanged; open it read-write once with this version (an agent, or \
                 `SqliteStore::open_existing`) to upgrade it (an agent of an earlier release then no \
                 longer opens it), or read it with the release that wrote it",
                location.display,
                store.version,
                schema::READ_ONLY_VERSION
            ).into()));
        }
        // The first read opens the write-ahead log's `-shm` file (creating it if needed).
        let probe = |c: Connection| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map(|()| c)
        };
        let conn = match Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(probe)
        {
            Ok(conn) => conn,
            // SQLite could not create the `-shm` file a reader of a write-ahead log needs (a read-only
            // directory). With no `-wal` file, nothing is pending: the main file is read as immutable.
            Err(e) if cannot_open(&e) && !file::sidecar(path, "-wal").exists() => {
                let conn = file::open_immutable(path).ok_or_else(|| location.error(e))?;
                probe(conn).at(&location)?
            }
            Err(e) => return Err(location.error(e)),
        };
        schema::configure(&conn, &location, settings)?;
        let redaction = if store.version >= schema::REDACTION_SECRET_VERSION {
            Some(schema::redaction_secret(&conn, &location)?)
        } else {
            None
        };
        let (reader, read_thread) = spawn_reader(conn, location.clone())?;
        Ok(SqliteStore {
            writer: None,
            reader,
            threads: Threads {
                writer: None,
                reader: Some(read_thread),
            },
            location,
            label: store.label,
            redaction,
        })
    }

    /// Closes the store: waits for the requests already sent, then closes both connections (the last
    /// close checkpoints the write-ahead log into the main file and removes it). Dropping the store
    /// does the same without waiting.
    pub fn close(self) -> Result<(), StoreError> {
        let SqliteStore {
            writer,
            reader,
            threads,
            location,
            ..
        } = self;
        let join = |t: Thread| {
            t.join().unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    format!("the connection to `{}` panicked", location.display).into(),
                ))
            })
        };
        // The writer's connection closes last (after the reader here, and after the checkpointer in
        // the writer thread): the last connection to close checkpoints the whole write-ahead log into
        // the main file and removes it, which a read-only connection cannot do.
        drop(reader);
        let read = threads.reader.map_or(Ok(()), join);
        drop(writer);
        let write = threads.writer.map_or(Ok(()), join);
        write.and(read)
    }

    /// The label the store was created with ([`SqliteOptions::label`]), if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether the store was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The file this store keeps its data in (`:memory:` for an in-memory store).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.location.display)
    }

    async fn write<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let Some(writer) = &self.writer else {
            return Err(StoreError::Unavailable(format!(
                "`{}` was opened read-only: nothing can be written through this store; open it with \
                 `SqliteStore::open_existing` to write",
                self.location.display
            ).into()));
        };
        let (tx, rx) = oneshot::channel();
        writer
            .send(Job::Write(make(tx)))
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Location) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Read(Box::new(move |conn, at| {
            let _ = tx.send(f(conn, at));
        }));
        self.reader.send(job).map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> StoreError {
        StoreError::Unavailable(
            format!(
                "the connection to `{}` stopped: open the store again",
                self.location.display
            )
            .into(),
        )
    }
}

/// SQLite could not open a file it needs (for a reader: the `-shm` file of the write-ahead log).
fn cannot_open(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::PermissionDenied
        )
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self, request: &BeginRequest) -> Result<Begin, StoreError> {
        let request = Box::new(request.clone());
        self.write(|tx| Write::Begin(request, tx)).await
    }

    async fn renew(&self, renewal: &Renewal) -> Result<Millis, StoreError> {
        let renewal = Box::new(renewal.clone());
        self.write(|tx| Write::Renew(renewal, tx)).await
    }

    async fn complete(&self, completion: Completion) -> Result<Appended, StoreError> {
        let result = rows::to_json(&completion.result)?;
        let entry = crate::log::canonical_json(&completion.entry);
        let completion = Box::new((completion, result, entry));
        let logged = self.write(|tx| Write::Complete(completion, tx)).await?;
        Ok(Appended::of(&logged))
    }

    async fn fail(&self, failure: Failure) -> Result<LogEntry, StoreError> {
        let failure = Box::new(failure);
        self.write(|tx| Write::Fail(failure, tx)).await
    }

    async fn append_log(&self, entry: &NewLogEntry) -> Result<LogEntry, StoreError> {
        let entry = Box::new(entry.clone());
        self.write(|tx| Write::Append(entry, tx)).await
    }

    async fn log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let query = query.clone();
        self.read(move |c, at| reads::log(c, at, &query)).await
    }

    async fn halt_run(
        &self,
        run_id: Uuid,
        reason: &str,
        now_ms: Millis,
    ) -> Result<bool, StoreError> {
        let reason = reason.to_owned();
        self.write(|reply| Write::Halt {
            run_id,
            reason,
            now_ms,
            reply,
        })
        .await
    }

    async fn run_state(&self, run_id: Uuid) -> Result<RunState, StoreError> {
        self.read(move |c, at| reads::run_state(c, at, run_id))
            .await
    }

    async fn current_fencing_token(&self, record: &str) -> Result<Option<u64>, StoreError> {
        let record = record.to_owned();
        self.read(move |c, at| reads::fencing_token(c, at, &record))
            .await
    }

    async fn queue_entries(&self, query: &QueueQuery) -> Result<Vec<QueueEntry>, StoreError> {
        let query = query.clone();
        self.read(move |c, at| reads::queue_entries(c, at, &query))
            .await
    }

    async fn queue_entry(&self, id: u64) -> Result<Option<QueueEntry>, StoreError> {
        self.read(move |c, at| reads::queue_entry(c, at, id)).await
    }

    async fn queue_update(&self, update: &QueueUpdate) -> Result<QueueEntry, StoreError> {
        let update = Box::new(update.clone());
        self.write(|tx| Write::Queue(update, tx)).await
    }

    async fn key_state(&self, key_digest: &str) -> Result<Option<KeyState>, StoreError> {
        let key_digest = key_digest.to_owned();
        self.read(move |c, at| reads::key_state(c, at, &key_digest))
            .await
    }

    async fn log_head(&self) -> Result<Option<LogHead>, StoreError> {
        self.read(reads::log_head).await
    }

    async fn check_log_copies(&self) -> Result<(), StoreError> {
        self.read(reads::check_log_index).await
    }

    fn redaction_key(&self) -> Option<RedactionKey> {
        self.redaction.clone()
    }
}
