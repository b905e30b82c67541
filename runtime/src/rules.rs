//! The rulebook: every rule of [`Store::begin`](crate::Store::begin), [`Store::complete`](crate::Store::complete), [`Store::fail`](crate::Store::fail) and
//! [`Store::append_log`](crate::Store::append_log), written once, as plain functions from the state a store loaded to a
//! decision.
//!
//! A store does three things per operation: it **loads** what a rule asks for (the key's row, the
//! record's row, the loop filter's mark, whether the run is halted), **asks** the rule, and
//! **applies** the decision atomically in its own way: [`MemoryStore`](crate::MemoryStore) under its
//! lock, `SqliteStore` in its writer's transaction, `PostgresStore` in a transaction that holds the
//! key's row lock. No store decides anything itself, so the stores cannot disagree; a new store is
//! "load + apply + pass the conformance suite" (`actguard::conformance`, feature `conformance`).
//!
//! # The rules, in one place
//!
//! - **`begin`** ([`begin_key`], then [`begin_record`]), checked in this order: the run is halted →
//!   refuse; the key is known with another payload fingerprint → [`Refusal::KeyReused`] (whatever its
//!   state); completed → replay its result; terminally failed → its queue entry, unless the request
//!   replays exactly that entry and the entry is still [`replayable`]; claimed by a live lease →
//!   [`Refusal::InProgress`]; the record leased by a live claim of another key →
//!   [`Refusal::RecordBusy`]; (record, action) completed under another key within the dedup window →
//!   [`Refusal::Skipped`]; otherwise claim the key and the record with the record's next fencing token
//!   until `now + lease`.
//! - **Counting attempts.** The retry budget belongs to one call of one key. A claim starts attempt
//!   `previous_attempts + 1`, where `previous_attempts` is 0 for a new call (a fresh key, a key
//!   released by a halt, a replay of its queue entry) and, for a takeover of a dead worker's expired
//!   claim, the attempts that worker's call had counted. The count a key keeps is the highest
//!   attempt the store knows started: the claim's own attempt, raised by each logged attempt
//!   ([`attempts_after_log`]). So a takeover counts the attempt the dead worker's claim started, and
//!   an input that kills every worker ends in the dead-letter queue instead of looping (the guarded
//!   call dead-letters a takeover that has no attempt left, without running the body). A retry
//!   that started after its predecessor was logged is not known to the store until it is logged
//!   itself (knowing it would take one more durable write per retry): a worker dying inside it is
//!   taken over at the same number. Calls refused before claiming (halted, skipped, replayed, in
//!   progress) never count.
//! - **`renew`**: a live call keeps its claim and its record lease for another lease ([`renew`]);
//!   a dead worker's claim is taken over one lease after its last renewal.
//! - **`complete` and `fail`** apply only while the claim still holds the key ([`complete`],
//!   [`check_claim`]); completing again what the same claim completed with the same result is
//!   accepted (a lost reply converges); a
//!   completion marks a replayed queue entry replayed if it is still [`replayable`]; what a failure
//!   does with the queue is [`fail`]'s [`FailPlan`], and a replay that fails again merges into its entry
//!   by [`refail`].
//! - **Operators**: a queue entry changes as [`QueueOp::check`] allows; a resolve that releases its
//!   key frees the key for a new call with any payload ([`releases_key`]).

use uuid::Uuid;

use crate::store::{
    BeginRequest, Claim, KeyStatus, Millis, NewQueueEntry, QueueEntry, QueueOp, QueueStatus,
    StoreError,
};

/// A stored key, as [`begin_key`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyView<'a> {
    /// The payload fingerprint stored with the key; `None` once an operator released the key
    /// ([`releases_key`]): its next call may bring any payload.
    pub fingerprint: Option<&'a str>,
    /// What became of it.
    pub phase: KeyPhase,
    /// The attempts counted against the budget of the key's current (or last) call.
    pub attempts: u32,
}

/// How a store keeps the fingerprint of a key an operator released ([`releases_key`]): empty, since
/// a real fingerprint is never empty. [`stored_fingerprint`] reads it back.
pub const RELEASED_FINGERPRINT: &str = "";

