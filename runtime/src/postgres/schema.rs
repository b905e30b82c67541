//! The versioned schema: migrations applied on connect, inside one transaction serialized across
//! processes, and a refusal of a schema written by a newer version.

use tokio_postgres::Client;

use super::server::Server;
use crate::log::GENESIS_HASH;
use crate::redacted::RedactionKey;
use crate::store::StoreError;

/// The schema version this build writes (the `version` of `<schema>.schema_version`).
pub(crate) const SCHEMA_VERSION: i64 = 4;

/// Migrations, in order: `MIGRATIONS[n]` brings a schema from version `n` to `n + 1`. `@.` stands for
/// the store's schema (`actguard.` by default).
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
    CREATE TABLE @.runs (
        run_id        TEXT PRIMARY KEY,
        reason        TEXT NOT NULL,
        halted_at_ms  BIGINT NOT NULL
    );

    -- One row per idempotency key: its claim while in progress, its result once completed, its queue
    -- entry once terminally failed, and the fingerprint it was first seen with.
    CREATE TABLE @.keys (
        key_digest      TEXT PRIMARY KEY,
        key_text        TEXT NOT NULL,
        action          TEXT NOT NULL,
        record          TEXT NOT NULL,
        run_id          TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('claimed', 'completed', 'failed', 'released')),
        claim_id        TEXT,
        lease_until_ms  BIGINT,
        fencing_token   BIGINT,
        result          TEXT,
        completed_at_ms BIGINT,
        queue_id        BIGINT,
        updated_ms      BIGINT NOT NULL
    );

    -- One row per record: the last fencing token issued (0: none yet) and the live lease, if any. Its
    -- row lock serializes every claim on the record.
    CREATE TABLE @.records (
        record          TEXT PRIMARY KEY,
        last_token      BIGINT NOT NULL,
        holder_digest   TEXT,
        holder_key      TEXT,
        lease_until_ms  BIGINT
    );

    -- The loop filter: the last completion of (record, action).
    CREATE TABLE @.acted (
        record       TEXT NOT NULL,
        action       TEXT NOT NULL,
        key_text     TEXT NOT NULL,
        key_digest   TEXT NOT NULL,
        acted_at_ms  BIGINT NOT NULL,
        PRIMARY KEY (record, action)
    );

    CREATE TABLE @.queue (
        id          BIGSERIAL PRIMARY KEY,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        action      TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        entry       TEXT NOT NULL
    );

    -- The action log. `entry` is the JSON of the `NewLogEntry` exactly as hashed; the other columns
    -- are copies for queries.
    CREATE TABLE @.log (
        seq         BIGINT PRIMARY KEY,
        at_ms       BIGINT NOT NULL,
        run_id      TEXT NOT NULL,
        action      TEXT NOT NULL,
        record      TEXT NOT NULL,
        key_digest  TEXT NOT NULL,
        attempt     BIGINT NOT NULL,
        outcome     TEXT NOT NULL,
        entry       TEXT NOT NULL,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
    );
    CREATE INDEX log_by_run ON @.log (run_id, seq);
    CREATE INDEX log_by_action ON @.log (action, seq);
    CREATE INDEX log_by_record ON @.log (record, seq);
    CREATE INDEX log_by_time ON @.log (at_ms);
    CREATE INDEX log_by_key ON @.log (key_digest, attempt);

    -- The head of the chain: one row, locked by every append until its transaction commits, so
    -- appends from every process form one chain with no gap and no fork.
    CREATE TABLE @.log_head (
        one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        seq   BIGINT NOT NULL,
        hash  TEXT NOT NULL
    );
    INSERT INTO @.log_head (one, seq, hash) VALUES (TRUE, 0, '@GENESIS');
    "#,
    // 1 → 2: operators on queue entries (who claimed it, the note, when it was closed).
    r#"
    ALTER TABLE @.queue ADD COLUMN claimed_by TEXT;
    ALTER TABLE @.queue ADD COLUMN note TEXT;
    ALTER TABLE @.queue ADD COLUMN closed_ms BIGINT;
    "#,
    // 2 → 3: each key counts the attempts of its current call (the budget a takeover inherits),
    // instead of counting log rows at every claim. A claim in progress keeps what it had logged.
    r#"
    ALTER TABLE @.keys ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
    UPDATE @.keys k SET attempts = (
        SELECT count(*) FROM @.log l WHERE l.key_digest = k.key_digest AND l.attempt > 0)
    WHERE k.state = 'claimed';
    "#,
    // 3 → 4: the store's settings. The first is the store's secret keying the digests of `Redacted`
    // values (`redaction_key`), written by `add_redaction_secret` in the same transaction: it comes
    // from the operating system's random generator of the process that migrates.
    r#"
    CREATE TABLE @.settings (
        name   TEXT PRIMARY KEY,
        value  BYTEA NOT NULL
    );
    "#,
];

