//! The TLS parameters of a connection string: libpq's `sslmode` and `sslrootcert`, which
//! tokio-postgres does not read, taken out of a `postgres://` URL or a `key=value` string.

use std::fmt;

use percent_encoding::percent_decode_str;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, plain text otherwise; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, and the certificate must chain to a trusted root; the host name is not checked.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres does before the handshake: the certificate check is the verifier's.
    pub(super) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// A connection string split into what tokio-postgres reads and the TLS parameters it does not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// The connection string without `sslmode` and `sslrootcert`.
    pub(crate) rest: String,
    pub(super) mode: Option<SslMode>,
    pub(super) root_cert: Option<String>,
}

impl UrlTls {
    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (`?sslmode=verify-full&...`) or a
    /// `key=value` string. The last value of a parameter given twice wins, as in tokio-postgres. Fails
    /// with the reason for an `sslmode` that is not one of libpq's five.
    pub(crate) fn split(url: &str) -> Result<UrlTls, String> {
        let mut found = UrlTls {
            rest: String::new(),
            mode: None,
            root_cert: None,
        };
        let after_scheme = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match after_scheme {
            Some(after) => found.split_url(url, after)?,
            None => found.split_key_values(url)?,
        }
        Ok(found)
    }

    fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "sslmode" => {
                self.mode = Some(SslMode::parse(value).ok_or_else(|| {
                    format!(
                        "unknown sslmode `{value}`: use disable, prefer, require, verify-ca or \
                         verify-full"
                    )
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                // An empty value is libpq's "not given".
                self.root_cert = (!value.is_empty()).then(|| value.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The query string starts at the first `?` after the credentials (tokio-postgres reads the
    /// credentials up to the first `@`, so a password may hold a `?`).
    fn split_url(&mut self, url: &str, after_scheme: &str) -> Result<(), String> {
        let scheme_len = url.len() - after_scheme.len();
        let credentials_end = after_scheme.find('@').map_or(0, |at| at + 1);
        let Some(question) = after_scheme[credentials_end..].find('?') else {
            self.rest = url.to_owned();
            return Ok(());
        };
        let query_start = scheme_len + credentials_end + question;
        let mut kept = Vec::new();
        for pair in url[query_start + 1..].split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(key), Ok(value)) = (
                percent_decode_str(key).decode_utf8(),
                percent_decode_str(value).decode_utf8(),
            ) else {
                // Not ours to judge: tokio-postgres reports what it cannot decode.
                kept.push(pair);
                continue;
            };
            if !self.take(&key, &value)? {
                kept.push(pair);
            }
        }
        self.rest = url[..query_start].to_owned();
        if !kept.is_empty() {
            self.rest.push('?');
            self.rest.push_str(&kept.join("&"));
        }
        Ok(())
    }

    /// `key=value` pairs separated by spaces, a value in single quotes or not, `\` escaping the next
    /// character: tokio-postgres's grammar. The other pairs are written back quoted; a string that
    /// does not follow the grammar is passed on whole, for tokio-postgres to report.
    fn split_key_values(&mut self, s: &str) -> Result<(), String> {
        let Some(pairs) = key_values(s) else {
            self.rest = s.to_owned();
            return Ok(());
        };
        let mut kept = Vec::new();
        for (key, value) in pairs {
            if !self.take(key, &value)? {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        self.rest = kept.join(" ");
        Ok(())
    }
}

/// The `key=value` pairs of `s`, or `None` where tokio-postgres's parser would fail.
fn key_values(s: &str) -> Option<Vec<(&str, String)>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c.is_whitespace() || c == '=')?;
        let key = &rest[..key_end];
        if key.is_empty() {
            return None;
        }
        rest = rest[key_end..].trim_start().strip_prefix('=')?.trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            None if quoted => return None,
            None => rest.len(),
        };
        if !quoted && value.is_empty() {
            return None;
        }
        pairs.push((key, value));
        rest = rest[end..].trim_start();
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> UrlTls {
        UrlTls::split(url).unwrap()
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept_in_order() {
        let found = split(
            "postgres://u:p@db.internal:5433/agents?application_name=a&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem&connect_timeout=3",
        );
        assert_eq!(
            found.rest,
            "postgres://u:p@db.internal:5433/agents?application_name=a&connect_timeout=3"
        );
        assert_eq!(found.mode, Some(SslMode::VerifyFull));
        assert_eq!(found.root_cert.as_deref(), Some("/etc/ca dir/root.pem"));
    }

    #[test]
    fn a_url_with_only_tls_parameters_loses_its_query_and_one_without_is_unchanged() {
        let found = split("postgresql://h/db?sslmode=require");
        assert_eq!(found.rest, "postgresql://h/db");
        assert_eq!(found.mode, Some(SslMode::Require));
        let plain = split("postgres://u@h/db");
        assert_eq!(plain.rest, "postgres://u@h/db");
        assert_eq!((plain.mode, plain.root_cert), (None, None));
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_query() {
        let found = split("postgres://u:pa?ss@h/db?sslmode=disable");
        assert_eq!(found.rest, "postgres://u:pa?ss@h/db");
        assert_eq!(found.mode, Some(SslMode::Disable));
    }

    #[test]
    fn the_last_sslmode_wins() {
        let found = split("postgres://h/db?sslmode=disable&sslmode=verify-ca");
        assert_eq!(found.mode, Some(SslMode::VerifyCa));
    }

    #[test]
    fn key_value_strings_are_split_and_requoted() {
        let found = split(
            "host=h user='o\\'brien' sslmode = verify-ca  sslrootcert='/a b/c.pem' password=x\\ y",
        );
        assert_eq!(found.rest, "host='h' user='o\\'brien' password='x y'");
        assert_eq!(found.mode, Some(SslMode::VerifyCa));
        assert_eq!(found.root_cert.as_deref(), Some("/a b/c.pem"));
        let config: tokio_postgres::Config = found.rest.parse().unwrap();
        assert_eq!(config.get_user(), Some("o'brien"));
        assert_eq!(config.get_password(), Some(&b"x y"[..]));
    }

    #[test]
    fn a_key_value_string_tokio_postgres_cannot_read_is_passed_on_whole() {
        let s = "host=h user='unterminated sslmode=require";
        let found = split(s);
        assert_eq!(found.rest, s);
        assert!(s.parse::<tokio_postgres::Config>().is_err());
    }

    #[test]
    fn an_unknown_sslmode_is_refused_naming_the_five() {
        for url in [
            "postgres://h/db?sslmode=verify_full",
            "host=h sslmode=allow-ish",
        ] {
            let err = UrlTls::split(url).unwrap_err();
            assert!(err.starts_with("unknown sslmode `"), "{err}");
            assert!(
                err.contains("disable, prefer, require, verify-ca or verify-full"),
                "{err}"
            );
        }
    }
}
