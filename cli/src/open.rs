//! Opening the store named by `--store`: a path, `sqlite:PATH`, or a `postgres://` URL.

use std::path::PathBuf;
use std::sync::Arc;

use actguard::Store;

use crate::CliError;

/// Where the store is, as given to `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl StoreLocation {
    /// Reads `--store`: a plain path, `sqlite:PATH` (or `sqlite://PATH`), or `postgres://…` /
    /// `postgresql://…`. Any other `scheme://` is refused.
    pub fn parse(text: &str) -> Result<StoreLocation, CliError> {
        if text.is_empty() {
            return Err(CliError::Usage(
                "--store is empty: give a file path, sqlite:PATH or a postgres:// URL".to_owned(),
            ));
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(CliError::Usage(format!(
                    "the store URL `{text}` names no file: write sqlite:PATH"
                )));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(CliError::Usage(format!(
                "unsupported store URL scheme `{scheme}://`: give a file path, sqlite:PATH or a \
                 postgres:// URL"
            )));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(text)))
    }

    /// Opens an existing store to read and write it (the commands that change the store: `queue
    /// claim`, `resolve`, `discard`). Never creates one: a missing SQLite file is an error, so that a
    /// typo in a path does not show an empty log; a file that is not an actguard store is refused and
    /// left unchanged. A SQLite store of an earlier schema version is upgraded.
    pub async fn open(&self) -> Result<Arc<dyn Store>, CliError> {
        match self {
            StoreLocation::Sqlite(path) => open_sqlite(path, false),
            StoreLocation::Postgres(url) => open_postgres(url).await,
        }
    }

    /// Opens an existing store to read it (every command that only reads: `log`, `show`, `verify`,
    /// `runs`, `queue ls`, `queue show`, `blast-radius`). A SQLite file is opened read-only: nothing
    /// is created, upgraded or written, no write lock is taken, and an agent writing the store
    /// neither waits for the command nor makes it wait. A read-only copy of a store can be read.
    pub async fn open_read_only(&self) -> Result<Arc<dyn Store>, CliError> {
        match self {
            StoreLocation::Sqlite(path) => open_sqlite(path, true),
            StoreLocation::Postgres(url) => open_postgres(url).await,
        }
    }
}

fn open_sqlite(path: &std::path::Path, read_only: bool) -> Result<Arc<dyn Store>, CliError> {
    // `symlink_metadata`: a symbolic link to nothing is not "no store" but a link the store's
    // open refuses, naming its target.
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(CliError::NoStore(path.display().to_string()));
    }
    if path.is_dir() {
        return Err(CliError::Usage(format!(
            "`{}` is a directory: pass the store file (e.g. {}/actguard.db)",
            path.display(),
            path.display()
        )));
    }
    Ok(if read_only {
        Arc::new(actguard::SqliteStore::open_read_only(path)?)
    } else {
        Arc::new(actguard::SqliteStore::open_existing(path)?)
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn Store>, CliError> {
    Err(CliError::Usage(
        "this build has no PostgreSQL support; build actguard-cli with --features postgres"
            .to_owned(),
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Store>, CliError> {
    // The store's own errors already name the server without the password.
    Ok(Arc::new(actguard::PostgresStore::connect(url).await?))
}

/// The URL without its password, for messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations_are_read_from_paths_and_urls() {
        assert_eq!(
            StoreLocation::parse("data/actguard.db").unwrap(),
            StoreLocation::Sqlite("data/actguard.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:a.db").unwrap(),
            StoreLocation::Sqlite("a.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:///tmp/a.db").unwrap(),
            StoreLocation::Sqlite("/tmp/a.db".into())
        );
        assert!(matches!(
            StoreLocation::parse("postgres://u:p@h/db").unwrap(),
            StoreLocation::Postgres(_)
        ));
        assert!(StoreLocation::parse("mysql://h/db").is_err());
        assert_eq!(
            redact_password("postgres://u:p@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