/// The fingerprint a store kept, as [`KeyView::fingerprint`] wants it.
pub fn stored_fingerprint(stored: &str) -> Option<&str> {
    (stored != RELEASED_FINGERPRINT).then_some(stored)
}

/// The state of a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPhase {
    /// Claimed by a call, whose lease ends at `lease_until_ms` (it may have ended already).
    Claimed {
        /// When the claim's lease ends.
        lease_until_ms: Millis,
    },
    /// Completed: its result is stored.
    Completed,
    /// Terminally failed: queue entry `entry` decides. `entry_replayable` says whether that entry is
    /// still [`replayable`]; a store needs to read it only when [`replays`] the entry is true, and may
    /// pass `false` otherwise.
    Failed {
        /// The queue entry of the failure.
        entry: u64,
        /// Whether the entry is still open or claimed.
        entry_replayable: bool,
    },
    /// Released without a result (the run halted): a new call may claim it.
    Released,
}

/// A record, as [`begin_record`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The highest fencing token issued for the record.
    pub last_token: u64,
    /// The record's lease, if one was taken and not released (it may have ended).
    pub lease: Option<LeaseView<'a>>,
}

/// A record's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView<'a> {
    /// The digest of the key holding it.
    pub holder_digest: &'a str,
    /// The readable text of that key.
    pub holder_key: &'a str,
    /// When it ends.
    pub until_ms: Millis,
}

/// The loop filter's mark of an action on a record: the last completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActedView<'a> {
    /// The digest of the key that completed.
    pub key_digest: &'a str,
    /// Its readable text.
    pub key_text: &'a str,
    /// When it completed.
    pub at_ms: Millis,
}

/// Why `begin` answers without claiming. The store turns it into its [`Begin`](crate::store::Begin)
/// answer ([`Refusal::answer`]), attaching the stored result or queue entry where one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// The run is halted.
    Halted,
    /// The key is known with another fingerprint.
    KeyReused {
        /// The fingerprint stored with the key.
        stored_fingerprint: &'a str,
    },
    /// The key completed: answer its stored result.
    Completed,
    /// The key failed terminally: answer its queue entry.
    Failed {
        /// The queue entry.
        entry: u64,
    },
    /// Another call holds the key with a live lease.
    InProgress {
        /// When that lease ends.
        lease_until_ms: Millis,
    },
    /// Another key holds the record with a live lease.
    RecordBusy {
        /// That key's readable text.
        holder_key: &'a str,
        /// When that lease ends.
        lease_until_ms: Millis,
    },
    /// The action completed on the record under another key within the dedup window.
    Skipped {
        /// The key that acted.
        previous_key: &'a str,
        /// When.
        acted_at_ms: Millis,
    },
}

impl Refusal<'_> {
    /// The store's answer for a refusal that carries no stored data; `None` for
    /// [`Refusal::Completed`] and [`Refusal::Failed`], whose answers carry the stored result or the
    /// queue entry's reference, which the store reads.
    pub fn answer(self) -> Option<crate::store::Begin> {
        use crate::store::Begin;
        Some(match self {
            Refusal::Halted => Begin::Halted,
            Refusal::KeyReused { stored_fingerprint } => Begin::KeyReused {
                stored_fingerprint: stored_fingerprint.to_owned(),
            },
            Refusal::InProgress { lease_until_ms } => Begin::InProgress { lease_until_ms },
            Refusal::RecordBusy {
                holder_key,
                lease_until_ms,
            } => Begin::RecordBusy {
                holder_key: holder_key.to_owned(),
                lease_until_ms,
            },
            Refusal::Skipped {
                previous_key,
                acted_at_ms,
            } => Begin::Skipped {
                previous_key: previous_key.to_owned(),
                acted_at_ms,
            },
            Refusal::Completed | Refusal::Failed { .. } => return None,
        })
    }
}

/// What the key allows: a claim, as a new call or as a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGrant {
    /// Whether the expired claim of another call is taken over.
    pub takeover: bool,
    /// Attempts already counted against this call's budget.
    pub previous_attempts: u32,
    /// Whether the request replays the failed key's queue entry.
    pub replay: bool,
}

