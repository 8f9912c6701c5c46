//! The web console: server-rendered HTML pages for managers, liaison officers, administrators
//! and contractors, on a port of its own, in the same process as the gRPC API.
//!
//! - Every page answers from the read models through the API's own service implementations,
//!   called in-process (`services.rs`) with the signed-in principal, after the same policy
//!   check the gRPC auth layer makes (`access.rs`). So a figure on a page is the API's figure,
//!   a contractor is confined by the same code, and an action is the same write, evented and
//!   idempotent.
//! - Sessions are server-side, in the store's database (`session.rs`); every form that changes
//!   something carries the session's CSRF token.
//! - Charts are inline SVG drawn here (`charts.rs`), each with a table of the same numbers.

mod access;
mod charts;
mod error;
mod layout;
mod oidc;
mod pages;
mod services;
mod session;
mod sign_in;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, header};
use tokio::net::TcpListener;

use crate::auth::guard::Authenticator;
use crate::clock::Clock;
use crate::settings::ConsoleSettings;

pub use error::ConsoleError;
pub use oidc::{OidcSetupError, claims_to_principal};
pub use services::Services;
pub use session::{Session, Sessions};

/// Everything a page handler may need.
pub struct ConsoleState {
    services: Services,
    authenticator: Arc<Authenticator>,
    sessions: Sessions,
    oidc: Option<oidc::OidcClient>,
    settings: ConsoleSettings,
    clock: Arc<dyn Clock>,
}

type Shared = Arc<ConsoleState>;

/// A bound console, ready to serve.
pub struct Console {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
}

/// What the console is built from.
pub struct ConsoleParts {
    pub services: Services,
    pub authenticator: Arc<Authenticator>,
    pub sessions: Arc<dyn doorstep_store::ConsoleSessionStore>,
    pub clock: Arc<dyn Clock>,
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleSetupError {
    #[error("cannot read the console's listening address")]
    LocalAddress(#[source] std::io::Error),
    #[error("cannot set up OpenID Connect sign-in")]
    Oidc(#[from] OidcSetupError),
}

impl Console {
    /// Serves the console on its bound port and, when OpenID Connect is configured, reads the provider's
    /// discovery document.
    pub async fn serve_on(
        listener: TcpListener,
        settings: &ConsoleSettings,
        parts: ConsoleParts,
    ) -> Result<Self, ConsoleSetupError> {
        let address = listener
            .local_addr()
            .map_err(ConsoleSetupError::LocalAddress)?;
        // With port 0 (tests) the default public URL follows the port the console got, so
        // links and the OpenID Connect redirect URI point at it.
        let mut settings = settings.clone();
        if settings.port == 0 && settings.public_url == ConsoleSettings::default().public_url {
            settings.public_url = format!("http://{address}");
        }
        let settings = &settings;
        let oidc = match &settings.oidc {
            Some(oidc_settings) => {
                Some(oidc::OidcClient::discover(oidc_settings, settings.base_url()).await?)
            }
            None => None,
        };
        let state = Arc::new(ConsoleState {
            sessions: Sessions::new(parts.sessions, parts.clock.clone(), settings),
            services: parts.services,
            authenticator: parts.authenticator,
            oidc,
            settings: settings.clone(),
            clock: parts.clock,
        });
        Ok(Self {
            listener,
            address,
            router: router(state),
        })
    }

    /// Where the console listens (the real port when the settings asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "the console stopped");
        }
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(start))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
        .route("/favicon.ico", get(favicon))
        .route("/sign-in", get(sign_in::page))
        .route("/sign-in/key", post(sign_in::with_key))
        .route("/sign-in/oidc", get(sign_in::with_oidc))
        .route("/auth/callback", get(sign_in::oidc_callback))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/no-access", get(pages::no_access))
        .route("/programme", get(pages::programme::page))
        .route("/programme/league.csv", get(pages::programme::league_csv))
        .route("/programme/funnel.csv", get(pages::programme::funnel_csv))
        .route(
            "/programme/complaint-handling.csv",
            get(pages::programme::handling_csv),
        )
        .route(
            "/programme/liaison-leads.csv",
            get(pages::programme::liaison_csv),
        )
        .route("/contractors", get(pages::contractor::index))
        .route("/contractors/mine", get(pages::contractor::mine))
        .route("/contractors/{contractor_id}", get(pages::contractor::page))
        .route("/complaints", get(pages::complaints::list))
        .route("/complaints/{complaint_id}", get(pages::complaints::case))
        .route("/escalations", get(pages::escalations::page))
        .route(
            "/escalations/{escalation_id}/acknowledge",
            post(pages::escalations::acknowledge),
        )
        .route(
            "/dead-letters/retry-all",
            post(pages::escalations::retry_all),
        )
        .route(
            "/dead-letters/{delivery_id}/retry",
            post(pages::escalations::retry),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(protective_headers))
        .with_state(state)
}

/// `GET /`: the signed-in user's first page, or the sign-in page.
async fn start(
    State(state): State<Shared>,
    headers: http::HeaderMap,
) -> Result<Redirect, ConsoleError> {
    Ok(match state.sessions.find(&headers).await? {
        Some(session) => Redirect::to(access::home(&session.principal)),
        None => Redirect::to("/sign-in"),
    })
}

/// Any other address: not found for a signed-in user; the sign-in page for anyone else, as
/// for every page, so signed-out visitors learn nothing of which addresses exist.
async fn not_found(_session: Session) -> ConsoleError {
    ConsoleError::NotFound
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::STYLESHEET,
    )
}

/// Browsers ask for an icon on every page, signed in or not: answer without one rather than
/// with the sign-in page.
async fn favicon() -> impl IntoResponse {
    (
        http::StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::SCRIPT,
    )
}

/// Headers every answer carries: no framing, no sniffing, scripts and styles from this origin
/// only, and pages (which hold personal data and figures) never stored by caches.
async fn protective_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' https: data:; style-src 'self'; \
             script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A page's signed-in user; a request without a live session is sent to the sign-in page.
impl FromRequestParts<Shared> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        state
            .sessions
            .find(&parts.headers)
            .await?
            .ok_or(ConsoleError::SignedOut)
    }
}
