//! Running SQL: the statements each connection prepares once, the [`Db`] that qualifies (`@.` in a
//! statement stands for the store's schema), prepares and runs them, the end of a transaction, and
//! the filters of the list queries.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row, Transaction};

use super::schema::qualify;
use super::server::Server;
use crate::store::StoreError;

pub(super) type Param<'a> = &'a (dyn ToSql + Sync);

/// The statements a connection has prepared, by their unqualified text: each is prepared once per
/// connection, so an operation costs its statements' round trips and no more. The set is bounded:
/// the store's fixed statements and the combinations of the log query's filters.
#[derive(Default)]
pub(crate) struct Statements(Mutex<HashMap<String, tokio_postgres::Statement>>);

impl Statements {
    fn get(&self, sql: &str) -> Option<tokio_postgres::Statement> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .cloned()
    }

    fn put(&self, sql: &str, statement: tokio_postgres::Statement) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql.to_owned(), statement);
    }

    /// How many statements this connection has prepared.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The server and schema a statement runs against, and the connection's prepared statements:
/// qualifies and prepares statements, maps errors.
#[derive(Clone, Copy)]
pub(super) struct Db<'a> {
    pub(super) server: &'a Server,
    pub(super) schema: &'a str,
    pub(super) statements: &'a Statements,
}

impl Db<'_> {
    pub(super) fn error(&self, e: tokio_postgres::Error) -> StoreError {
        self.server.error(e)
    }

    pub(super) async fn prepare<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement);
        }
        let statement = c
            .prepare(&qualify(sql, self.schema))
            .await
            .map_err(|e| self.error(e))?;
        self.statements.put(sql, statement.clone());
        Ok(statement)
    }

    pub(super) async fn opt<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query_opt(&stmt, params).await.map_err(|e| self.error(e))
    }

    pub(super) async fn one<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query_one(&stmt, params).await.map_err(|e| self.error(e))
    }

    pub(super) async fn all<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.query(&stmt, params).await.map_err(|e| self.error(e))
    }

    pub(super) async fn exec<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        let stmt = self.prepare(c, sql).await?;
        c.execute(&stmt, params).await.map_err(|e| self.error(e))
    }
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Ends `tx`: commits if `result` is a change to keep, otherwise rolls back at once (rather than when
/// the connection is next used), so no lock outlives the operation.
pub(super) async fn finish<T>(
    db: Db<'_>,
    tx: Transaction<'_>,
    result: Result<T, StoreError>,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T, StoreError> {
    match result {
        Ok(v) if keep(&v) => {
            tx.commit().await.map_err(|e| db.error(e))?;
            Ok(v)
        }
        Ok(v) => {
            tx.rollback().await.map_err(|e| db.error(e))?;
            Ok(v)
        }
        Err(e) => {
            // The operation's own error says more than a failed rollback would.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// A filter's value: the columns compared are text or bigint.
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

impl Arg {
    fn as_param(&self) -> Param<'_> {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }
}

/// Collects `AND <clause> $n` filters.
pub(super) struct Filters {
    pub(super) sql: String,
    args: Vec<Arg>,
}

impl Filters {
    pub(super) fn new(select: &str) -> Filters {
        Filters {
            sql: format!("{select} WHERE TRUE"),
            args: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, clause: &str, v: Arg) {
        self.args.push(v);
        self.sql
            .push_str(&format!(" AND {clause} ${}", self.args.len()));
    }

    pub(super) fn params(&self) -> Vec<Param<'_>> {
        self.args.iter().map(Arg::as_param).collect()
    }
}
