//! The tamper suite: each edit a person with write access to the store can make to the action log,
//! applied to a SQLite store and (with the `postgres` feature) a PostgreSQL store, and the verdict
//! `verify` gives, alone and against the head kept outside the store. It is the table of
//! `docs/tamper-evidence.md`, edit by edit. The queryable-column edits are in `log_columns.rs` and
//! `log_columns_postgres.rs`, the SQLite index edits in `log_columns.rs`.

#[cfg(feature = "postgres")]
use crate::support::pg_support;

use actguard::log::{NewLogEntry, canonical_json, entry_hash};
use actguard::{
    ChainError, HeadError, LogEntry, LogHead, LogQuery, SqliteStore, Store, StoreError,
    VerifyError, VerifyReport,
};
use actguard_tests::log_entry;

/// A store of one kind with entries 1..=5, and the means to edit it behind its back.
struct Victim {
    kind: &'static str,
    store: Box<dyn Store>,
    raw: Raw,
    /// The head verified before the edit, kept outside the store.
    kept: LogHead,
}

enum Raw {
    Sqlite(std::path::PathBuf, #[allow(dead_code)] tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(pg_support::Schema),
}

impl Victim {
    /// Runs `sql`, `@` standing for the store's tables' qualifier.
    async fn sql(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(path, _) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&sql.replace('@', ""))
                .unwrap(),
            #[cfg(feature = "postgres")]
            Raw::Postgres(schema) => pg_support::connect(&schema.url)
                .await
                .batch_execute(&sql.replace('@', &format!("{}.", schema.name)))
                .await
                .unwrap(),
        }
    }

    /// Moves PostgreSQL's chain head to the log's last row, as an attacker who knows the schema would
    /// (SQLite keeps no head row).
    async fn move_chain_head(&self) {
        #[cfg(feature = "postgres")]
        if let Raw::Postgres(_) = &self.raw {
            self.sql(
                "UPDATE @log_head SET
                     seq = COALESCE((SELECT max(seq) FROM @log), 0),
                     hash = COALESCE((SELECT hash FROM @log ORDER BY seq DESC LIMIT 1), 'GENESIS')",
            )
            .await;
        }
    }

    async fn entries(&self) -> Vec<LogEntry> {
        self.store.log(&LogQuery::default()).await.unwrap()
    }

    /// Rewrites entry `seq` as `entry`, with a hash recomputed over `prev_hash`: a well-formed row.
    async fn forge(&self, seq: u64, prev_hash: &str, entry: &NewLogEntry) -> String {
        let hash = entry_hash(seq, prev_hash, entry);
        let json = canonical_json(entry).replace('\'', "''");
        self.sql(&format!(
            "UPDATE @log SET entry = '{json}', prev_hash = '{prev_hash}', hash = '{hash}',
                 record = '{}' WHERE seq = {seq}",
            entry.record
        ))
        .await;
        hash
    }

    async fn verify(&self) -> Result<VerifyReport, VerifyError> {
        actguard::verify_report(self.store.as_ref(), None).await
    }

    async fn verify_kept(&self) -> Result<VerifyReport, VerifyError> {
        actguard::verify_report(self.store.as_ref(), Some(&self.kept)).await
    }
}

async fn filled(store: Box<dyn Store>, kind: &'static str, raw: Raw) -> Victim {
    for i in 1..=5 {
        store.append_log(&log_entry(i)).await.unwrap();
    }
    let kept = actguard::verify_report(store.as_ref(), None)
        .await
        .unwrap()
        .head
        .unwrap();
    assert_eq!(kept.seq, 5);
    Victim {
        kind,
        store,
        raw,
        kept,
    }
}

/// A fresh victim of each kind.
async fn victims() -> Vec<Victim> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    #[allow(unused_mut)]
    let mut all = vec![filled(Box::new(sqlite), "sqlite", Raw::Sqlite(path, dir)).await];
    #[cfg(feature = "postgres")]
    {
        let (store, schema) = pg_support::fresh_store().await;
        all.push(filled(Box::new(store), "postgres", Raw::Postgres(schema)).await);
    }
    all
}

fn chain(kind: &str, r: Result<VerifyReport, VerifyError>) -> ChainError {
    match r {
        Err(VerifyError::Chain(e)) => e,
        other => panic!("{kind}: expected a broken chain, got {other:?}"),
    }
}