/// The version whose migration creates the redaction secret.
const REDACTION_SECRET_VERSION: i64 = 4;

/// The row of `settings` holding the redaction secret.
const REDACTION_SECRET: &str = "redaction_key";

/// The store's redaction secret, as its migration wrote it.
pub(crate) async fn redaction_secret(
    client: &Client,
    server: &Server,
    schema: &str,
) -> Result<RedactionKey, StoreError> {
    let row = client
        .query_opt(
            &qualify("SELECT value FROM @.settings WHERE name = $1", schema),
            &[&REDACTION_SECRET],
        )
        .await
        .map_err(|e| server.error(e))?;
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "schema `{schema}` on {server} {why}: its `Redacted` digests cannot be computed again; \
             restore it from a backup"
        ).into())
    };
    let bytes: Vec<u8> = match row {
        Some(row) => row.try_get(0).map_err(|e| server.error(e))?,
        None => return Err(corrupt("has lost its redaction secret".to_owned())),
    };
    RedactionKey::new(&bytes)
        .map_err(|_| corrupt(format!("has a redaction secret of {} bytes", bytes.len())))
}

/// Replaces `@.` with the qualified schema prefix.
pub(crate) fn qualify(sql: &str, schema: &str) -> String {
    sql.replace("@.", &format!("{schema}."))
}

/// Whether `schema` is a plain lower-case identifier (no quoting needed, at most 63 bytes).
pub(crate) fn valid_schema_name(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
}

/// Brings `schema` to [`SCHEMA_VERSION`], creating it if needed, or refuses a schema written by a
/// newer version. Concurrent callers (many processes starting at once) are serialized by an advisory
/// lock held for the transaction.
pub(crate) async fn migrate(
    client: &mut Client,
    server: &Server,
    schema: &str,
) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| server.error(e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('actguard.migrate:' || $1, 0))",
        &[&schema],
    )
    .await
    .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             version  BIGINT NOT NULL
         );"
    ))
    .await
    .map_err(err)?;
    let row = tx
        .query_opt(
            &qualify("SELECT version FROM @.schema_version", schema),
            &[],
        )
        .await
        .map_err(err)?;
    let version: i64 = match row {
        Some(r) => r.try_get(0).map_err(err)?,
        None => 0,
    };
    let refusal = if version > SCHEMA_VERSION {
        Some(format!(
            "schema `{schema}` on {server} has version {version}, but this version of actguard reads \
             versions up to {SCHEMA_VERSION}: upgrade actguard, or use another schema"
        ))
    } else if version < 0 {
        Some(format!(
            "schema `{schema}` on {server} has version {version}, which no version of actguard writes: \
             restore it from a backup, or use another schema"
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        // Ends the transaction now rather than whenever the connection is next used or dropped.
        tx.rollback().await.map_err(err)?;
        return Err(StoreError::Corrupt(refusal.into()));
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.batch_execute(&qualify(sql, schema).replace("@GENESIS", GENESIS_HASH))
            .await
            .map_err(err)?;
    }
    if version < REDACTION_SECRET_VERSION {
        let secret = RedactionKey::generate_secret();
        tx.execute(
            &qualify(
                "INSERT INTO @.settings (name, value) VALUES ($1, $2)",
                schema,
            ),
            &[&REDACTION_SECRET, &&secret[..]],
        )
        .await
        .map_err(err)?;
    }
    if version < SCHEMA_VERSION {
        tx.execute(
            &qualify(
                "INSERT INTO @.schema_version (one, version) VALUES (TRUE, $1)
                 ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                schema,
            ),
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("actguard"));
        assert!(valid_schema_name("actguard_test_0f3a"));
        assert!(!valid_schema_name("Actguard"));
        assert!(!valid_schema_name("a-b"));
        assert!(!valid_schema_name("x; DROP TABLE y"));
        assert!(!valid_schema_name(""));
    }
}
