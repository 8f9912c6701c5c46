//! The tower layer in front of every service: resolves the caller once per request, checks the
//! policy table, and hands the principal to the handlers in the request's extensions.

use std::sync::Arc;

use http::HeaderMap;

use super::Principal;
use super::api_keys::{ApiKeyStore, KeyRejection};
use super::jwt::JwtVerifier;
use super::policy::{self, Access};
use crate::error::ApiError;
use crate::middleware::{Around, AroundLayer, Request, Response, ResponseFuture};

/// The header integrations may send their API key in (`authorization: ApiKey …` works too).
pub const API_KEY_HEADER: &str = "x-api-key";

/// Each principal's share of the server: calls per second on average, and a burst above it.
pub struct PrincipalRateLimit {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl PrincipalRateLimit {
    /// `None` when `requests_per_second` is 0 (no limit).
    pub fn new(requests_per_second: u32, burst: u32) -> Option<Self> {
        let rate = std::num::NonZeroU32::new(requests_per_second)?;
        let burst = std::num::NonZeroU32::new(burst.max(requests_per_second)).unwrap_or(rate);
        Some(Self {
            limiter: governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
        })
    }

    fn check(&self, principal: &Principal) -> Result<(), ApiError> {
        self.limiter
            .check_key(&principal.subject)
            .map_err(|_| ApiError::RateLimited)
    }
}

/// Bad API keys per caller address: past the limit, within the minute, keys not already
/// verified are refused without running argon2, so guessing costs the guesser and not the
/// server. Integrations whose keys were verified before keep working from the same address.
pub struct FailedKeyLimit {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, FailureWindow>>,
}

struct FailureWindow {
    started: std::time::Instant,
    failures: u32,
}

const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses remembered at most; past it, expired windows are dropped.
const MAX_REMEMBERED_ADDRESSES: usize = 10_000;

impl FailedKeyLimit {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_minute,
            windows: Default::default(),
        })
    }

    fn is_exhausted(&self, address: std::net::IpAddr) -> bool {
        self.windows.lock().is_ok_and(|windows| {
            windows.get(&address).is_some_and(|window| {
                window.started.elapsed() < FAILURE_WINDOW && window.failures >= self.per_minute
            })
        })
    }

    fn record_failure(&self, address: std::net::IpAddr) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() >= MAX_REMEMBERED_ADDRESSES {
            windows.retain(|_, window| window.started.elapsed() < FAILURE_WINDOW);
        }
        let window = windows.entry(address).or_insert(FailureWindow {
            started: std::time::Instant::now(),
            failures: 0,
        });
        if window.started.elapsed() >= FAILURE_WINDOW {
            *window = FailureWindow {
                started: std::time::Instant::now(),
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

/// Turns request headers into a principal.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: ApiKeyStore,
    rate_limit: Option<PrincipalRateLimit>,
    failed_keys: Option<FailedKeyLimit>,
}

impl Authenticator {
    pub fn new(
        jwt: Option<JwtVerifier>,
        api_keys: ApiKeyStore,
        rate_limit: Option<PrincipalRateLimit>,
        failed_keys: Option<FailedKeyLimit>,
    ) -> Self {
        Self {
            jwt,
            api_keys,
            rate_limit,
            failed_keys,
        }
    }

    /// Who sent these headers. Every failure is UNAUTHENTICATED with a message that says what
    /// to send, never why a particular credential failed (that is logged at debug level).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Principal, ApiError> {
        let refused = || {
            ApiError::Unauthenticated(
                "the credential is not valid; send `authorization: Bearer <JWT>` or an API key in \
                 `x-api-key`"
                    .to_owned(),
            )
        };
        match presented_credential(headers) {
            Presented::Bearer(token) => {
                let Some(jwt) = &self.jwt else {
                    tracing::debug!("bearer token refused: no JWT key is configured");
                    return Err(refused());
                };
                jwt.verify(token).map_err(|error| {
                    tracing::debug!(%error, "bearer token refused");
                    refused()
                })
            }
            Presented::ApiKey(key) => {
                let limit = self.failed_keys.as_ref().zip(peer);
                let may_hash = limit.is_none_or(|(limit, peer)| !limit.is_exhausted(peer));
                match self.api_keys.verify(key, may_hash).await {
                    Ok(principal) => Ok(principal),
                    Err(KeyRejection::Throttled) => Err(ApiError::RateLimited),
                    Err(error) => {
                        tracing::debug!(%error, "API key refused");
                        if let Some((limit, peer)) = limit {
                            limit.record_failure(peer);
                        }
                        Err(refused())
                    }
                }
            }
            Presented::Nothing => Err(ApiError::Unauthenticated(
                "a credential is required: `authorization: Bearer <JWT>` or an API key in \
                 `x-api-key`"
                    .to_owned(),
            )),
            Presented::Ambiguous => Err(ApiError::Unauthenticated(
                "send one credential, not several".to_owned(),
            )),
        }
    }

    /// Admits a call to `path` or says why not. `Ok(None)` is a public method, called without
    /// resolving anyone.
    pub async fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Option<Principal>, ApiError> {
        let access = policy::access(path);
        if access == Some(Access::Public) {
            return Ok(None);
        }
        let principal = self.authenticate(headers, peer).await?;
        // Counted per principal, so one caller's flood exhausts only its own share.
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.check(&principal)?;
        }
        let allowed = match access {
            Some(Access::Public | Access::Authenticated) => true,
            Some(Access::Roles(roles)) => principal.has_any(roles),
            None => false,
        };
        if !allowed {
            let held: Vec<&str> = principal.roles.iter().map(|role| role.as_str()).collect();
            let method = path.strip_prefix('/').unwrap_or(path);
            return Err(ApiError::PermissionDenied(format!(
                "{} may not call {method}: it needs {}, and this credential has {}. An \
                 administrator can create a key with that role: `doorstep api-keys create \
                 --role <role> --name <who>`",
                principal.subject,
                policy::roles_in_words(access),
                roles_held(&held),
            )));
        }
        Ok(Some(principal))
    }
}

