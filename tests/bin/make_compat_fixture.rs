//! Writes the compatibility fixture (`tests/fixtures/compat.rs`): the store `store-0.1.db` and the
//! manifest `manifest-0.1.json`, and prints the fingerprints, log hashes and manifest digest this build
//! computes (the pinned values of the fixture).
//!
//! The committed files were written by release 0.1 and must stay as they are: they are what later
//! releases (and builds with other `serde_json` features) must still replay and verify. Run this only
//! to see what a build computes, into another directory:
//!
//! ```text
//! cargo run -p actguard-tests --bin make_compat_fixture -- /tmp/fixture
//! ```

#[path = "../fixtures/compat.rs"]
mod compat;

use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make_compat_fixture <directory>");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store-0.1.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut name = store.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    compat::write_store(&store).await;

    // One self-contained file: the write-ahead log folded in, the free pages dropped.
    // (The store's own connections close in the background once the agent is dropped.)
    let conn = rusqlite::Connection::open(&store).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE; VACUUM;")
        .unwrap();
    drop(conn);

    let manifest = actguard::Manifest::from_registry();
    std::fs::write(dir.join("manifest-0.1.json"), manifest.to_json()).unwrap();

    println!("fingerprints:");
    for (name, fingerprint) in compat::payload_fingerprints() {
        println!("    (\"{name}\", \"{fingerprint}\"),");
    }
    println!("log hashes:");
    for hash in compat::log_hashes() {
        println!("    \"{hash}\",");
    }
    println!("manifest digest: {}", manifest.digest);
}
