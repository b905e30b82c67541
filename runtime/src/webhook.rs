//! [`WebhookAlert`]: alerts POSTed as JSON to a webhook (feature `webhook`).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::alert::{AlertSink, HaltAlert, QueueAlert};

/// POSTs each alert as JSON to a URL: a Slack-compatible `text` line, `event` (`halt` or
/// `queue_entry`) and the structured alert (`halt` or `entry`). Delivery runs on its own task (a
/// thread outside a tokio runtime), so the failing call never waits for it; a refused or failed
/// delivery is retried with exponential backoff (1s, 2s, 4s, … by default, 5 attempts), each attempt
/// bounded by a timeout, and a delivery that still fails is logged as a tracing error.
///
/// Halts are always sent; queue entries when the agent opts in
/// ([`AgentBuilder::alert_on_queue_entries`](crate::AgentBuilder::alert_on_queue_entries)).
///
/// ```no_run
/// let sink = actguard::WebhookAlert::new("https://hooks.example.com/services/T000/B000/XXXX")?;
/// let agent = actguard::Agent::builder()
///     .alert_sink(sink)
///     .alert_on_queue_entries(true)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WebhookAlert {
    url: hyper::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempts: u32,
    first_delay: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookAlert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAlert")
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("first_delay", &self.first_delay)
            .finish_non_exhaustive()
    }
}

/// Why a webhook sink could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http://` or `https://` URL.
    #[error("the webhook URL `{0}` is not an http:// or https:// URL")]
    Url(String),
    /// The HTTP client could not be built (its TLS configuration).
    #[error("cannot build the webhook's HTTP client: {0}")]
    Client(String),
}

impl WebhookAlert {
    /// A sink POSTing to `url` (`http://` or `https://`; TLS with the platform's trusted roots).
    pub fn new(url: impl Into<String>) -> Result<WebhookAlert, WebhookError> {
        let text = url.into();
        let url: hyper::Uri = text.parse().map_err(|_| WebhookError::Url(text.clone()))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(WebhookError::Url(text));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A certificate the platform keeps that rustls cannot read is left out, as browsers do.
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(WebhookAlert {
            url,
            client,
            attempts: 5,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        })
    }

    /// How many times a delivery is tried (at least once).
    pub fn attempts(mut self, attempts: u32) -> WebhookAlert {
        self.attempts = attempts.max(1);
        self
    }

    /// The delay before the first retry; each next one doubles.
    pub fn first_delay(mut self, delay: Duration) -> WebhookAlert {
        self.first_delay = delay;
        self
    }

    fn send(&self, body: Value) {
        let sink = self.clone();
        let delivery = async move { sink.deliver(body).await };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(delivery);
            }
            Err(_) => {
                std::thread::spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(delivery),
                        Err(e) => tracing::error!(error = %e, "the webhook alert cannot be sent"),
                    }
                });
            }
        }
    }

    async fn deliver(&self, body: Value) {
        let body = Bytes::from(body.to_string());
        let post = || async {
            let request = hyper::Request::post(self.url.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => Ok(()),
                Ok(Ok(response)) => Err(format!("the webhook answered HTTP {}", response.status())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            }
        };
        if let Err(why) = retrying(self.attempts, self.first_delay, post).await {
            tracing::error!(url = %self.url, attempts = self.attempts, error = %why, "the webhook alert was not delivered");
        }
    }
}

/// Runs `attempt` until it succeeds, at most `attempts` times, waiting `first_delay`, then twice as
/// long each time, between tries; the last failure if none succeeds.
async fn retrying<F, Fut>(
    attempts: u32,
    first_delay: Duration,
    mut attempt: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut delay = first_delay;
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(why) if n >= attempts => return Err(why),
            Err(why) => {
                tracing::warn!(attempt = n, error = %why, retry_in_ms = delay.as_millis() as u64, "the webhook alert failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                n += 1;
            }
        }
    }
}

impl AlertSink for WebhookAlert {
    fn alert(&self, halt: &HaltAlert) {
        let text = format!(
            "actguard: run {} halted{}: {}",
            halt.run_id,
            halt.action
                .as_deref()
                .map(|a| format!(" by `{a}`"))
                .unwrap_or_default(),
            halt.reason
        );
        self.send(json!({ "text": text, "event": "halt", "halt": halt }));
    }

    fn queue_entry(&self, entry: &QueueAlert) {
        let text = format!(
            "actguard: queue entry {} in the {} queue `{}`: `{}` on record `{}`: {} (`actguard queue show {}`)",
            entry.entry_id,
            entry.kind.as_str(),
            entry.queue,
            entry.action,
            entry.record,
            entry.message,
            entry.entry_id
        );
        self.send(json!({ "text": text, "event": "queue_entry", "entry": entry }));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failed_delivery_is_retried_with_a_doubling_delay_then_given_up() {
        let tries = Cell::new(0);
        let start = Instant::now();
        let delivered = retrying(5, Duration::from_secs(1), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n < 3 {
                    Err(format!("HTTP 503 ({n})"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(delivered, Ok(()));
        assert_eq!(tries.get(), 3);
        assert_eq!(start.elapsed(), Duration::from_secs(1 + 2));

        tries.set(0);
        let start = Instant::now();
        let given_up = retrying(4, Duration::from_secs(1), || {
            tries.set(tries.get() + 1);
            async { Err("refused".to_owned()) }
        })
        .await;
        assert_eq!(given_up, Err("refused".to_owned()));
        assert_eq!(tries.get(), 4);
        assert_eq!(start.elapsed(), Duration::from_secs(1 + 2 + 4));
    }

    #[test]
    fn only_http_urls_are_taken() {
        for bad in ["ftp://hooks.example.com", "hooks.example.com", ""] {
            assert!(
                matches!(WebhookAlert::new(bad), Err(WebhookError::Url(_))),
                "{bad}"
            );
        }
        assert!(WebhookAlert::new("https://hooks.example.com/x").is_ok());
    }
}