fn corrupt(kind: &str, r: Result<VerifyReport, VerifyError>) -> String {
    match r {
        Err(VerifyError::Store(StoreError::Corrupt(m))) => m.to_string(),
        other => panic!("{kind}: expected the log reported as tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn an_edited_entry_breaks_the_chain_at_that_entry() {
    for v in victims().await {
        v.sql("UPDATE @log SET entry = replace(entry, 'try again', 'try later') WHERE seq = 3")
            .await;
        assert_eq!(
            chain(v.kind, v.verify().await),
            ChainError::Modified { seq: 3 },
            "{}",
            v.kind
        );
    }
}

#[tokio::test]
async fn an_edited_entry_with_its_hash_recomputed_breaks_the_chain_at_the_next_entry() {
    for v in victims().await {
        let entries = v.entries().await;
        let mut edited = entries[2].entry.clone();
        edited.message = Some("nothing to see".into());
        v.forge(3, &entries[2].prev_hash, &edited).await;
        assert!(
            matches!(
                chain(v.kind, v.verify().await),
                ChainError::Broken {
                    seq: 4,
                    prev_seq: 3
                }
            ),
            "{}",
            v.kind
        );
    }
}

#[tokio::test]
async fn an_entry_deleted_inserted_or_moved_in_the_middle_breaks_the_chain() {
    for v in victims().await {
        v.sql("DELETE FROM @log WHERE seq = 3").await;
        assert!(
            matches!(
                chain(v.kind, v.verify().await),
                ChainError::Sequence {
                    seq: 4,
                    prev_seq: 2
                }
            ),
            "{}",
            v.kind
        );
    }
    for v in victims().await {
        // Entries 2 and 3 trade places (their columns go with them, so only the chain can tell).
        v.sql(
            "UPDATE @log SET seq = 1000 WHERE seq = 2;
             UPDATE @log SET seq = 2 WHERE seq = 3;
             UPDATE @log SET seq = 3 WHERE seq = 1000",
        )
        .await;
        let e = chain(v.kind, v.verify().await);
        assert!(
            matches!(
                e,
                ChainError::Broken { seq: 2, .. } | ChainError::Modified { seq: 2 }
            ),
            "{}: {e:?}",
            v.kind
        );
    }
}

#[tokio::test]
async fn deleting_the_last_entries_is_caught_by_the_kept_head() {
    for v in victims().await {
        v.sql("DELETE FROM @log WHERE seq >= 4").await;
        v.move_chain_head().await;
        // Alone, the shorter log is a valid chain.
        assert_eq!(
            v.verify().await.unwrap().head.map(|h| h.seq),
            Some(3),
            "{}",
            v.kind
        );
        match v.verify_kept().await {
            Err(VerifyError::Head(HeadError::Missing { expected, last })) => {
                assert_eq!((expected.seq, last), (5, 3), "{}", v.kind)
            }
            other => panic!("{}: {other:?}", v.kind),
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn deleting_the_last_entries_without_moving_the_chain_head_is_caught_alone_on_postgres() {
    for v in victims().await {
        if v.kind != "postgres" {
            continue;
        }
        v.sql("DELETE FROM @log WHERE seq >= 4").await;
        let m = corrupt(v.kind, v.verify().await);
        assert!(m.contains("is entry 5 but the log ends at entry 3"), "{m}");
    }
}

#[tokio::test]
async fn deleting_every_entry_is_caught_by_the_kept_head() {
    for v in victims().await {
        v.sql("DELETE FROM @log").await;
        v.move_chain_head().await;
        let alone = v.verify().await.unwrap();
        assert_eq!((alone.entries, alone.head), (0, None), "{}", v.kind);
        assert!(
            matches!(
                v.verify_kept().await,
                Err(VerifyError::Head(HeadError::Missing { last: 0, .. }))
            ),
            "{}",
            v.kind
        );
    }
}

#[tokio::test]
async fn a_chain_rewritten_from_an_entry_on_is_caught_by_the_kept_head() {
    for v in victims().await {
        let entries = v.entries().await;
        let mut prev = entries[1].hash.to_string();
        for e in &entries[2..] {
            let mut edited = e.entry.clone();
            edited.record = format!("{}-elsewhere", e.entry.record).into();
            prev = v.forge(e.seq, &prev, &edited).await;
        }
        v.move_chain_head().await;
        // Every link and column is consistent: alone, it verifies.
        let alone = v.verify().await.unwrap();
        assert_eq!(
            alone.head.as_ref().map(|h| &h.hash),
            Some(&prev),
            "{}",
            v.kind
        );
        match v.verify_kept().await {
            Err(VerifyError::Head(HeadError::Differs { expected, found })) => {
                assert_eq!((expected, found), (v.kept.clone(), prev), "{}", v.kind)
            }
            other => panic!("{}: {other:?}", v.kind),
        }
    }
}

/// What the chain cannot catch, as documented: an entry forged with a correct hash and appended after
/// the kept head is indistinguishable from one the agent wrote. Only the next checkpoint pins it.
#[tokio::test]
async fn an_entry_forged_after_the_kept_head_is_not_detected() {
    for v in victims().await {
        let mut forged = log_entry(6);
        forged.message = Some("forged".into());
        v.store.append_log(&forged).await.unwrap();
        let report = v.verify_kept().await.unwrap();
        assert_eq!(report.entries, 6, "{}", v.kind);
    }
}

#[tokio::test]
async fn a_corrupt_verdict_names_the_entry_when_a_row_is_made_unreadable() {
    for v in victims().await {
        v.sql("UPDATE @log SET entry = 'garbage' WHERE seq = 2")
            .await;
        let m = corrupt(v.kind, v.verify().await);
        assert!(m.contains("unreadable log entry 2 "), "{}: {m}", v.kind);
    }
}
