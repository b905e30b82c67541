//! The threads that own the connections: the writer, which applies the writes in batches, one
//! transaction and one commit per batch (group commit), the reader, and the checkpointer.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::apply;
use super::hot::{Hot, index_log};
use super::rows::Ctx;
use super::schema::Location;
use super::statements::Prepared;
use crate::log::{LogEntry, NewLogEntry};
use crate::store::{
    Begin, BeginRequest, Completion, Failure, Millis, QueueEntry, QueueUpdate, Renewal, StoreError,
};

/// The most requests the writer applies in one transaction.
const MAX_BATCH: usize = 1024;

/// How often the checkpointer copies the write-ahead log into the main file while writes go on.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// WAL size (pages) at which the writer checkpoints by itself, if the checkpointer falls behind.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 4000;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write request for the writer thread.
pub(crate) enum Write {
    Begin(Box<BeginRequest>, Reply<Begin>),
    /// With the JSON of the result and the canonical JSON of the log entry, built by the caller.
    Complete(Box<(Completion, String, String)>, Reply<LogEntry>),
    Fail(Box<Failure>, Reply<LogEntry>),
    Append(Box<NewLogEntry>, Reply<LogEntry>),
    Queue(Box<QueueUpdate>, Reply<QueueEntry>),
    Renew(Box<Renewal>, Reply<Millis>),
    Halt {
        run_id: Uuid,
        reason: String,
        now_ms: Millis,
        reply: Reply<bool>,
    },
}

pub(crate) type ReadFn = Box<dyn FnOnce(&Connection, &Location) + Send>;

pub(crate) enum Job {
    Write(Write),
    Read(ReadFn),
}

/// A write applied inside the batch, waiting for the commit before it is answered.
enum Applied {
    Begin(Reply<Begin>, Result<Begin, StoreError>),
    Log(Reply<LogEntry>, Box<Result<LogEntry, StoreError>>),
    Bool(Reply<bool>, Result<bool, StoreError>),
    Queue(Reply<QueueEntry>, Box<Result<QueueEntry, StoreError>>),
    Millis(Reply<Millis>, Result<Millis, StoreError>),
}

impl Applied {
    /// Whether the request failed (was refused or hit an error).
    fn failed(&self) -> bool {
        match self {
            Applied::Begin(_, r) => r.is_err(),
            Applied::Log(_, r) => r.is_err(),
            Applied::Bool(_, r) => r.is_err(),
            Applied::Queue(_, r) => r.is_err(),
            Applied::Millis(_, r) => r.is_err(),
        }
    }

    /// Answers the caller; a successful change whose commit failed becomes `error`.
    fn answer(self, commit: Option<&dyn Fn() -> StoreError>) {
        fn settle<T>(
            r: Result<T, StoreError>,
            commit: Option<&dyn Fn() -> StoreError>,
        ) -> Result<T, StoreError> {
            match (r, commit) {
                (Ok(_), Some(error)) => Err(error()),
                (r, _) => r,
            }
        }
        match self {
            Applied::Begin(tx, r) => {
                let _ = tx.send(settle(r, commit));
            }
            Applied::Log(tx, r) => {
                let _ = tx.send(settle(*r, commit));
            }
            Applied::Bool(tx, r) => {
                let _ = tx.send(settle(r, commit));
            }
            Applied::Queue(tx, r) => {
                let _ = tx.send(settle(*r, commit));
            }
            Applied::Millis(tx, r) => {
                let _ = tx.send(settle(r, commit));
            }
        }
    }
}

pub(crate) type Thread = std::thread::JoinHandle<Result<(), StoreError>>;

/// The threads owning the connections; each ends when its channel closes.
pub(crate) struct Threads {
    pub(crate) writer: Option<Thread>,
    pub(crate) reader: Option<Thread>,
}

pub(crate) fn spawn_writer(
    conn: Connection,
    at: Location,
    checkpointer: Option<(mpsc::Sender<()>, Thread)>,
) -> Result<(mpsc::Sender<Job>, Thread), StoreError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("actguard-writer".to_owned())
        .spawn(move || {
            let (checkpoints, checkpoint_thread) = checkpointer.unzip();
            writer_loop(&conn, &at, rx, checkpoints.as_ref());
            // Stop the checkpointer and wait for its connection to close, so that this one closes
            // last and removes the log.
            drop(checkpoints);
            let checkpointed = checkpoint_thread.map_or(Ok(()), |t| {
                t.join().unwrap_or_else(|_| {
                    Err(StoreError::Backend(
                        format!("the checkpointer of `{}` panicked", at.display).into(),
                    ))
                })
            });
            let closed = conn.close().map_err(|(_, e)| at.error(e));
            closed.and(checkpointed)
        })
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the store's writer thread: {e}").into())
        })?;
    Ok((tx, thread))
}

