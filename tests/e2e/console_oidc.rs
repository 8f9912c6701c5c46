//! OpenID Connect sign-in to the console against a small identity provider started by the test
//! (discovery, JWKS, token endpoint; ES256 ID tokens): the whole code flow with PKCE through the
//! real server, and the checks that refuse a callback with a wrong state, a replayed state or an
//! ID token for another nonce. The browser helper's tests do the same against `oidc-provider`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine as _;
use doorstep_server::clock::SystemClock;
use doorstep_tests::{console_oidc, free_port, spawn_app_with};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "doorstep-console";
const CLIENT_SECRET: &str = "a secret the provider and the console share";

/// What the provider knows of the sign-in under way, and how it should misbehave.
#[derive(Default)]
struct Provider {
    issuer: String,
    /// code → (code challenge, nonce) from the authorization request.
    codes: HashMap<String, (String, String)>,
    roles: Vec<String>,
    /// Sign ID tokens for this nonce instead of the one asked for.
    nonce_override: Option<String>,
    key_pem: String,
    public_key: Vec<u8>,
}

type Shared = Arc<Mutex<Provider>>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn discovery(State(provider): State<Shared>) -> axum::Json<serde_json::Value> {
    let issuer = provider.lock().expect("lock").issuer.clone();
    axum::Json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(provider): State<Shared>) -> axum::Json<serde_json::Value> {
    let point = provider.lock().expect("lock").public_key.clone();
    // An uncompressed P-256 point: 0x04, then x and y.
    axum::Json(serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "test-key",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]}))
}

async fn token(
    State(provider): State<Shared>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let provider = provider.lock().expect("lock");
    let code = form.get("code").ok_or(StatusCode::BAD_REQUEST)?;
    let (challenge, nonce) = provider.codes.get(code).ok_or(StatusCode::BAD_REQUEST)?;
    // PKCE: the verifier must hash to the challenge of the authorization request.
    let verifier = form.get("code_verifier").ok_or(StatusCode::BAD_REQUEST)?;
    if b64(&Sha256::digest(verifier.as_bytes())) != *challenge {
        return Err(StatusCode::BAD_REQUEST);
    }
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": provider.issuer, "sub": "alice", "name": "Alice Manager", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
        "nonce": provider.nonce_override.clone().unwrap_or_else(|| nonce.clone()),
        "doorstep_roles": provider.roles,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-key".to_owned());
    let key =
        jsonwebtoken::EncodingKey::from_ec_pem(provider.key_pem.as_bytes()).expect("the key reads");
    let id_token = jsonwebtoken::encode(&header, &claims, &key).expect("signed");
    Ok(axum::Json(serde_json::json!({
        "access_token": "an-access-token", "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token,
    })))
}

