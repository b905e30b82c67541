//! Where the store connects, for messages: the server's name (never the password), and the driver's
//! errors as [`StoreError`]s that name the server and say what to check.

use std::fmt;

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::{PostgresStore, tls};
use crate::store::StoreError;

/// Where the store connects, for messages: `host:port`, database and user, never the password.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    hosts: String,
    database: String,
    user: String,
    tls: tls::Settings,
}

impl Server {
    pub(super) fn of(config: &tokio_postgres::Config, tls: tls::Settings) -> Server {
        let ports = config.get_ports();
        let hosts = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect::<Vec<_>>();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        let user = config.get_user().unwrap_or("(default user)").to_owned();
        let database = config
            .get_dbname()
            .map_or_else(|| user.clone(), str::to_owned);
        Server {
            hosts,
            database,
            user,
            tls,
        }
    }

    /// Turns a driver error into a [`StoreError`] whose message names the server and says what to do.
    pub(crate) fn error(&self, e: tokio_postgres::Error) -> StoreError {
        let described = self.describe(&e);
        described.with_source(e)
    }

    /// What a driver error means for this server, and what to do about it.
    fn describe(&self, e: &tokio_postgres::Error) -> StoreError {
        let check = PostgresStore::URL_ENV;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            let msg = db.message();
            return if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                StoreError::Unavailable(format!(
                    "{self} refused the credentials of user `{}` ({msg}): check the user and password \
                     in the connection URL ({check})",
                    self.user
                ).into())
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                StoreError::Unavailable(format!(
                    "{self}: database `{}` does not exist ({msg}): create it, or name another database \
                     in the connection URL ({check})",
                    self.database
                ).into())
            } else if *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
            {
                StoreError::Unavailable(format!("{self} is not accepting work ({msg})").into())
            } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                StoreError::Unavailable(format!(
                    "{self}: user `{}` may not use the store's tables ({msg}): grant it the privileges \
                     on the schema",
                    self.user
                ).into())
            } else {
                StoreError::Backend(format!("{self}: {msg} (SQLSTATE {})", code.code()).into())
            };
        }
        if let Some(reason) = tls::describe(e, &self.tls) {
            return StoreError::Unavailable(format!("{self}: {reason}").into());
        }
        let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
        if e.is_closed() {
            StoreError::Unavailable(format!(
                "the connection to {self} was closed ({cause}): check that the server is running"
            ).into())
        } else {
            StoreError::Unavailable(format!(
                "cannot reach {self} ({e}: {cause}): check that the server is running and that the \
                 connection URL ({check}) names its host and port"
            ).into())
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgreSQL at {} (database `{}`, user `{}`)",
            self.hosts, self.database, self.user
        )
    }
}

/// A connection URL whose TLS parameters cannot be used, and why.
pub(super) fn bad_url(url: &str, reason: &str) -> StoreError {
    StoreError::Unavailable(
        format!(
            "`{}`: {reason} (check {})",
            redact(url),
            PostgresStore::URL_ENV
        )
        .into(),
    )
}

/// `url` without its password, for messages.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
