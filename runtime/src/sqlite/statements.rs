//! The SQL text of the writer's frequent statements ([`Prepared`]), prepared once on its connection.

use rusqlite::{Connection, Statement};

use super::rows::Ctx;
use super::schema::Location;
use crate::store::StoreError;

/// The statements of the frequent writes, prepared once for the writer's connection: looking a
/// statement up in rusqlite's cache hashes its whole SQL text, which cost more than running it.
pub(crate) struct Prepared<'c> {
    /// `BEGIN IMMEDIATE`: the batch's transaction.
    pub(crate) begin_tx: Statement<'c>,
    /// `COMMIT`.
    pub(crate) commit: Statement<'c>,
    /// `PRAGMA data_version`: changes when another connection commits.
    pub(crate) data_version: Statement<'c>,
    /// `begin`: the key's row.
    pub(crate) key_row: Statement<'c>,
    /// `begin`: the record's row and the loop-filter mark of the action.
    pub(crate) record_rows: Statement<'c>,
    /// `begin`: the record's new token and lease.
    pub(crate) claim_record: Statement<'c>,
    /// `begin`: the key's claim.
    pub(crate) claim_key: Statement<'c>,
    /// Whether a claim still holds its key.
    pub(crate) held: Statement<'c>,
    /// `complete`: the key's result.
    pub(crate) complete_key: Statement<'c>,
    /// `complete`: the loop-filter mark.
    pub(crate) mark: Statement<'c>,
    /// Releases a record's lease.
    pub(crate) release: Statement<'c>,
    /// Appends to the log.
    pub(crate) log_insert: Statement<'c>,
    /// A key's state and count of attempts, to count a logged attempt.
    pub(crate) key_attempts: Statement<'c>,
    /// Sets a key's count of attempts.
    pub(crate) set_attempts: Statement<'c>,
    /// `renew`: the key's claim ends later.
    pub(crate) renew_key: Statement<'c>,
    /// `renew`: the record's lease ends later.
    pub(crate) renew_record: Statement<'c>,
}

impl<'c> Prepared<'c> {
    pub(crate) fn new(c: &'c Connection, at: &Location) -> Result<Prepared<'c>, StoreError> {
        Ok(Prepared {
            begin_tx: c.prepare("BEGIN IMMEDIATE").at(at)?,
            commit: c.prepare("COMMIT").at(at)?,
            data_version: c.prepare("PRAGMA data_version").at(at)?,
            key_row: c
                .prepare(
                    "SELECT state, fingerprint, lease_until_ms, result, completed_at_ms, queue_id, attempts
             FROM keys WHERE key_digest = ?1",
                )
                .at(at)?,
            record_rows: c
                .prepare(
                    "SELECT kind, last_token, holder_digest, holder_key, lease_until_ms
                 FROM records WHERE record = ?1 AND kind = 0 AND action = ''
                 UNION ALL
                 SELECT kind, NULL, key_digest, key_text, acted_at_ms
                 FROM records WHERE record = ?1 AND kind = 1 AND action = ?2",
                )
                .at(at)?,
            claim_record: c
                .prepare(
                    "INSERT INTO records (record, kind, action, last_token, holder_digest, holder_key,
             lease_until_ms)
         VALUES (?1, 0, '', ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET last_token = excluded.last_token,
             holder_digest = excluded.holder_digest, holder_key = excluded.holder_key,
             lease_until_ms = excluded.lease_until_ms",
                )
                .at(at)?,
            claim_key: c
                .prepare(
                    "INSERT INTO keys (key_digest, key_text, action, record, run_id, fingerprint, payload, state,
             claim_id, lease_until_ms, fencing_token, result, completed_at_ms, queue_id, attempts, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'claimed', ?8, ?9, ?10, NULL, NULL, NULL, ?12, ?11)
         ON CONFLICT (key_digest) DO UPDATE SET key_text = excluded.key_text,
             action = excluded.action, record = excluded.record, run_id = excluded.run_id,
             fingerprint = excluded.fingerprint, payload = excluded.payload, state = 'claimed',
             claim_id = excluded.claim_id, lease_until_ms = excluded.lease_until_ms,
             fencing_token = excluded.fencing_token, attempts = excluded.attempts,
             updated_ms = excluded.updated_ms",
                )
                .at(at)?,
            held: c
                .prepare(
                    "SELECT state, claim_id, record, key_text FROM keys WHERE key_digest = ?1",
                )
                .at(at)?,
            complete_key: c
                .prepare(
                    "UPDATE keys SET state = 'completed', result = ?2, completed_at_ms = ?3,
             lease_until_ms = NULL, updated_ms = ?3
         WHERE key_digest = ?1",
                )
                .at(at)?,
            mark: c
                .prepare(
                    "INSERT INTO records (record, kind, action, key_text, key_digest, acted_at_ms)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)
         ON CONFLICT (record, kind, action) DO UPDATE SET key_text = excluded.key_text,
             key_digest = excluded.key_digest, acted_at_ms = excluded.acted_at_ms",
                )
                .at(at)?,
            release: c
                .prepare(
                    "UPDATE records SET holder_digest = NULL, holder_key = NULL, lease_until_ms = NULL
         WHERE record = ?1 AND kind = 0 AND action = '' AND holder_digest = ?2",
                )
                .at(at)?,
            log_insert: c
                .prepare(
                    "INSERT INTO log (seq, at_ms, run_id, action, record, key_digest, attempt, outcome, entry,
             prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .at(at)?,
            key_attempts: c
                .prepare("SELECT state, attempts FROM keys WHERE key_digest = ?1")
                .at(at)?,
            set_attempts: c
                .prepare("UPDATE keys SET attempts = ?2 WHERE key_digest = ?1")
                .at(at)?,
            renew_key: c
                .prepare("UPDATE keys SET lease_until_ms = ?2, updated_ms = ?3 WHERE key_digest = ?1")
                .at(at)?,
            renew_record: c
                .prepare(
                    "UPDATE records SET lease_until_ms = ?3
                     WHERE record = ?1 AND kind = 0 AND action = '' AND holder_digest = ?2",
                )
                .at(at)?,
        })
    }
}
