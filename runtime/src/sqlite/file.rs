//! The store's file: recognising an existing file as an actguard store before anything is written to
//! it, creating a new store so that no other process ever sees it half made, and removing a store
//! by its label.
//!
//! Recognition reads first the file's type and its 100-byte SQLite header with plain file reads, then
//! (only for a file that may be a store of an earlier release) its tables through a read-only SQLite
//! connection that creates no file: a database in write-ahead-log mode without a `-wal` file is read
//! with `immutable=1`, since a read-only connection would otherwise create the `-wal` and `-shm` files
//! and leave them behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema::{self, APPLICATION_ID, Location, SCHEMA_VERSION, Settings};
use crate::store::StoreError;

/// What is at a store's path.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing (and no symbolic link).
    Missing,
    /// A regular file of 0 bytes.
    Empty,
    /// An actguard store.
    Store(Recognized),
}

/// An actguard store, as its header and tables say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recognized {
    /// Its schema version (`PRAGMA user_version`), at most [`SCHEMA_VERSION`].
    pub(crate) version: i64,
    /// Whether it carries [`APPLICATION_ID`]; a store written by a release before the application id
    /// does not, and is recognised by its tables.
    pub(crate) stamped: bool,
    /// The label given when it was created, if any.
    pub(crate) label: Option<String>,
}

/// The tables of every schema version (1 to [`SCHEMA_VERSION`], `settings` since 5) and `store_info`: a database holding any
/// other table (beside SQLite's own `sqlite_*` tables) is not a store of an earlier release.
const STORE_TABLES: [&str; 10] = [
    "runs",
    "keys",
    "records",
    "acted",
    "queue",
    "log",
    "log_index",
    "log_indexed",
    "settings",
    "store_info",
];

/// The tables every schema version has.
const REQUIRED_TABLES: [&str; 5] = ["runs", "keys", "records", "queue", "log"];

/// What an SQLite database holds that tells whether it is a store: its application id, its
/// `user_version` and the names of its tables.
#[derive(Debug, Clone)]
pub(crate) struct Contents {
    pub(crate) application_id: u32,
    pub(crate) version: i64,
    pub(crate) tables: BTreeSet<String>,
}

/// What [`classify`] makes of a database's [`Contents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No table, no version, no application id: an empty SQLite database.
    Blank,
    /// An actguard store of schema `version`; `stamped` when it carries [`APPLICATION_ID`].
    Store { version: i64, stamped: bool },
}

/// Reads the [`Contents`] of the database `conn` is open on.
pub(crate) fn contents(conn: &Connection, at: &Location) -> Result<Contents, StoreError> {
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| at.error(e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| at.error(e))?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(|e| at.error(e))?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<BTreeSet<_>, _>>())
        .map_err(|e| at.error(e))?;
    Ok(Contents {
        application_id: application_id as u32,
        version,
        tables,
    })
}

/// Whether `contents` are those of an actguard store, an empty database, or something else (an error
/// saying what the file is and that it was left unchanged).
pub(crate) fn classify(contents: &Contents, at: &Location) -> Result<Kind, StoreError> {
    let file = &at.display;
    let Contents {
        application_id,
        version,
        tables,
    } = contents;
    let version = *version;
    if *application_id != 0 && *application_id != APPLICATION_ID {
        return Err(other_application(at, *application_id));
    }
    let stamped = *application_id == APPLICATION_ID;
    let own: Vec<&String> = tables
        .iter()
        .filter(|t| !t.starts_with("sqlite_"))
        .collect();
    if !stamped {
        if own.is_empty() && version == 0 {
            return Ok(Kind::Blank);
        }
        let foreign: Vec<&str> = own
            .iter()
            .map(|t| t.as_str())
            .filter(|t| !STORE_TABLES.contains(t))
            .collect();
        let missing = REQUIRED_TABLES.iter().any(|t| !tables.contains(*t));
        if !foreign.is_empty() || missing {
            let names: Vec<&str> = own.iter().take(6).map(|t| t.as_str()).collect();
            let more = if own.len() > names.len() { ", …" } else { "" };
            let what = if own.is_empty() {
                format!("no tables and user_version {version}")
            } else {
                format!("tables {}{more}", names.join(", "))
            };
            return Err(StoreError::Corrupt(format!(
                "`{file}` is an SQLite database of another application ({what}), not an actguard \
                 store: it was left unchanged; pass the path of an actguard store, or move this file \
                 aside"
            ).into()));
        }
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "`{file}` has schema version {version}, but this version of actguard reads versions up to \
             {SCHEMA_VERSION}: it was left unchanged; upgrade actguard, or open another file"
        ).into()));
    }
    if version < 1 {
        return Err(StoreError::Corrupt(format!(
            "`{file}` has actguard's {} but schema version {version}, which no version of actguard \
             writes: it was left unchanged; restore it from a backup, or move it aside so that a new \
             store is created",
            if stamped { "application id" } else { "tables" }
        ).into()));
    }
    Ok(Kind::Store { version, stamped })
}

