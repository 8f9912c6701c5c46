//! OpenID Connect sign-in: authorization code with PKCE, state and nonce, through the
//! `openidconnect` crate over the workspace's reqwest (rustls); roles from a configured claim,
//! mapped to Doorstep's roles, and a contractor's id from another claim.
//!
//! The sign-in under way (nonce, PKCE verifier) is kept in the store's database by the hash of
//! its state, so the callback may reach any replica; the state is also bound to the browser that
//! started it by a cookie, so a callback carried to another browser is refused. The provider is
//! discovered on the first sign-in and remembered, so the server starts without it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::error::ConsoleError;
use super::session::{Sessions, cookie, digest, same_secret};
use crate::auth::{Principal, Role};
use crate::settings::OidcSettings;

/// The cookie that binds a sign-in under way to the browser that started it.
pub const STATE_COOKIE: &str = "doorstep_oidc_state";

/// How long a sign-in may take at the identity provider.
const SIGN_IN_SECONDS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("console.oidc.{0} is not a valid URL")]
    Url(&'static str),
    #[error("cannot build the HTTP client for the identity provider")]
    Http(#[source] reqwest::Error),
}

/// The client once the provider's metadata is read: authorization and token endpoints set,
/// userinfo as the provider says.
type ProviderClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every claim of a userinfo answer, for the configured roles and contractor claims.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
struct AnyClaims(serde_json::Map<String, Value>);

impl AdditionalClaims for AnyClaims {}

/// The identity provider and the client registered with it.
pub struct OidcClient {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<ProviderClient>>>,
}

impl OidcClient {
    /// Checks the settings; the provider itself is read on the first sign-in.
    pub async fn discover(settings: &OidcSettings, base_url: &str) -> Result<Self, OidcSetupError> {
        let issuer = IssuerUrl::new(settings.issuer_url.trim().to_owned())
            .map_err(|_| OidcSetupError::Url("issuer_url"))?;
        let redirect = RedirectUrl::new(format!("{base_url}/auth/callback"))
            .map_err(|_| OidcSetupError::Url("redirect URI (console.public_url)"))?;
        // reqwest is built on rustls without a default crypto provider; ring is this build's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // The token endpoint must answer itself: following a redirect could hand the code
            // and verifier to someone else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("doorstep/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(OidcSetupError::Http)?;
        Ok(Self {
            settings: settings.clone(),
            issuer,
            redirect,
            http,
            discovered: Mutex::new(None),
        })
    }

    /// The provider's client, discovered now if it has not been yet.
    async fn client(&self) -> Result<Arc<ProviderClient>, ConsoleError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(client) = discovered.as_ref() {
            return Ok(client.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|error| {
                tracing::warn!(error = %crate::error::chain(&error), issuer = %self.issuer.as_str(), "cannot read the identity provider's discovery document");
                ConsoleError::Unavailable
            })?;
        let client = Arc::new(
            CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(self.settings.client_id.clone()),
                self.settings
                    .client_secret
                    .as_ref()
                    .map(|secret| ClientSecret::new(secret.expose_secret().to_owned())),
            )
            .set_redirect_uri(self.redirect.clone()),
        );
        *discovered = Some(client.clone());
        Ok(client)
    }

    /// `GET /sign-in/oidc`: remembers the sign-in and sends the browser to the provider.
    pub async fn redirect(&self, sessions: &Sessions) -> Result<Response, ConsoleError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.settings.scopes {
            // `openid` is always asked for.
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        sessions
            .store()
            .insert_sign_in(&doorstep_store::PendingSignIn {
                state_hash: digest(state.secret()),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                created_at: sessions.clock().now().timestamp(),
            })
            .await
            .map_err(super::session::SessionError::from)?;
        // Lax, not Strict: the callback is a navigation from the provider's site.
        let bound = sessions.cookie(STATE_COOKIE, state.secret(), "Lax", SIGN_IN_SECONDS);
        let mut response = Redirect::to(url.as_str()).into_response();
        if let Ok(value) = HeaderValue::from_str(&bound) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok(response)
    }

    /// `GET /auth/callback`: checks the state against the browser's cookie and the stored
    /// sign-in, exchanges the code with the PKCE verifier, verifies the ID token (signature,
    /// issuer, audience, expiry, nonce) and makes the principal its claims describe.
    pub async fn callback(
        &self,
        sessions: &Sessions,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(Principal, String), ConsoleError> {
        if let Some(error) = query.get("error") {
            tracing::info!(%error, "the identity provider refused a sign-in");
            return Err(ConsoleError::SignInFailed);
        }
        let (Some(state), Some(code)) = (query.get("state"), query.get("code")) else {
            return Err(ConsoleError::SignInFailed);
        };
        if !cookie(headers, STATE_COOKIE).is_some_and(|bound| same_secret(bound, state)) {
            return Err(ConsoleError::MissingCsrfToken);
        }
        let pending = sessions
            .store()
            .take_sign_in(&digest(state))
            .await
            .map_err(super::session::SessionError::from)?
            .filter(|pending| {
                sessions.clock().now().timestamp() - pending.created_at <= SIGN_IN_SECONDS
            })
            .ok_or(ConsoleError::SignInFailed)?;
        let client = self.client().await?;
        let failed = |what: &str, error: &dyn std::error::Error| {
            tracing::warn!(error = %error, "OpenID Connect sign-in failed: {what}");
            ConsoleError::SignInFailed
        };
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|error| failed("no token endpoint", &error))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|error| failed("the code exchange", &error))?;
        let id_token = tokens.id_token().ok_or_else(|| {
            tracing::warn!("OpenID Connect sign-in failed: the token answer has no ID token");
            ConsoleError::SignInFailed
        })?;
        let verified = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|error| failed("the ID token", &error))?;
        let subject = verified.subject().clone();
        // Verified above: reading its payload again for the configured claims is safe.
        let mut claims = token_payload(&id_token.to_string()).unwrap_or_default();
        if !claims.contains_key(&self.settings.roles_claim)
            && let Ok(request) =
                client.user_info(tokens.access_token().clone(), Some(subject.clone()))
        {
            let info: UserInfoClaims<AnyClaims, CoreGenderClaim> = request
                .request_async(&self.http)
                .await
                .map_err(|error| failed("the userinfo answer", &error))?;
            for (name, value) in &info.additional_claims().0 {
                claims.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        let principal =
            claims_to_principal(&self.settings, subject.as_str(), &claims).map_err(|error| {
                tracing::info!(%error, subject = %subject.as_str(), "an OpenID Connect user has no Doorstep role");
                ConsoleError::NoRole
            })?;
        Ok((principal, display_name(&claims, subject.as_str())))
    }
}

