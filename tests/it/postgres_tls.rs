//! TLS between `PostgresStore` and its server: what each `sslmode` encrypts and checks, and the errors a
//! user can act on (a server without TLS, a certificate no trusted root signed, a certificate for
//! another host, an unreadable `sslrootcert`, an unknown `sslmode`).
//!
//! The test server runs with `ssl = on`. Fronts of the tests' own stand before it on ports of their
//! own and relay to it, answering the SSLRequest themselves: `N`, as a server without TLS does; `S`
//! and a handshake with a certificate from a CA the test made; or `S` and a closed connection.

use crate::support::pg_support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actguard::store::Begin;
use actguard::{PostgresStore, Store, StoreError};
use pg_support::{Schema, connect, fresh_schema_name, url};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::Host;

/// The test server: where it listens, and who connects.
struct Target {
    host: String,
    addr: SocketAddr,
    user: String,
    password: Option<String>,
    database: String,
}

async fn target() -> Target {
    let config: tokio_postgres::Config = url().parse().expect("the test URL parses");
    let Some(Host::Tcp(host)) = config.get_hosts().first().cloned() else {
        panic!("the TLS tests need a server reached over TCP: {}", url());
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap_or_else(|e| panic!("{}", pg_support::no_server(&e.to_string())))
        .next()
        .expect("the test server's host has an address");
    let user = config.get_user().unwrap_or("postgres").to_owned();
    Target {
        host,
        addr,
        password: config
            .get_password()
            .map(|p| String::from_utf8(p.to_vec()).expect("a UTF-8 password")),
        database: config.get_dbname().unwrap_or(&user).to_owned(),
        user,
    }
}

impl Target {
    /// A URL to `host:port` with `params`.
    fn url(&self, host: &str, port: u16, params: &str) -> String {
        let password = self
            .password
            .as_ref()
            .map_or_else(String::new, |p| format!(":{p}"));
        format!(
            "postgres://{}{password}@{host}:{port}/{}?{params}",
            self.user, self.database
        )
    }

    /// A URL to the test server under its own host name.
    fn direct(&self, params: &str) -> String {
        self.url(&self.host, self.addr.port(), params)
    }

    /// A URL that names `host` (the name a certificate is checked against) and connects to `addr`.
    fn named(&self, host: &str, addr: SocketAddr, params: &str) -> String {
        let ip = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => ip.to_string(),
        };
        self.url(host, addr.port(), &format!("hostaddr={ip}&{params}"))
    }

    /// The file of the test server's own certificate (`ssl_cert_file`).
    async fn certificate_file(&self) -> PathBuf {
        let client = connect(&url()).await;
        let show = |setting: &'static str| {
            let client = &client;
            async move {
                client
                    .query_one(&format!("SHOW {setting}"), &[])
                    .await
                    .unwrap()
                    .get::<_, String>(0)
            }
        };
        let file = PathBuf::from(show("ssl_cert_file").await);
        if file.is_absolute() {
            file
        } else {
            Path::new(&show("data_directory").await).join(file)
        }
    }
}

/// A store in a fresh schema, with one connection.
async fn store_at(url: &str) -> Result<(PostgresStore, Schema), StoreError> {
    store_with(PostgresStore::options(), url).await
}

async fn store_with(
    options: actguard::PostgresOptions,
    url: &str,
) -> Result<(PostgresStore, Schema), StoreError> {
    let name = fresh_schema_name();
    let store = options
        .schema(name.clone())
        .max_connections(1)
        .connect(url)
        .await?;
    Ok((
        store,
        Schema {
            url: pg_support::url(),
            name,
        },
    ))
}

/// An `application_name` no other test uses.
fn app() -> String {
    format!("tls_{}", &fresh_schema_name()[14..])
}

/// Whether each server connection named `app` is encrypted, as the server sees it.
async fn encrypted(app: &str) -> Vec<bool> {
    connect(&url())
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The store claims a fresh key: its connection works.
async fn claims(store: &PostgresStore) {
    let request = actguard_tests::begin_request("ship", "k1", "rec-k1", 1_700_000_000_000);
    let begin = store.begin(&request).await.expect("the store works");
    assert!(matches!(begin, Begin::Claimed(_)), "{begin:?}");
}

fn unavailable(result: Result<(PostgresStore, Schema), StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable(msg)) => msg.to_string(),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected the connection to be refused"),
    }
}