fn other_application(at: &Location, id: u32) -> StoreError {
    StoreError::Corrupt(format!(
        "`{}` is the SQLite database of another application (its application_id is {id:#010x}, \
         actguard's is {APPLICATION_ID:#010x}), not an actguard store: it was left unchanged; pass the \
         path of an actguard store, or move this file aside",
        at.display
    ).into())
}

/// What is at `path`, found without writing anything: the file is read with plain reads and, if it
/// may be a store of an earlier release, through a read-only connection that creates no file.
///
/// A symbolic link is followed; a link whose target does not exist, a directory, a device or pipe, a
/// file that is not an SQLite database, a damaged or truncated one, a database of another application
/// and a store of a newer schema are errors.
pub(crate) fn inspect(path: &Path, at: &Location) -> Result<Found, StoreError> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(at.io_error("read", &e)),
    };
    let meta = if link.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(dangling(path, at));
            }
            Err(e) => return Err(at.io_error("follow the symbolic link", &e)),
        }
    } else {
        link
    };
    if meta.is_dir() {
        return Err(StoreError::Unavailable(format!(
            "`{}` is a directory: check that the path names a file in an existing directory that this \
             user may read and write",
            at.display
        ).into()));
    }
    if !meta.is_file() {
        return Err(StoreError::Unavailable(format!(
            "`{}` is not a regular file (a device, pipe or socket), not an actguard store: it was left \
             unchanged; pass the path of the store's file",
            at.display
        ).into()));
    }
    let file = std::fs::File::open(path).map_err(|e| at.io_error("open", &e))?;
    let len = file.metadata().map_err(|e| at.io_error("read", &e))?.len();
    if len == 0 {
        return Ok(Found::Empty);
    }
    let header = check_header(path, &file, len, at)?;
    drop(file);
    if header.application_id != 0 && header.application_id != APPLICATION_ID {
        // Said by the header alone: SQLite need not even open it.
        return Err(other_application(at, header.application_id));
    }
    let conn = inspector(path, header.wal, at)?;
    let contents = contents(&conn, at)?;
    let kind = classify(&contents, at)?;
    let Kind::Store { version, stamped } = kind else {
        return Err(StoreError::Corrupt(format!(
            "`{}` is an empty SQLite database (no tables), not an actguard store: it was left \
             unchanged; actguard creates a store only where no file exists: remove it to have a store \
             created there, or pass the path of an actguard store",
            at.display
        ).into()));
    };
    let label = if contents.tables.contains("store_info") {
        schema::label(&conn, at)?
    } else {
        None
    };
    let _ = conn.close();
    Ok(Found::Store(Recognized {
        version,
        stamped,
        label,
    }))
}

/// The error for a symbolic link whose target does not exist.
fn dangling(path: &Path, at: &Location) -> StoreError {
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".to_owned());
    StoreError::Unavailable(format!(
        "`{}` is a symbolic link to `{target}`, which does not exist: actguard never creates a store \
         through a symbolic link; point the link at an existing store, or remove the link to have a \
         store created at its path",
        at.display
    ).into())
}

/// A read-only connection for recognising the file, which creates no file beside it.
fn inspector(path: &Path, wal_mode: bool, at: &Location) -> Result<Connection, StoreError> {
    if wal_mode && !sidecar(path, "-wal").exists() {
        // Nothing is pending in a log: the main file is the whole database. A read-only connection
        // would create the `-wal` and `-shm` files (and leave them); an immutable one creates none.
        if let Some(conn) = open_immutable(path) {
            return Ok(conn);
        }
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| at.error(e))
}

/// A connection reading `path` with `immutable=1`: no lock, no `-wal` or `-shm` file, and the file
/// assumed not to change while it is open. `None` where the path cannot be written as a URI.
pub(crate) fn open_immutable(path: &Path) -> Option<Connection> {
    let uri = immutable_uri(path)?;
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()
}

#[cfg(unix)]
fn immutable_uri(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Some(uri)
}

#[cfg(not(unix))]
fn immutable_uri(_path: &Path) -> Option<String> {
    None
}

/// `path` with `suffix` appended (`-wal`, `-shm`).
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the SQLite header of a file says.
struct Header {
    application_id: u32,
    /// The file is in write-ahead-log mode.
    wal: bool,
}

