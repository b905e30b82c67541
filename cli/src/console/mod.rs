//! `actguard serve`: a web console for the people in the loop (feature `console`). Server-rendered
//! pages (askama templates in `templates/`), no scripts: the review queues, an entry with its key's
//! log and the operations a person takes on it (the same `actguard::ops` operations as the command
//! line, logged with the person's name), runs, a blast radius with its revert command, and the
//! chain's verification.
//!
//! Every page but `/health` needs the console token ([`Access`]); forms carry a CSRF token bound to
//! the session; every response sets a strict Content-Security-Policy. Nothing `Redacted` can be
//! rendered: stores keep only keyed digests of such values.

mod auth;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use actguard::{Agent, Store};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use auth::{Access, COOKIE, Person};

use crate::CliError;

/// What the console serves.
pub struct Console {
    store: Arc<dyn Store>,
    agent: Agent,
    access: Access,
}

impl Console {
    /// A console over `store`; operations run as `agent` (the operator agent on the same store).
    pub fn new(store: Arc<dyn Store>, agent: Agent, access: Access) -> Console {
        Console {
            store,
            agent,
            access,
        }
    }

    /// The console's routes, with authentication and the security headers.
    pub fn router(self) -> Router {
        let console = Arc::new(self);
        Router::new()
            .route("/", get(|| async { Redirect::to("/queues") }))
            .route("/queues", get(pages::queues))
            .route("/entries/{id}", get(pages::entry))
            .route("/entries/{id}/{op}", post(pages::operate))
            .route("/runs", get(pages::runs))
            .route("/runs/{id}", get(pages::run))
            .route("/blast-radius", get(pages::blast_radius))
            .route("/verify", get(pages::verify))
            .route("/logout", post(pages::logout))
            .route_layer(middleware::from_fn_with_state(console.clone(), admit))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/health", get(|| async { "ok" }))
            .route("/style.css", get(pages::style))
            .layer(middleware::from_fn(security_headers))
            .with_state(console)
    }

    /// Serves the console on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), CliError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on {addr}: {e}")))?;
        eprintln!("actguard console on http://{}/", listener.local_addr()?);
        axum::serve(listener, self.router()).await?;
        Ok(())
    }
}

/// Admits a person: a valid session cookie, or the bearer token (the name from the trusted proxy's
/// header); pages send anyone else to the login form, other requests get 401.
async fn admit(State(console): State<Arc<Console>>, mut request: Request, next: Next) -> Response {
    let person = match &console.access {
        // Without authentication, only a request addressed to a loopback name is served: a page
        // whose domain was rebound to 127.0.0.1 sends its own name in Host.
        Access::Open { .. } if !loopback_host(request.headers()) => {
            return (
                StatusCode::FORBIDDEN,
                "without authentication the console answers only requests to localhost, 127.0.0.1 or [::1]",
            )
                .into_response();
        }
        Access::Open { csrf } => Some(Person {
            name: "local".to_owned(),
            csrf: Some(csrf.clone()),
        }),
        Access::Token { token, user_header } => {
            let headers = request.headers();
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match bearer {
                Some(given) if auth::same(given, token) => {
                    let name = user_header
                        .as_ref()
                        .and_then(|h| headers.get(h.as_str()))
                        .and_then(|v| v.to_str().ok())
                        .filter(|n| auth::valid_name(n))
                        .unwrap_or("console");
                    Some(Person {
                        name: name.trim().to_owned(),
                        csrf: None,
                    })
                }
                Some(_) => None,
                None => cookie(headers, COOKIE).and_then(|c| auth::from_cookie(token, c)),
            }
        }
    };
    match person {
        Some(person) => {
            request.extensions_mut().insert(person);
            next.run(request).await
        }
        None if request.method() == axum::http::Method::GET => {
            Redirect::to("/login").into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "log in first").into_response(),
    }
}

/// Whether the request's Host names a loopback address (`localhost`, `127.x.y.z`, `[::1]`), any port.
fn loopback_host(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What every response says to the browser: no scripts, no frames, no foreign resources, no sniffing,
/// no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