/// A CA of the test's own, and its certificate in a PEM file.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    file: tempfile::NamedTempFile,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(issuer.pem().as_bytes()).unwrap();
        Ca { issuer, file }
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    /// A TLS server configuration with a certificate this CA issued for `host`.
    fn server_for(&self, host: &str) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        server_config(cert.der().clone(), &key)
    }
}

/// A server certificate for `host` that signed itself and is marked as a CA, as `openssl req -x509`
/// makes one (PostgreSQL's documentation has servers use such a certificate, which clients trust as
/// its own root): a TLS server configuration with it, and the certificate in a PEM file.
fn self_signed_ca_server(host: &str) -> (Arc<rustls::ServerConfig>, tempfile::NamedTempFile) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, host);
    let cert = params.self_signed(&key).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(cert.pem().as_bytes()).unwrap();
    (server_config(cert.der().clone(), &key), file)
}

fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: &KeyPair,
) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    .unwrap();
    Arc::new(config)
}

/// An SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How a front answers an SSLRequest.
#[derive(Clone)]
enum Answer {
    /// `N`, as a server without TLS.
    NoTls,
    /// `S`, then a handshake under this configuration.
    Tls(Arc<rustls::ServerConfig>),
    /// `S`, then the connection is closed: the handshake fails.
    BrokenTls,
}

