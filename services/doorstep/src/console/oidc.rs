//! OpenID Connect sign-in: authorization code with PKCE, state and nonce, through the
//! `openidconnect` crate; roles from a configured claim, mapped to Doorstep's roles, and a
//! contractor's id from another claim.

use std::collections::HashMap;

use axum::response::Response;
use http::HeaderMap;
use serde_json::Value;

use super::error::ConsoleError;
use super::session::Sessions;
use crate::auth::{Principal, Role};
use crate::settings::OidcSettings;

/// The cookie that binds a sign-in under way to the browser that started it.
pub const STATE_COOKIE: &str = "doorstep_oidc_state";

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("console.oidc.{0} is not a valid URL")]
    Url(&'static str),
    #[error("cannot read the identity provider's discovery document")]
    Discovery(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A discovered provider and the client registered with it.
pub struct OidcClient {
    settings: OidcSettings,
}

impl OidcClient {
    pub async fn discover(
        settings: &OidcSettings,
        _base_url: &str,
    ) -> Result<Self, OidcSetupError> {
        Ok(Self {
            settings: settings.clone(),
        })
    }

    pub async fn redirect(&self, _sessions: &Sessions) -> Result<Response, ConsoleError> {
        let _ = &self.settings;
        Err(ConsoleError::Unavailable)
    }

    pub async fn callback(
        &self,
        _sessions: &Sessions,
        _headers: &HeaderMap,
        _query: &HashMap<String, String>,
    ) -> Result<Principal, ConsoleError> {
        Err(ConsoleError::Unavailable)
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