/// What the header calls the person: `name`, else `preferred_username`, else `email`, else the
/// subject.
fn display_name(claims: &serde_json::Map<String, Value>, subject: &str) -> String {
    ["name", "preferred_username", "email"]
        .iter()
        .find_map(|claim| claims.get(*claim).and_then(Value::as_str))
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(subject)
        .to_owned()
}

/// The claims of a JWT's payload (which the caller has verified).
fn token_payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The `Set-Cookie` value that removes the state cookie.
pub fn state_cookie_removal(sessions: &Sessions) -> String {
    sessions.removal(STATE_COOKIE)
}

/// Why the claims make no principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the `{0}` claim names no role Doorstep maps")]
    NoRole(String),
    #[error(transparent)]
    Credential(#[from] crate::auth::CredentialError),
}

/// The principal the identity provider's claims describe: `sub` as the subject (`oidc:<sub>`),
/// the roles claim's values mapped through `role_map` (a value that is a role's own name maps
/// to itself; others are ignored), and the contractor id claim for a contractor.
pub fn claims_to_principal(
    settings: &OidcSettings,
    subject: &str,
    claims: &serde_json::Map<String, Value>,
) -> Result<Principal, ClaimsError> {
    let values: Vec<&str> = match claims.get(&settings.roles_claim) {
        Some(Value::String(one)) => one.split_whitespace().collect(),
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<String> = values
        .iter()
        .filter_map(|value| match settings.role_map.get(*value) {
            Some(role) => Some(role.clone()),
            None => Role::parse(value).map(|role| role.as_str().to_owned()),
        })
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ClaimsError::NoRole(settings.roles_claim.clone()));
    }
    let contractor_id = claims
        .get(&settings.contractor_claim)
        .and_then(Value::as_str)
        .filter(|_| roles.iter().any(|role| role == "contractor"));
    Ok(Principal::new(
        format!("oidc:{subject}"),
        &roles,
        contractor_id,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings {
            issuer_url: "https://login.example/tenant/v2.0".to_owned(),
            client_id: "doorstep".to_owned(),
            client_secret: None,
            scopes: vec!["openid".to_owned()],
            roles_claim: "roles".to_owned(),
            role_map: [
                ("complaints-team".to_owned(), "officer".to_owned()),
                ("contract-managers".to_owned(), "manager".to_owned()),
                ("contractors".to_owned(), "contractor".to_owned()),
            ]
            .into(),
            contractor_claim: "contractor_id".to_owned(),
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn mapped_and_own_role_names_make_roles_and_others_are_ignored() {
        let principal = claims_to_principal(
            &settings(),
            "alice",
            &claims(serde_json::json!({"roles": ["complaints-team", "manager", "wiki-editors"]})),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(principal.subject, "oidc:alice");
        assert_eq!(
            principal.roles.iter().copied().collect::<Vec<_>>(),
            vec![Role::Officer, Role::Manager]
        );
        assert_eq!(principal.contractor_scope(), None);
    }

    #[test]
    fn a_single_string_claim_is_read_as_space_separated_roles() {
        let principal = claims_to_principal(
            &settings(),
            "bob",
            &claims(serde_json::json!({"roles": "contract-managers"})),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(principal.roles.contains(&Role::Manager));
    }

    #[test]
    fn a_contractor_takes_its_id_from_the_contractor_claim() {
        let principal = claims_to_principal(
            &settings(),
            "carol",
            &claims(
                serde_json::json!({"roles": ["contractors"], "contractor_id": "acme-retrofit"}),
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            principal.contractor_scope().map(|id| id.as_str()),
            Some("acme-retrofit")
        );
        // Without the claim a contractor would see nobody's records, or everybody's: refused.
        assert!(matches!(
            claims_to_principal(
                &settings(),
                "carol",
                &claims(serde_json::json!({"roles": ["contractors"]}))
            ),
            Err(ClaimsError::Credential(_))
        ));
        // A contractor who is also staff would make scoping ambiguous: refused.
        assert!(
            claims_to_principal(
                &settings(),
                "dave",
                &claims(serde_json::json!({"roles": ["contractors", "manager"], "contractor_id": "acme-retrofit"}))
            )
            .is_err()
        );
    }

    #[test]
    fn no_known_role_is_no_principal() {
        assert_eq!(
            claims_to_principal(
                &settings(),
                "eve",
                &claims(serde_json::json!({"roles": ["wiki-editors"]}))
            )
            .err(),
            Some(ClaimsError::NoRole("roles".to_owned()))
        );
        assert!(claims_to_principal(&settings(), "eve", &claims(serde_json::json!({}))).is_err());
    }
}