pub(crate) fn spawn_reader(
    conn: Connection,
    at: Location,
) -> Result<(mpsc::Sender<Job>, Thread), StoreError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("actguard-reader".to_owned())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                if let Job::Read(f) = job {
                    f(&conn, &at);
                }
            }
            conn.close().map_err(|(_, e)| at.error(e))
        })
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot start the store's reader thread: {e}").into())
        })?;
    Ok((tx, thread))
}

/// Copies the write-ahead log into the main file in the background (`PASSIVE`: never blocks the
/// writer or readers), at most once per [`CHECKPOINT_INTERVAL`] while commits arrive. The writer thus
/// spends its time on commits, not on copying pages and syncing the main file.
pub(crate) fn spawn_checkpointer(
    conn: Connection,
    at: Location,
) -> Result<(mpsc::Sender<()>, Thread), StoreError> {
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("actguard-ckpt".to_owned())
        .spawn(move || {
            'commits: while rx.recv().is_ok() {
                let due = std::time::Instant::now() + CHECKPOINT_INTERVAL;
                loop {
                    let left = due.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(()) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break 'commits,
                    }
                }
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(file = %at.display, error = %e, "background checkpoint failed");
                }
            }
            conn.close().map_err(|(_, e)| at.error(e))
        })
        .map_err(|e| {
            StoreError::Unavailable(
                format!("cannot start the store's checkpoint thread: {e}").into(),
            )
        })?;
    Ok((tx, thread))
}

/// The writer's view of the database between batches: the in-memory state ([`Hot`]) and the
/// `PRAGMA data_version` it was loaded at. Another connection's commit changes the version, so the
/// state is loaded again; a batch that is rolled back drops it.
struct WriterState<'c> {
    hot: Option<Hot>,
    data_version: i64,
    /// Prepared on the first batch (and again after a failure to prepare).
    prepared: Option<Prepared<'c>>,
}

/// Runs until every sender is gone (the store was dropped): drain, apply, commit once, answer.
fn writer_loop(
    conn: &Connection,
    at: &Location,
    rx: mpsc::Receiver<Job>,
    checkpoints: Option<&mpsc::Sender<()>>,
) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut reads = Vec::new();
    let mut state = WriterState {
        hot: None,
        data_version: 0,
        prepared: None,
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Write(w) => writes.push(w),
                Job::Read(f) => reads.push(f),
            }
            next = if writes.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !writes.is_empty() {
            apply_batch(conn, at, &mut state, writes.drain(..));
            if let Some(c) = checkpoints {
                let _ = c.send(());
            }
        }
        for f in reads.drain(..) {
            f(conn, at);
        }
    }
}

/// Runs `ROLLBACK` (rare: the frequent statements of a batch are in [`Prepared`]).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Starts the batch's transaction and makes sure the in-memory state matches the database.
fn start_batch<'s, 'c>(
    conn: &'c Connection,
    at: &Location,
    state: &'s mut WriterState<'c>,
) -> Result<(&'s mut Prepared<'c>, &'s mut Hot), StoreError> {
    if state.prepared.is_none() {
        state.prepared = Some(Prepared::new(conn, at)?);
    }
    let prepared = state.prepared.as_mut().expect("prepared above");
    prepared.begin_tx.execute([]).at(at)?;
    let checked = (|| {
        let version: i64 = prepared.data_version.query_row([], |r| r.get(0)).at(at)?;
        if state.hot.is_none() || version != state.data_version {
            state.hot = None;
            state.hot = Some(Hot::load(conn, at)?);
            state.data_version = version;
        }
        Ok(())
    })();
    if let Err(e) = checked {
        let _ = run(conn, "ROLLBACK");
        return Err(e);
    }
    Ok((
        state.prepared.as_mut().expect("prepared above"),
        state.hot.as_mut().expect("loaded above"),
    ))
}