/// A claim to write: the key and the record, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    /// The record's new highest fencing token (the claim's).
    pub fencing_token: u64,
    /// When the claim and the record lease end.
    pub lease_until_ms: Millis,
    /// The attempts the key counts once claimed: the claim starts attempt `previous_attempts + 1`.
    pub attempts: u32,
    /// Whether the request replays the key's queue entry (the key was failed).
    pub replay: bool,
    /// The answer to the caller.
    pub claim: Claim,
}

/// Whether `req` replays queue entry `entry` (so a store must read whether the entry is still
/// [`replayable`]).
pub fn replays(req: &BeginRequest, entry: u64) -> bool {
    req.replay_of == Some(entry)
}

/// Whether a queue entry in `status` may still be replayed (and marked replayed when its replay
/// completes): open or claimed, not yet resolved, discarded or replayed.
pub fn replayable(status: QueueStatus) -> bool {
    !status.is_terminal()
}

/// The first half of `begin`: the run, then the key. `Ok` means the key may be claimed; go on to
/// [`begin_record`] with the grant.
pub fn begin_key<'a>(
    req: &BeginRequest,
    run_halted: bool,
    key: Option<KeyView<'a>>,
) -> Result<KeyGrant, Refusal<'a>> {
    if run_halted {
        return Err(Refusal::Halted);
    }
    let Some(key) = key else {
        return Ok(KeyGrant {
            takeover: false,
            previous_attempts: 0,
            replay: false,
        });
    };
    if let Some(stored) = key.fingerprint
        && stored != req.fingerprint.as_str()
    {
        return Err(Refusal::KeyReused {
            stored_fingerprint: stored,
        });
    }
    match key.phase {
        KeyPhase::Completed => Err(Refusal::Completed),
        KeyPhase::Failed {
            entry,
            entry_replayable,
        } => {
            if replays(req, entry) && entry_replayable {
                // A replay is a new call under the same key: its attempts count afresh.
                Ok(KeyGrant {
                    takeover: false,
                    previous_attempts: 0,
                    replay: true,
                })
            } else {
                Err(Refusal::Failed { entry })
            }
        }
        // The halted call's budget ended with it: a new call starts afresh.
        KeyPhase::Released => Ok(KeyGrant {
            takeover: false,
            previous_attempts: 0,
            replay: false,
        }),
        KeyPhase::Claimed { lease_until_ms } if req.now_ms < lease_until_ms => {
            Err(Refusal::InProgress { lease_until_ms })
        }
        // A dead worker's call goes on: its attempts, the one it was running included, count.
        KeyPhase::Claimed { .. } => Ok(KeyGrant {
            takeover: true,
            previous_attempts: key.attempts,
            replay: false,
        }),
    }
}

/// The second half of `begin`: the record's lease, then the loop filter, then the claim. `acted`
/// is the mark of `req.action` on `req.record`; a store may skip reading it when `req.dedup_ms` is
/// `None`.
pub fn begin_record<'a>(
    req: &BeginRequest,
    grant: KeyGrant,
    record: Option<RecordView<'a>>,
    acted: Option<ActedView<'a>>,
) -> Result<ClaimPlan, Refusal<'a>> {
    if let Some(lease) = record.and_then(|r| r.lease)
        && lease.holder_digest != req.key_digest.as_str()
        && req.now_ms < lease.until_ms
    {
        return Err(Refusal::RecordBusy {
            holder_key: lease.holder_key,
            lease_until_ms: lease.until_ms,
        });
    }
    if let Some(window) = req.dedup_ms
        && let Some(acted) = acted
        && acted.key_digest != req.key_digest.as_str()
        && req.now_ms < acted.at_ms.saturating_add(window)
    {
        return Err(Refusal::Skipped {
            previous_key: acted.key_text,
            acted_at_ms: acted.at_ms,
        });
    }
    let fencing_token = record.map_or(0, |r| r.last_token).saturating_add(1);
    Ok(ClaimPlan {
        fencing_token,
        lease_until_ms: req.now_ms.saturating_add(req.lease_ms),
        attempts: grant.previous_attempts.saturating_add(1),
        replay: grant.replay,
        claim: Claim {
            fencing_token,
            takeover: grant.takeover,
            previous_attempts: grant.previous_attempts,
        },
    })
}

