//! Signed JWTs for people and their front ends: HS256 with a shared secret, or RS256/ES256 with
//! the issuer's public keys, all from settings.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::Principal;
use crate::settings::AuthSettings;

/// The claims Doorstep reads. `roles` names Doorstep roles (`intake`, `officer`, `manager`,
/// `contractor`, `admin`, `auditor`); a contractor token carries `contractor_id` too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    /// Expiry, seconds since the Unix epoch: required.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contractor_id: Option<String>,
}

impl TokenClaims {
    /// Claims for `subject` with `roles`, valid for `lifetime` from now.
    pub fn new(subject: &str, roles: &[&str], lifetime: std::time::Duration) -> Self {
        Self {
            sub: subject.to_owned(),
            exp: jsonwebtoken::get_current_timestamp() + lifetime.as_secs(),
            nbf: None,
            iss: None,
            aud: None,
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            contractor_id: None,
        }
    }

    pub fn for_contractor(mut self, contractor_id: &str) -> Self {
        self.contractor_id = Some(contractor_id.to_owned());
        self
    }
}

/// Signs `claims` with an HS256 `secret`: for tests, tools and development set-ups that share
/// the server's secret. Production front ends use their identity provider's tokens.
pub fn issue_hs256(
    secret: &[u8],
    claims: &TokenClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

/// Why the JWT settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("cannot read the JWT public key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither an RSA nor an EC public key in PEM form")]
    Key { path: PathBuf },
    #[error("auth.jwt_hs256_secret must be at least 32 bytes")]
    ShortSecret,
}

/// Why a token was refused; logged at debug level, never shown to the caller in detail.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token's algorithm has no configured key")]
    NoKey,
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Credential(#[from] super::CredentialError),
}

/// Checks bearer tokens against the configured keys.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtVerifier {
    /// The verifier the settings describe, or `None` when they configure no JWT key.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, JwtSetupError> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.jwt_hs256_secret {
            let secret = secret.expose_secret().as_bytes();
            if secret.len() < 32 {
                return Err(JwtSetupError::ShortSecret);
            }
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret)));
        }
        for path in &settings.jwt_public_key_files {
            let pem = std::fs::read(path).map_err(|source| JwtSetupError::Read {
                path: path.clone(),
                source,
            })?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map(|key| (Algorithm::RS256, key))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|key| (Algorithm::ES256, key)))
                .map_err(|_| JwtSetupError::Key { path: path.clone() })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
        }))
    }

    /// The principal a valid token names: signature, `exp`, `nbf`, and `iss`/`aud` when
    /// configured are all checked.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let mut last_error = TokenError::NoKey;
        for (algorithm, key) in self.keys.iter().filter(|(alg, _)| *alg == header.alg) {
            match jsonwebtoken::decode::<TokenClaims>(token, key, &self.validation(*algorithm)) {
                Ok(data) => {
                    let claims = data.claims;
                    return Ok(Principal::new(
                        format!("jwt:{}", claims.sub),
                        &claims.roles,
                        claims.contractor_id.as_deref(),
                    )?);
                }
                Err(error) => last_error = TokenError::Jwt(error),
            }
        }
        Err(last_error)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        validation
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &str = "a test secret that is long enough for HS256";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        let settings = AuthSettings {
            jwt_hs256_secret: Some(SECRET.to_owned().into()),
            jwt_issuer: issuer.map(str::to_owned),
            jwt_audience: audience.map(str::to_owned),
            ..AuthSettings::default()
        };
        JwtVerifier::from_settings(&settings)
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("a key is configured"))
    }

    fn token(claims: &TokenClaims, secret: &str) -> String {
        issue_hs256(secret.as_bytes(), claims).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_valid_token_names_its_subject_and_roles() {
        let claims = TokenClaims::new("alice", &["officer", "manager"], Duration::from_secs(60));
        let principal = verifier(None, None)
            .verify(&token(&claims, SECRET))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(principal.subject, "jwt:alice");
        assert!(principal.has_any(&[super::super::Role::Manager]));
    }

    #[test]
    fn expired_not_yet_valid_and_wrongly_signed_tokens_are_refused() {
        let verifier = verifier(None, None);
        let mut expired = TokenClaims::new("alice", &["officer"], Duration::ZERO);
        expired.exp -= 3_600;
        assert!(verifier.verify(&token(&expired, SECRET)).is_err());
        let mut early = TokenClaims::new("alice", &["officer"], Duration::from_secs(7_200));
        early.nbf = Some(jsonwebtoken::get_current_timestamp() + 3_600);
        assert!(verifier.verify(&token(&early, SECRET)).is_err());
        let fine = TokenClaims::new("alice", &["officer"], Duration::from_secs(60));
        assert!(
            verifier
                .verify(&token(&fine, "another secret, also long enough for HS256"))
                .is_err()
        );
        assert!(verifier.verify("not.a.token").is_err());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let verifier = verifier(Some("https://idp.example"), Some("doorstep"));
        let mut claims = TokenClaims::new("alice", &["officer"], Duration::from_secs(60));
        assert!(verifier.verify(&token(&claims, SECRET)).is_err());
        claims.iss = Some("https://idp.example".to_owned());
        claims.aud = Some("doorstep".to_owned());
        assert!(verifier.verify(&token(&claims, SECRET)).is_ok());
        claims.aud = Some("elsewhere".to_owned());
        assert!(verifier.verify(&token(&claims, SECRET)).is_err());
    }
}
