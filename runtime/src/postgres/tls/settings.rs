//! The TLS a store's connections use, decided once from the URL's parameters and the options: the
//! `sslmode`, and whose certificates the server's must chain to.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

use super::url::{SslMode, UrlTls};

/// Whose certificates the server's must chain to.
#[derive(Debug, Clone)]
pub(crate) enum Roots {
    /// Not checked (`prefer` and `require` without `sslrootcert`, and `disable`).
    Unchecked,
    /// The platform's trusted roots (`sslrootcert=system`, or `verify-*` without `sslrootcert`).
    Platform,
    /// The PEM file named by `sslrootcert`.
    File(PathBuf),
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Unchecked => f.write_str("no trusted roots"),
            Roots::Platform => f.write_str("this machine's trusted root certificates"),
            Roots::File(path) => write!(f, "sslrootcert={}", path.display()),
        }
    }
}

/// The TLS a store's connections use, decided once from the URL and the options.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
}

impl Settings {
    /// Decides the TLS of `config` from the URL's parameters and the options' CA file (the URL's
    /// `sslrootcert` wins), and sets tokio-postgres's `sslmode` to match. Without `sslmode` in the URL,
    /// the mode is libpq's default, `prefer`, except `verify-full` for `sslrootcert=system` (as libpq)
    /// and for a CA file given in the options (code that names a CA means it to be checked, never to
    /// fall back to plain text). Fails with the reason when the two cannot go together.
    pub(crate) fn resolve(
        url: &UrlTls,
        option_root_cert: Option<&Path>,
        config: &mut tokio_postgres::Config,
    ) -> Result<Settings, String> {
        let root_cert = url.root_cert.as_deref().map(Path::new).or(option_root_cert);
        let system = root_cert.is_some_and(|p| p == Path::new("system"));
        let from_options = url.root_cert.is_none() && option_root_cert.is_some();
        let mode = url.mode.unwrap_or(if system || from_options {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        });
        if system && mode != SslMode::VerifyFull && mode != SslMode::Disable {
            return Err(format!(
                "sslmode={mode} may not be used with sslrootcert=system: use sslmode=verify-full, \
                 the only mode that checks the server against the platform's roots by name"
            ));
        }
        let roots = match (mode, root_cert) {
            (SslMode::Disable, _) => Roots::Unchecked,
            (_, Some(_)) if system => Roots::Platform,
            // As libpq: a CA file given to `prefer` or `require` is used to check the chain.
            (_, Some(path)) => Roots::File(path.to_owned()),
            (SslMode::Prefer | SslMode::Require, None) => Roots::Unchecked,
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Roots::Platform,
        };
        // PostgreSQL has no TLS over a Unix socket: libpq ignores sslmode there, and so does this.
        let only_local_sockets = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        config.ssl_mode(if only_local_sockets {
            tokio_postgres::config::SslMode::Disable
        } else {
            mode.driver_mode()
        });
        // With `hostaddr` alone tokio-postgres has no name for the handshake; libpq then uses the
        // address, and so does this (a `verify-full` certificate must name that address).
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        Ok(Settings { mode, roots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        url: &str,
        option: Option<&str>,
    ) -> Result<(Settings, tokio_postgres::Config), String> {
        let split = UrlTls::split(url)?;
        let mut config: tokio_postgres::Config = split.rest.parse().unwrap();
        let settings = Settings::resolve(&split, option.map(Path::new), &mut config)?;
        Ok((settings, config))
    }

    #[test]
    fn modes_choose_the_check_and_the_driver_mode() {
        use tokio_postgres::config::SslMode as Driver;
        let cases = [
            (
                "postgres://h/db",
                SslMode::Prefer,
                "no trusted roots",
                Driver::Prefer,
            ),
            (
                "postgres://h/db?sslmode=disable&sslrootcert=/ca.pem",
                SslMode::Disable,
                "no trusted roots",
                Driver::Disable,
            ),
            (
                "postgres://h/db?sslmode=require",
                SslMode::Require,
                "no trusted roots",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=require&sslrootcert=/ca.pem",
                SslMode::Require,
                "sslrootcert=/ca.pem",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                "this machine's trusted root certificates",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem",
                SslMode::VerifyFull,
                "sslrootcert=/ca.pem",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslrootcert=system",
                SslMode::VerifyFull,
                "this machine's trusted root certificates",
                Driver::Require,
            ),
        ];
        for (url, mode, roots, driver) in cases {
            let (settings, config) = resolve(url, None).unwrap();
            assert_eq!(settings.mode, mode, "{url}");
            assert_eq!(settings.roots.to_string(), roots, "{url}");
            assert_eq!(config.get_ssl_mode(), driver, "{url}");
        }
    }

    #[test]
    fn the_urls_sslrootcert_wins_over_the_options() {
        let (settings, _) = resolve("postgres://h/db?sslmode=verify-ca", Some("/opt.pem")).unwrap();
        assert_eq!(settings.roots.to_string(), "sslrootcert=/opt.pem");
        assert_eq!(settings.mode, SslMode::VerifyCa);
        // A CA file in the options makes the default verify-full; one in the URL leaves it prefer.
        let (settings, _) = resolve("postgres://h/db", Some("/opt.pem")).unwrap();
        assert_eq!(settings.mode, SslMode::VerifyFull);
        let (settings, _) =
            resolve("postgres://h/db?sslrootcert=/url.pem", Some("/opt.pem")).unwrap();
        assert_eq!(settings.mode, SslMode::Prefer);
        assert_eq!(settings.roots.to_string(), "sslrootcert=/url.pem");
        let (settings, _) = resolve(
            "postgres://h/db?sslmode=verify-ca&sslrootcert=/url.pem",
            Some("/opt.pem"),
        )
        .unwrap();
        assert_eq!(settings.roots.to_string(), "sslrootcert=/url.pem");
    }

    #[test]
    fn sslrootcert_system_needs_verify_full() {
        let err = resolve("postgres://h/db?sslmode=require&sslrootcert=system", None).unwrap_err();
        assert!(
            err.contains("sslmode=require may not be used with sslrootcert=system"),
            "{err}"
        );
        let err =
            resolve("postgres://h/db?sslmode=verify-ca&sslrootcert=system", None).unwrap_err();
        assert!(err.contains("use sslmode=verify-full"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn unix_sockets_never_use_tls() {
        use tokio_postgres::config::SslMode as Driver;
        let (settings, config) =
            resolve("host=/var/run/postgresql sslmode=verify-full", None).unwrap();
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(config.get_ssl_mode(), Driver::Disable);
    }

    #[test]
    fn hostaddr_alone_names_the_handshake() {
        let (_, config) = resolve("hostaddr=127.0.0.1 sslmode=require", None).unwrap();
        assert_eq!(config.get_hosts(), [Host::Tcp("127.0.0.1".to_owned())]);
    }
}