/// `complete` and `fail` apply only while `claim_id` still holds the key: `claimed_by` is the claim
/// holding the stored key (`None` when the key is not claimed, or not stored). Otherwise the claim was
/// lost (its lease ended and another call took the key over) and nothing changes.
pub fn check_claim(
    claimed_by: Option<Uuid>,
    claim_id: Uuid,
    key_text: &str,
) -> Result<(), StoreError> {
    if claimed_by == Some(claim_id) {
        Ok(())
    } else {
        Err(StoreError::ClaimLost {
            key: key_text.to_owned(),
        })
    }
}

/// A stored key, as `complete` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Claimed by this claim id.
    Claimed(Uuid),
    /// Completed by this claim id (`None`: by a claim the store did not keep), with a result that is
    /// (`true`) or is not the one being completed now.
    Completed(Option<Uuid>, bool),
    /// Anything else: failed, released, or not stored.
    Other,
}

/// What `complete` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletePlan {
    /// The claim holds the key: store the result, mark, release, log.
    Apply,
    /// This very claim completed the key already with the same result (its reply was lost): answer
    /// where the first completion's entry went, and change nothing.
    AlreadyDone,
}

/// The rule of `complete`: [`CompletePlan::Apply`] while `claim_id` holds the key;
/// [`CompletePlan::AlreadyDone`] when the same claim completed it already with the same result, so a
/// completion whose commit succeeded but whose reply was lost converges when it is sent again;
/// otherwise [`StoreError::ClaimLost`] (or [`StoreError::Conflict`] for the same claim with another
/// result), and nothing changes.
pub fn complete(
    holder: Holder,
    claim_id: Uuid,
    key_text: &str,
) -> Result<CompletePlan, StoreError> {
    match holder {
        Holder::Claimed(held) if held == claim_id => Ok(CompletePlan::Apply),
        Holder::Completed(Some(by), true) if by == claim_id => Ok(CompletePlan::AlreadyDone),
        Holder::Completed(Some(by), false) if by == claim_id => Err(StoreError::Conflict(
            format!("key `{key_text}` was completed by this claim already, with another result")
                .into(),
        )),
        _ => Err(StoreError::ClaimLost {
            key: key_text.to_owned(),
        }),
    }
}

/// The rule of `renew`: while `claim_id` holds the key (`claimed_by`), its claim and its record's
/// lease end `lease_ms` from now; the answer is that new end. A claim that was lost (its lease ran out
/// and another call took the key over) is [`StoreError::ClaimLost`], and nothing changes.
pub fn renew(
    claimed_by: Option<Uuid>,
    claim_id: Uuid,
    key_text: &str,
    now_ms: Millis,
    lease_ms: Millis,
) -> Result<Millis, StoreError> {
    check_claim(claimed_by, claim_id, key_text)?;
    Ok(now_ms.saturating_add(lease_ms))
}

/// The count of a key after an attempt numbered `logged` (> 0) was logged under it: raised to the
/// number while the key is claimed (a takeover then knows how far the dead worker got); `None` when
/// nothing changes.
pub fn attempts_after_log(claimed: bool, stored: u32, logged: u32) -> Option<u32> {
    (claimed && logged > stored).then_some(logged)
}

/// What a terminal failure does to the review queue and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPlan {
    /// No queue entry (the run halted): release the key; a new call may claim it, afresh.
    Release,
    /// A new queue entry: the key fails, pointing at it; the log entry names it.
    Open,
    /// A replay failed again: merge the failure into entry `entry` ([`refail`]); the key stays failed,
    /// pointing at it; the log entry names it.
    Refail {
        /// The replayed entry.
        entry: u64,
    },
    /// A replay halted: the key goes back to entry `entry`, which is left as it was.
    Return {
        /// The replayed entry.
        entry: u64,
    },
}