/// The roles a credential holds, in words: "the admin role", "the intake and officer roles".
fn roles_held(held: &[&str]) -> String {
    match held {
        [] => "no role".to_owned(),
        [only] => format!("the {only} role"),
        [rest @ .., last] => format!("the {} and {last} roles", rest.join(", ")),
    }
}

enum Presented<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    Nothing,
    Ambiguous,
}

fn presented_credential(headers: &HeaderMap) -> Presented<'_> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default().trim());
    let api_key = headers
        .get(API_KEY_HEADER)
        .map(|value| value.to_str().unwrap_or_default().trim());
    let from_authorization = authorization.map(|value| {
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            Presented::Bearer(credential)
        } else if scheme.eq_ignore_ascii_case("apikey") {
            Presented::ApiKey(credential)
        } else {
            // An unknown scheme is a credential Doorstep cannot check: refuse it as invalid.
            Presented::ApiKey("")
        }
    });
    match (from_authorization, api_key) {
        (Some(_), Some(_)) => Presented::Ambiguous,
        (Some(presented), None) => presented,
        (None, Some(key)) => Presented::ApiKey(key),
        (None, None) => Presented::Nothing,
    }
}

/// Puts the guard in front of a service: each request is admitted or refused before it reaches
/// the service.
pub type AuthLayer = AroundLayer<Arc<Authenticator>>;

impl Around for Arc<Authenticator> {
    fn around<S>(&self, mut inner: S, mut request: Request) -> ResponseFuture<S::Error>
    where
        S: tower::Service<Request, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
    {
        let authenticator = self.clone();
        Box::pin(async move {
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
                .map(|address| address.ip());
            let admitted = authenticator
                .admit(request.uri().path(), request.headers(), peer)
                .await;
            match admitted {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        request.extensions_mut().insert(principal);
                    }
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}
