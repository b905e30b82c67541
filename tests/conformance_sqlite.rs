//! The Store conformance suite against `SqliteStore`, file-backed in a temporary directory.

use actguard::SqliteStore;
use tempfile::TempDir;

/// A fresh store in its own directory; the directory lives as long as the test.
fn file_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("actguard.db")).expect("the store opens");
    (store, dir)
}

actguard::conformance_suite!(file_store());

/// The same suite against the in-memory variant.
mod in_memory {
    actguard::conformance_suite!(actguard::SqliteStore::open_in_memory().expect("the store opens"));
}