/// One transaction for the whole batch, committed once.
///
/// Requests run without savepoints: every operation makes all its checks before its first change, so
/// a request that is refused (`ClaimLost`, a busy record, …) has changed nothing and the others stay.
/// A request that fails after changing a row (an I/O error, a full disk) leaves the transaction with a
/// part of it: that poisons the batch, which is then rolled back as a whole.
fn apply_batch<'c>(
    conn: &'c Connection,
    at: &Location,
    state: &mut WriterState<'c>,
    writes: impl Iterator<Item = Write>,
) {
    let (s, hot) = match start_batch(conn, at, state) {
        Ok(started) => started,
        Err(e) => {
            let error = clone_error(&e);
            for w in writes {
                refuse(w, error());
            }
            return;
        }
    };
    // Set when a request failed after changing rows, or SQLite rolled the whole transaction back by
    // itself (it does on I/O errors and a full disk): the transaction's content is then not what the
    // answers would say, so nothing of the batch may be committed.
    let mut poisoned = false;
    let mut applied = Vec::with_capacity(MAX_BATCH);
    let mut unapplied = Vec::new();
    for w in writes {
        if poisoned {
            unapplied.push(w);
            continue;
        }
        let changes = conn.total_changes();
        let a = apply_one(conn, at, s, hot, w);
        if (a.failed() && conn.total_changes() != changes) || conn.is_autocommit() {
            poisoned = true;
        }
        applied.push(a);
    }
    if !poisoned && hot.index_due() {
        // Part of this batch's transaction: if it fails, the index and the log would disagree.
        if let Err(e) = index_log(conn, at, hot) {
            tracing::warn!(file = %at.display, error = %e, "indexing the log failed");
            poisoned = true;
        }
    }
    let failed = if poisoned {
        let _ = run(conn, "ROLLBACK");
        Some(StoreError::Unavailable(format!(
            "a write to `{}` failed part-way, so its whole transaction was rolled back: check the \
             file system, then retry",
            at.display
        ).into()))
    } else {
        s.commit.execute([]).err().map(|e| {
            let _ = run(conn, "ROLLBACK");
            at.error(e)
        })
    };
    match failed {
        None => applied.into_iter().for_each(|a| a.answer(None)),
        Some(e) => {
            // What the writer holds in memory may include the rolled-back changes.
            state.hot = None;
            let error = clone_error(&e);
            applied.into_iter().for_each(|a| a.answer(Some(&error)));
            unapplied.into_iter().for_each(|w| refuse(w, error()));
        }
    }
}

/// A maker of copies of `e`, one for each request of a failed batch.
fn clone_error(e: &StoreError) -> impl Fn() -> StoreError + '_ {
    move || match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Backend(other.to_string().into()),
    }
}

fn refuse(w: Write, e: StoreError) {
    match w {
        Write::Begin(_, tx) => {
            let _ = tx.send(Err(e));
        }
        Write::Complete(_, tx) | Write::Fail(_, tx) | Write::Append(_, tx) => {
            let _ = tx.send(Err(e));
        }
        Write::Halt { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Write::Queue(_, tx) => {
            let _ = tx.send(Err(e));
        }
        Write::Renew(_, tx) => {
            let _ = tx.send(Err(e));
        }
    }
}

fn apply_one(
    conn: &Connection,
    at: &Location,
    s: &mut Prepared<'_>,
    hot: &mut Hot,
    w: Write,
) -> Applied {
    match w {
        Write::Begin(r, tx) => {
            Applied::Begin(tx, apply::begin(conn, at, s, hot, &r, r.payload.as_str()))
        }
        Write::Complete(d, tx) => {
            let (completion, result, entry) = *d;
            Applied::Log(
                tx,
                Box::new(apply::complete(
                    conn, at, s, hot, completion, &result, entry,
                )),
            )
        }
        Write::Fail(f, tx) => Applied::Log(tx, Box::new(apply::fail(conn, at, s, hot, *f))),
        Write::Append(e, tx) => Applied::Log(tx, Box::new(apply::append(at, s, hot, *e))),
        Write::Queue(u, tx) => {
            Applied::Queue(tx, Box::new(apply::queue_update(conn, at, s, hot, &u)))
        }
        Write::Renew(r, tx) => Applied::Millis(tx, apply::renew(at, s, &r)),
        Write::Halt {
            run_id,
            reason,
            now_ms,
            reply,
        } => Applied::Bool(reply, apply::halt(conn, at, hot, run_id, &reason, now_ms)),
    }
}