/// The SQLite header (first 100 bytes): magic, page size and, when valid, the page count. A file whose
/// header promises more pages than it holds was truncated; SQLite would only notice when it reads a
/// missing page, possibly in the middle of a `begin`.
fn check_header(
    path: &Path,
    file: &std::fs::File,
    len: u64,
    at: &Location,
) -> Result<Header, StoreError> {
    use std::io::Read;
    let not_sqlite = |why: &str| {
        StoreError::Corrupt(format!(
            "`{}` is not an actguard store ({why}): it was left unchanged; if it is a damaged store, \
             restore it from a backup, otherwise move it aside or pass the path of the store",
            at.display
        ).into())
    };
    let mut header = [0u8; 100];
    let mut reader = file;
    if len < 100 || reader.read_exact(&mut header).is_err() {
        return Err(not_sqlite("the file is shorter than a database header"));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(not_sqlite("the file does not start with the SQLite header"));
    }
    let found = Header {
        application_id: u32::from_be_bytes([header[68], header[69], header[70], header[71]]),
        wal: header[18] == 2 && header[19] == 2,
    };
    // With a write-ahead log present, pages beyond the end of the file may legitimately live in the
    // log until the next checkpoint: the size check only holds for a checkpointed file.
    let wal_len = std::fs::metadata(sidecar(path, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    if wal_len > 0 {
        return Ok(found);
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536u64,
        n => u64::from(n),
    };
    let change_counter = u32::from_be_bytes([header[24], header[25], header[26], header[27]]);
    let page_count = u32::from_be_bytes([header[28], header[29], header[30], header[31]]);
    let valid_for = u32::from_be_bytes([header[92], header[93], header[94], header[95]]);
    if change_counter == valid_for && page_count > 0 && len < page_size * u64::from(page_count) {
        return Err(StoreError::Corrupt(format!(
            "`{}` is not a readable actguard database (the file holds {len} bytes but its header says \
             {page_count} pages of {page_size} bytes: it was truncated); it was left unchanged: \
             restore it from a backup, or move it aside so that a new store is created",
            at.display
        ).into()));
    }
    Ok(found)
}

/// Creates a store at `path`, which did not exist: the store is made whole in a temporary file of
/// the same directory (mode `0600` on unix), then linked to `path` only if nothing is there yet, so no
/// process ever sees a half-made store at `path` and nothing that appeared there meanwhile is
/// replaced. If something did appear (another process creating the same store, or a symbolic link),
/// this returns `Ok` and the caller recognises what is there.
pub(crate) fn create(
    path: &Path,
    at: &Location,
    settings: Settings,
    label: Option<&str>,
) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| at.io_error("create", &std::io::Error::other("the path names no file")))?;
    let temp = Temp(dir.join(format!(
        ".{name}.{}-{:016x}.creating",
        std::process::id(),
        rand::random::<u64>()
    )));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    drop(
        options
            .open(&temp.0)
            .map_err(|e| at.io_error("create", &e))?,
    );
    {
        let temp_at = Location {
            display: temp.0.display().to_string(),
            read_only: false,
        };
        let mut conn = schema::connect(&temp.0, &temp_at, settings, false)?;
        schema::upgrade(&mut conn, &temp_at, true, label)?;
        schema::use_wal(&conn, &temp_at)?;
        conn.close().map_err(|(_, e)| temp_at.error(e))?;
    }
    match std::fs::hard_link(&temp.0, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        // A file system without hard links: copy into a file created only if none exists (another
        // process may then see it before the copy is complete, and refuse it as not a store).
        Err(_) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut out = match options.open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(at.io_error("create", &e)),
            };
            let mut from = std::fs::File::open(&temp.0).map_err(|e| at.io_error("create", &e))?;
            std::io::copy(&mut from, &mut out)
                .and_then(|_| out.sync_all())
                .map_err(|e| at.io_error("write", &e))?;
        }
    }
    sync_dir(&dir);
    Ok(())
}

/// Makes the new directory entry durable (unix; elsewhere the file system's own ordering applies).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// A temporary file removed (with its SQLite side files) when dropped.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        for suffix in ["-wal", "-shm", "-journal", ""] {
            let _ = std::fs::remove_file(sidecar(&self.0, suffix));
        }
    }
}

/// Removes the store at `path` (and its `-wal` and `-shm` files) if it is an actguard store created
/// with `label`; see [`SqliteStore::remove_labelled`](super::SqliteStore::remove_labelled).
pub(crate) fn remove_labelled(path: &Path, label: &str) -> Result<bool, StoreError> {
    let at = Location {
        display: path.display().to_string(),
        read_only: true,
    };
    let found = inspect(path, &at)?;
    let store =
        match found {
            Found::Missing => return Ok(false),
            Found::Empty => {
                return Err(StoreError::Conflict(format!(
                "`{}` is an empty file, not a store labelled `{label}`: it was left unchanged",
                at.display
            ).into()));
            }
            Found::Store(store) => store,
        };
    if store.label.as_deref() != Some(label) {
        let has = match &store.label {
            Some(other) => format!("labelled `{other}`"),
            None => "without a label".to_owned(),
        };
        return Err(StoreError::Conflict(format!(
            "`{}` is an actguard store {has}, not one labelled `{label}`: it was left unchanged",
            at.display
        ).into()));
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(StoreError::Conflict(format!(
            "`{}` is a symbolic link to a store labelled `{label}`: neither the link nor the store was \
             removed; remove it by hand",
            at.display
        ).into()));
    }
    std::fs::remove_file(path).map_err(|e| at.io_error("remove", &e))?;
    for suffix in ["-wal", "-shm"] {
        match std::fs::remove_file(sidecar(path, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(at.io_error("remove", &e)),
        }
    }
    Ok(true)
}