/// The plan of a terminal failure: `queued` says whether the failure goes to a queue; `replayed` is
/// the entry the call replays, if the request named one and it exists.
pub fn fail(queued: bool, replayed: Option<u64>) -> FailPlan {
    match (queued, replayed) {
        (true, Some(entry)) => FailPlan::Refail { entry },
        (false, Some(entry)) => FailPlan::Return { entry },
        (true, None) => FailPlan::Open,
        (false, None) => FailPlan::Release,
    }
}

/// Whether an operator's `op` on queue entry `entry` releases the entry's key, stored with `key`'s
/// status and queue entry: a resolve with `release`, while the key still fails on this very entry (a
/// key completed by a replay since, or failed on another entry, is left as it is). A released key is
/// stored as released without a fingerprint ([`RELEASED_FINGERPRINT`]): its next call claims it
/// afresh, with any payload.
pub fn releases_key(op: &QueueOp, key: Option<(KeyStatus, Option<u64>)>, entry: u64) -> bool {
    matches!(op, QueueOp::Resolve { release: true, .. })
        && matches!(key, Some((KeyStatus::Failed, Some(e))) if e == entry)
}

/// The re-fail merge: a replay of `entry` failed again with `failure`. The entry takes the new
/// failure's queue, kind and message, adds its attempts, moves `last_failure_ms`, and opens again;
/// who claimed it and the note stay (the history of the entry), `first_failure_ms` and `created_ms`
/// too.
pub fn refail(entry: &mut QueueEntry, failure: &NewQueueEntry) {
    entry.kind = failure.kind;
    entry.name.clone_from(&failure.name);
    entry.failure_kind = failure.failure_kind;
    entry.message.clone_from(&failure.message);
    entry.attempts = entry.attempts.saturating_add(failure.attempts);
    entry.last_failure_ms = failure.last_failure_ms;
    entry.status = QueueStatus::Open;
    entry.closed_ms = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(now_ms: Millis) -> BeginRequest {
        BeginRequest {
            run_id: Uuid::nil(),
            action: "act".into(),
            key_text: "k".into(),
            key_digest: "dk".into(),
            record: "rec".into(),
            fingerprint: "fp".into(),
            payload: serde_json::json!({}).into(),
            claim_id: Uuid::nil(),
            now_ms,
            lease_ms: 100,
            dedup_ms: Some(1_000),
            replay_of: None,
        }
    }

    fn key(phase: KeyPhase, attempts: u32) -> Option<KeyView<'static>> {
        Some(KeyView {
            fingerprint: Some("fp"),
            phase,
            attempts,
        })
    }

    #[test]
    fn a_released_key_starts_a_new_call() {
        let g = begin_key(&req(0), false, key(KeyPhase::Released, 3)).unwrap();
        assert_eq!(
            g,
            KeyGrant {
                takeover: false,
                previous_attempts: 0,
                replay: false
            }
        );
    }

    #[test]
    fn a_takeover_carries_the_dead_workers_attempts() {
        let claimed = KeyPhase::Claimed { lease_until_ms: 50 };
        assert_eq!(
            begin_key(&req(49), false, key(claimed, 2)),
            Err(Refusal::InProgress { lease_until_ms: 50 })
        );
        let g = begin_key(&req(50), false, key(claimed, 2)).unwrap();
        assert_eq!((g.takeover, g.previous_attempts), (true, 2));
        let plan = begin_record(&req(50), g, None, None).unwrap();
        assert_eq!(plan.attempts, 3);
        assert_eq!(plan.claim.previous_attempts, 2);
    }

    #[test]
    fn the_fingerprint_comes_before_everything_but_the_halt() {
        let mut r = req(0);
        r.fingerprint = "other".into();
        assert_eq!(
            begin_key(&r, false, key(KeyPhase::Completed, 1)),
            Err(Refusal::KeyReused {
                stored_fingerprint: "fp"
            })
        );
        assert_eq!(
            begin_key(&r, true, key(KeyPhase::Completed, 1)),
            Err(Refusal::Halted)
        );
    }

    #[test]
    fn a_failed_key_is_replayed_only_with_its_open_entry() {
        let failed = |open| KeyPhase::Failed {
            entry: 7,
            entry_replayable: open,
        };
        assert_eq!(
            begin_key(&req(0), false, key(failed(true), 4)),
            Err(Refusal::Failed { entry: 7 })
        );
        let mut r = req(0);
        r.replay_of = Some(7);
        assert_eq!(
            begin_key(&r, false, key(failed(false), 4)),
            Err(Refusal::Failed { entry: 7 })
        );
        assert_eq!(
            begin_key(&r, false, key(failed(true), 4)),
            Ok(KeyGrant {
                takeover: false,
                previous_attempts: 0,
                replay: true
            })
        );
    }

    #[test]
    fn the_record_lease_comes_before_the_loop_filter() {
        let g = begin_key(&req(10), false, None).unwrap();
        let lease = LeaseView {
            holder_digest: "other",
            holder_key: "o",
            until_ms: 11,
        };
        let acted = ActedView {
            key_digest: "prev",
            key_text: "p",
            at_ms: 5,
        };
        let record = RecordView {
            last_token: 4,
            lease: Some(lease),
        };
        assert_eq!(
            begin_record(&req(10), g, Some(record), Some(acted)),
            Err(Refusal::RecordBusy {
                holder_key: "o",
                lease_until_ms: 11
            })
        );
        assert_eq!(
            begin_record(&req(11), g, Some(record), Some(acted)),
            Err(Refusal::Skipped {
                previous_key: "p",
                acted_at_ms: 5
            })
        );
        let plan = begin_record(&req(1_005), g, Some(record), Some(acted)).unwrap();
        assert_eq!((plan.fencing_token, plan.lease_until_ms), (5, 1_105));
    }

    #[test]
    fn a_key_released_by_an_operator_takes_any_payload() {
        let mut r = req(0);
        r.fingerprint = "corrected".into();
        let released = Some(KeyView {
            fingerprint: None,
            phase: KeyPhase::Released,
            attempts: 2,
        });
        assert_eq!(
            begin_key(&r, false, released).map(|g| g.previous_attempts),
            Ok(0)
        );
        let resolve = |release| QueueOp::Resolve {
            by: "ana".into(),
            note: "fixed".into(),
            release,
        };
        let failed = |entry| Some((KeyStatus::Failed, Some(entry)));
        assert!(releases_key(&resolve(true), failed(4), 4));
        assert!(!releases_key(&resolve(false), failed(4), 4));
        assert!(!releases_key(&resolve(true), failed(5), 4));
        assert!(!releases_key(
            &resolve(true),
            Some((KeyStatus::Completed, None)),
            4
        ));
    }

    #[test]
    fn a_completion_sent_again_by_its_claim_converges() {
        let (ours, theirs) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(matches!(
            complete(Holder::Claimed(ours), ours, "k"),
            Ok(CompletePlan::Apply)
        ));
        assert!(matches!(
            complete(Holder::Completed(Some(ours), true), ours, "k"),
            Ok(CompletePlan::AlreadyDone)
        ));
        assert!(matches!(
            complete(Holder::Completed(Some(ours), false), ours, "k"),
            Err(StoreError::Conflict(_))
        ));
        for lost in [
            Holder::Claimed(theirs),
            Holder::Completed(Some(theirs), true),
            Holder::Completed(None, true),
            Holder::Other,
        ] {
            assert!(matches!(
                complete(lost, ours, "k"),
                Err(StoreError::ClaimLost { .. })
            ));
        }
    }

    #[test]
    fn logged_attempts_count_only_on_a_claimed_key_and_only_upwards() {
        assert_eq!(attempts_after_log(true, 1, 2), Some(2));
        assert_eq!(attempts_after_log(true, 3, 2), None);
        assert_eq!(attempts_after_log(false, 0, 2), None);
    }

    #[test]
    fn a_failure_plan_follows_the_queue_and_the_replay() {
        assert_eq!(fail(false, None), FailPlan::Release);
        assert_eq!(fail(true, None), FailPlan::Open);
        assert_eq!(fail(true, Some(3)), FailPlan::Refail { entry: 3 });
        assert_eq!(fail(false, Some(3)), FailPlan::Return { entry: 3 });
    }
}