async fn start_provider(roles: &[&str]) -> Shared {
    let key = rcgen::KeyPair::generate().expect("a P-256 key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let issuer = format!("http://{}", listener.local_addr().expect("an address"));
    let provider = Arc::new(Mutex::new(Provider {
        issuer,
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        key_pem: key.serialize_pem(),
        public_key: key.public_key_raw().to_vec(),
        ..Provider::default()
    }));
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    provider
}

/// A browser's cookie jar for the console, kept by hand so each answer can be seen.
struct Visit {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Visit {
    async fn get(&mut self, url: &str) -> (StatusCode, Option<String>, String) {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = self
            .client
            .get(if url.starts_with("http") {
                url.to_owned()
            } else {
                format!("{}{url}", self.base)
            })
            .header(reqwest::header::COOKIE, cookie.join("; "))
            .send()
            .await
            .expect("an answer");
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = set
                .to_str()
                .expect("text")
                .split(';')
                .next()
                .expect("a pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| value.to_str().expect("text").to_owned());
        (
            response.status(),
            location,
            response.text().await.expect("a body"),
        )
    }

    /// Starts a sign-in; the provider "authenticates" the user and returns the callback URL the
    /// browser would be sent to.
    async fn through_the_provider(&mut self, provider: &Shared) -> String {
        let (status, location, _) = self.get("/sign-in/oidc").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let authorize = reqwest::Url::parse(&location.expect("a redirect")).expect("a URL");
        let query: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
        assert_eq!(query.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
        assert_eq!(
            query.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );
        let code = format!("code-{}", query["state"]);
        provider.lock().expect("lock").codes.insert(
            code.clone(),
            (query["code_challenge"].clone(), query["nonce"].clone()),
        );
        format!(
            "{}?code={code}&state={}",
            query["redirect_uri"], query["state"]
        )
    }
}

async fn console_with_provider(roles: &[&str]) -> (doorstep_tests::TestApp, Shared, Visit) {
    let provider = start_provider(roles).await;
    let issuer = provider.lock().expect("lock").issuer.clone();
    let port = free_port();
    let app = spawn_app_with(
        |settings, _| console_oidc(settings, port, &issuer, CLIENT_ID, Some(CLIENT_SECRET)),
        Arc::new(SystemClock),
    )
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let visit = Visit {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        base: app.console_url(),
        cookies: HashMap::new(),
    };
    (app, provider, visit)
}

#[tokio::test]
async fn a_manager_signs_in_through_the_identity_provider() {
    let (_app, provider, mut browser) = console_with_provider(&["manager"]).await;
    let (_, _, sign_in) = browser.get("/sign-in").await;
    assert!(sign_in.contains(r#"<a id="sign-in-oidc" class="button" href="/sign-in/oidc">Sign in with your organisation</a>"#));
    let callback = browser.through_the_provider(&provider).await;
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", browser.base)),
        "{callback}"
    );
    let (status, _, body) = browser.get(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("url=/programme"));
    assert!(browser.cookies.contains_key("doorstep_session"));
    let (status, _, programme) = browser.get("/programme").await;
    assert_eq!(status, StatusCode::OK);
    // The header names the person and the role; the subject stays the audit trail's actor.
    assert!(programme.contains("Alice Manager · manager"), "{programme}");
    assert!(programme.contains("title=\"oidc:alice\""));
}

#[tokio::test]
async fn a_callback_with_another_browsers_state_or_a_replayed_one_signs_nobody_in() {
    let (_app, provider, mut browser) = console_with_provider(&["officer"]).await;
    let callback = browser.through_the_provider(&provider).await;
    // Carried to another browser (an attacker's link), the state cookie does not match.
    let mut other = Visit {
        client: browser.client.clone(),
        base: browser.base.clone(),
        cookies: HashMap::new(),
    };
    let (status, _, _) = other.get(&callback).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!other.cookies.contains_key("doorstep_session"));
    // The right browser signs in once; the same state again is refused.
    let state_cookie = browser
        .cookies
        .get("doorstep_oidc_state")
        .cloned()
        .expect("bound");
    let (status, _, _) = browser.get(&callback).await;
    assert_eq!(status, StatusCode::OK);
    browser.cookies.remove("doorstep_session");
    browser
        .cookies
        .insert("doorstep_oidc_state".to_owned(), state_cookie);
    let (status, _, _) = browser.get(&callback).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!browser.cookies.contains_key("doorstep_session"));
}

#[tokio::test]
async fn an_id_token_for_another_nonce_or_without_a_role_signs_nobody_in() {
    let (_app, provider, mut browser) = console_with_provider(&["manager"]).await;
    provider.lock().expect("lock").nonce_override = Some("someone-elses-nonce".to_owned());
    let callback = browser.through_the_provider(&provider).await;
    let (status, _, _) = browser.get(&callback).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!browser.cookies.contains_key("doorstep_session"));

    {
        let mut provider_state = provider.lock().expect("lock");
        provider_state.nonce_override = None;
        provider_state.roles = vec!["wiki-editors".to_owned()];
    }
    let callback = browser.through_the_provider(&provider).await;
    let (status, _, body) = browser.get(&callback).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("no Doorstep role"));
    assert!(!browser.cookies.contains_key("doorstep_session"));
}
