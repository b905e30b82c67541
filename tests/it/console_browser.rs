//! The review console in a real browser: headless Chromium (through chromedriver) logs in over the
//! incidents demo's store, opens the owner queue, resolves an entry through its form; the log, read
//! through the library, then holds the operator entry with the person's name.
//!
//! With `ACTGUARD_UPDATE_SCREENSHOT=1` it also writes the queue page's screenshot to
//! `docs/console-queues.png` (the one the README shows).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actguard::store::{QueueKind, QueueQuery, QueueStatus};
use actguard::{Agent, LogQuery, Outcome, SqliteStore, Store};
use actguard_cli::console::{Access, Console};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const TOKEN: &str = "browser-test-console-token";

/// The incidents demo run in `dir`: its store is `dir/actguard.db`.
fn incidents_store(dir: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--example",
            "incidents",
            "-p",
            "actguard-examples",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(dir)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "the incidents demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("actguard.db")
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (Debian: chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(store: Arc<dyn Store>) -> SocketAddr {
    let agent = Agent::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let access = Access::Token {
        token: TOKEN.to_owned(),
        user_header: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Console::new(store, agent, access).router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_resolves_an_owner_entry_in_the_browser_and_the_log_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = incidents_store(dir.path());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_existing(&path).unwrap());
    let open_owner = store
        .queue_entries(&QueueQuery {
            kind: Some(QueueKind::Owner),
            status: Some(QueueStatus::Open),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    let entry = open_owner
        .first()
        .expect("the demo leaves an open owner entry")
        .id;
    let addr = serve(store.clone()).await;

    let driver = Driver::start();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,800"
            ]
        }),
    );
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session");
    let base = format!("http://{addr}");

    // Every page asks for the token first.
    browser.goto(&format!("{base}/queues")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/login")
    );
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("Dana Reviewer")
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The owner queue, with the demo's entry.
    browser
        .goto(&format!("{base}/queues?kind=owner"))
        .await
        .unwrap();
    let table = browser
        .find(Locator::Css("main table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(table.contains("loan-ops"), "{table}");
    if std::env::var_os("ACTGUARD_UPDATE_SCREENSHOT").is_some() {
        let png = browser.screenshot().await.unwrap();
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console-queues.png");
        std::fs::write(docs, png).unwrap();
    }

    // Its page, and the resolve form.
    browser
        .find(Locator::LinkText(&entry.to_string()))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = browser
        .find(Locator::Css(&format!(
            "form[action='/entries/{entry}/resolve']"
        )))
        .await
        .unwrap();
    form.find(Locator::Css("input[name=note]"))
        .await
        .unwrap()
        .send_keys("amount corrected at the source")
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = browser
        .find(Locator::Css("dl.fields"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("resolved"), "{status}");
    browser.close().await.unwrap();
    drop(driver);

    // The library reads the operator's entry, with the name given at login.
    let log = store.log(&LogQuery::default()).await.unwrap();
    let operator = log
        .iter()
        .filter(|e| e.entry.outcome == Outcome::Operator)
        .filter_map(|e| e.entry.message.clone())
        .find(|m| m.contains(&format!("queue entry {entry} resolved by Dana Reviewer")));
    assert_eq!(
        operator.as_deref(),
        Some(&*format!(
            "queue entry {entry} resolved by Dana Reviewer: amount corrected at the source"
        ))
    );
    assert_eq!(
        store.queue_entry(entry).await.unwrap().unwrap().status,
        QueueStatus::Resolved
    );
    assert!(actguard::verify(store.as_ref()).await.is_ok());
}