/// A front on a port of its own that relays every connection to the test server, which sees a plain
/// connection. It answers an SSLRequest itself, as `answer` says. It stops with the test's runtime.
async fn front(target: &Target, answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = target.addr;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                if client.read_exact(&mut first).await.is_err() {
                    return;
                }
                let mut server = TcpStream::connect(upstream).await.unwrap();
                if first != SSL_REQUEST {
                    server.write_all(&first).await.unwrap();
                    let _ = copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                match answer {
                    Answer::NoTls => {
                        client.write_all(b"N").await.unwrap();
                        let _ = copy_bidirectional(&mut client, &mut server).await;
                    }
                    Answer::BrokenTls => client.write_all(b"S").await.unwrap(),
                    Answer::Tls(config) => {
                        client.write_all(b"S").await.unwrap();
                        let accepted = tokio_rustls::TlsAcceptor::from(config).accept(client).await;
                        if let Ok(mut tls) = accepted {
                            let _ = copy_bidirectional(&mut tls, &mut server).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn require_encrypts_the_connection() {
    let target = target().await;
    let app = app();
    let (store, _schema) =
        store_at(&target.direct(&format!("sslmode=require&application_name={app}")))
            .await
            .unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [true]);
}

#[tokio::test]
async fn without_sslmode_tls_is_used_when_the_server_offers_it() {
    let target = target().await;
    let app = app();
    let (store, _schema) = store_at(&target.direct(&format!("application_name={app}")))
        .await
        .unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [true]);
}

#[tokio::test]
async fn disable_connects_in_plain_text() {
    let target = target().await;
    let app = app();
    let (store, _schema) =
        store_at(&target.direct(&format!("sslmode=disable&application_name={app}")))
            .await
            .unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [false]);
}

#[tokio::test]
async fn verify_ca_trusts_a_self_signed_server_certificate_given_as_root_whatever_the_host_name() {
    let target = target().await;
    let cert = target.certificate_file().await;
    let app = app();
    // A host name no certificate names: verify-ca checks the chain only.
    let url = target.named(
        "not-in-the-certificate.actguard.test",
        target.addr,
        &format!(
            "sslmode=verify-ca&sslrootcert={}&application_name={app}",
            cert.display()
        ),
    );
    let (store, _schema) = store_at(&url).await.unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [true]);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_that_does_not_name_the_host() {
    let target = target().await;
    let cert = target.certificate_file().await;
    let url = target.named(
        "not-in-the-certificate.actguard.test",
        target.addr,
        &format!("sslmode=verify-full&sslrootcert={}", cert.display()),
    );
    let msg = unavailable(store_at(&url).await);
    assert!(
        msg.contains(
            "the server's certificate is not valid for host `not-in-the-certificate.actguard.test`"
        ),
        "{msg}"
    );
    assert!(msg.contains("sslmode=verify-ca"), "{msg}");
    assert!(
        msg.contains(&format!(
            "PostgreSQL at not-in-the-certificate.actguard.test:{}",
            target.addr.port()
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_certificate_another_ca_signed_is_not_trusted() {
    let target = target().await;
    let other = Ca::new("actguard test: not the server's CA");
    // `require` with a CA file checks the chain too, as libpq does.
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = target.direct(&format!(
            "sslmode={mode}&sslrootcert={}",
            other.path().display()
        ));
        let msg = unavailable(store_at(&url).await);
        assert!(
            msg.contains(&format!(
                "the server's certificate is not trusted by sslrootcert={}",
                other.path().display()
            )),
            "{mode}: {msg}"
        );
        assert!(
            msg.contains(
                "check that sslrootcert names the CA that signed the server's certificate"
            ),
            "{mode}: {msg}"
        );
        assert!(
            msg.contains(&format!("PostgreSQL at {}", target.host)),
            "{mode}: {msg}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_sslrootcert_is_named() {
    let target = target().await;
    let msg = unavailable(
        store_at(&target.direct("sslmode=verify-full&sslrootcert=/nonexistent/actguard/root.pem"))
            .await,
    );
    assert!(
        msg.contains("cannot read sslrootcert=/nonexistent/actguard/root.pem"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("PostgreSQL at {}", target.host)),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unknown_sslmode_is_refused_naming_the_known_ones() {
    let msg =
        unavailable(store_at("postgres://u:hunter2@127.0.0.1:5432/test?sslmode=verify").await);
    assert!(msg.contains("unknown sslmode `verify`"), "{msg}");
    assert!(
        msg.contains("use disable, prefer, require, verify-ca or verify-full"),
        "{msg}"
    );
    assert!(msg.contains("ACTGUARD_PG_URL"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn require_and_verify_fail_when_the_server_does_not_accept_tls() {
    let target = target().await;
    let no_tls = front(&target, Answer::NoTls).await;
    let ca = Ca::new("actguard test CA");
    for params in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full&sslrootcert={}", ca.path().display()),
    ] {
        let url = target.named("localhost", no_tls, &params);
        let msg = unavailable(store_at(&url).await);
        let mode = params.split('&').next().unwrap();
        assert!(
            msg.contains(&format!(
                "the server does not accept TLS connections, and {mode} allows no other"
            )),
            "{msg}"
        );
        assert!(msg.contains("enable ssl on the server"), "{msg}");
        assert!(
            msg.contains(&format!("PostgreSQL at localhost:{}", no_tls.port())),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn without_sslmode_a_server_without_tls_is_used_in_plain_text() {
    let target = target().await;
    let no_tls = front(&target, Answer::NoTls).await;
    let app = app();
    let (store, _schema) =
        store_at(&target.named("localhost", no_tls, &format!("application_name={app}")))
            .await
            .unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [false]);
}

#[tokio::test]
async fn verify_full_connects_when_a_trusted_ca_issued_the_certificate_for_the_host() {
    let target = target().await;
    let ca = Ca::new("actguard test CA");
    let tls = front(&target, Answer::Tls(ca.server_for("db.actguard.test"))).await;
    let url = target.named(
        "db.actguard.test",
        tls,
        &format!("sslmode=verify-full&sslrootcert={}", ca.path().display()),
    );
    let (store, _schema) = store_at(&url).await.unwrap();
    claims(&store).await;
}

#[tokio::test]
async fn a_ca_file_given_in_the_options_is_checked_as_verify_full() {
    let target = target().await;
    let ca = Ca::new("actguard test CA");
    let tls = front(&target, Answer::Tls(ca.server_for("db.actguard.test"))).await;
    let options = || PostgresStore::options().ssl_root_cert(ca.path());
    let url = target.named("db.actguard.test", tls, "");
    let (store, _schema) = store_with(options(), &url).await.unwrap();
    claims(&store).await;
    // Without sslmode in the URL the host name is checked, and a refusal is not followed by plain text.
    let url = target.named("other.actguard.test", tls, "");
    let msg = unavailable(store_with(options(), &url).await);
    assert!(
        msg.contains("the server's certificate is not valid for host `other.actguard.test`"),
        "{msg}"
    );
    // The URL's sslmode is kept.
    let url = target.named("other.actguard.test", tls, "sslmode=verify-ca");
    let (store, _schema) = store_with(options(), &url).await.unwrap();
    claims(&store).await;
}

#[tokio::test]
async fn the_host_name_is_checked_by_verify_full_only() {
    let target = target().await;
    let ca = Ca::new("actguard test CA");
    let tls = front(&target, Answer::Tls(ca.server_for("db.actguard.test"))).await;
    let root = format!("sslrootcert={}", ca.path().display());
    let url = target.named(
        "other.actguard.test",
        tls,
        &format!("sslmode=verify-full&{root}"),
    );
    let msg = unavailable(store_at(&url).await);
    assert!(
        msg.contains("the server's certificate is not valid for host `other.actguard.test`"),
        "{msg}"
    );
    let url = target.named(
        "other.actguard.test",
        tls,
        &format!("sslmode=verify-ca&{root}"),
    );
    let (store, _schema) = store_at(&url).await.unwrap();
    claims(&store).await;
}

#[tokio::test]
async fn require_accepts_a_certificate_no_trusted_root_signed() {
    let target = target().await;
    let ca = Ca::new("actguard test CA trusted by nobody");
    let tls = front(&target, Answer::Tls(ca.server_for("db.actguard.test"))).await;
    let (store, _schema) = store_at(&target.named("db.actguard.test", tls, "sslmode=require"))
        .await
        .unwrap();
    claims(&store).await;
}

#[tokio::test]
async fn verify_full_without_sslrootcert_checks_the_platforms_roots() {
    let target = target().await;
    let ca = Ca::new("actguard test CA not installed on this machine");
    let tls = front(&target, Answer::Tls(ca.server_for("db.actguard.test"))).await;
    for mode in ["verify-full", "verify-ca"] {
        let url = target.named("db.actguard.test", tls, &format!("sslmode={mode}"));
        let msg = unavailable(store_at(&url).await);
        assert!(
            msg.contains(
                "the server's certificate is not trusted by this machine's trusted root certificates"
            ),
            "{mode}: {msg}"
        );
        assert!(msg.contains("as sslrootcert=PATH"), "{mode}: {msg}");
    }
}

#[tokio::test]
async fn a_self_signed_server_certificate_marked_as_a_ca_is_trusted_when_given_as_root() {
    let target = target().await;
    let (server, cert) = self_signed_ca_server("db.actguard.test");
    let tls = front(&target, Answer::Tls(server)).await;
    let root = format!("sslrootcert={}", cert.path().display());
    let url = target.named(
        "db.actguard.test",
        tls,
        &format!("sslmode=verify-full&{root}"),
    );
    let (store, _schema) = store_at(&url).await.unwrap();
    claims(&store).await;
    // Its host name is still checked.
    let url = target.named(
        "other.actguard.test",
        tls,
        &format!("sslmode=verify-full&{root}"),
    );
    let msg = unavailable(store_at(&url).await);
    assert!(
        msg.contains("the server's certificate is not valid for host `other.actguard.test`"),
        "{msg}"
    );
    // Another certificate of the same kind, for the same name, is not trusted.
    let (_, another) = self_signed_ca_server("db.actguard.test");
    let url = target.named(
        "db.actguard.test",
        tls,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            another.path().display()
        ),
    );
    let msg = unavailable(store_at(&url).await);
    assert!(
        msg.contains(&format!(
            "the server's certificate is not trusted by sslrootcert={}",
            another.path().display()
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn without_sslmode_a_failed_handshake_is_followed_by_plain_text() {
    let target = target().await;
    let broken = front(&target, Answer::BrokenTls).await;
    let app = app();
    let url = target.named("localhost", broken, &format!("application_name={app}"));
    let (store, _schema) = store_at(&url).await.unwrap();
    claims(&store).await;
    assert_eq!(encrypted(&app).await, [false]);
    // `require` never falls back.
    let msg = unavailable(store_at(&target.named("localhost", broken, "sslmode=require")).await);
    assert!(msg.contains("the TLS handshake failed"), "{msg}");
    assert!(
        msg.contains(&format!("PostgreSQL at localhost:{}", broken.port())),
        "{msg}"
    );
}
