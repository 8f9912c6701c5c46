//! The web console over HTTP, against the real server on real ports: sign-in, sessions, CSRF,
//! the policy table and contractor confinement, and the programme's figures against the API's.

use std::collections::HashMap;
use std::sync::Arc;

use doorstep_api::v1;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_tests::{
    TestApp, TestClock, gate_left_open, notify_on_test_rounds, requests, spawn_app, spawn_app_with,
    timestamp,
};
use reqwest::StatusCode;

/// A browser without JavaScript: keeps cookies by name and follows no redirects, so each test
/// sees every answer.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// One answer: its status, `Location`, `Set-Cookie` headers and body.
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// The value of the hidden input `name` in the first form that has one.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').expect("a closing quote");
        self.body[start..end].to_owned()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        // reqwest is built on rustls without a default crypto provider; ring is this build's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            base: app.console_url(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| value.to_str().expect("text").to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("text").to_owned())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().expect("a pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.expect("a body");
        Page {
            status,
            location,
            set_cookies,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("the console answers");
        self.answer(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("the console answers");
        self.answer(response).await
    }

    /// Signs in with `key` as a person would: opens the form, pastes the key, sends it.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let token = form.hidden("csrf_token");
        self.post("/sign-in/key", &[("api_key", key), ("csrf_token", &token)])
            .await
    }

    /// A signed-in browser with a new key of `roles`.
    async fn signed_in(app: &TestApp, roles: &[&str], contractor_id: Option<&str>) -> Self {
        let key = app.create_api_key(&roles.join("-"), roles, contractor_id);
        let mut browser = Self::new(app);
        let answer = browser.sign_in(&key).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        browser
    }
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_the_sign_in_page() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    for path in [
        "/",
        "/programme",
        "/programme/league.csv",
        "/complaints",
        "/escalations",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/sign-in"), "{path}");
    }
    let sign_in = browser.get("/sign-in").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(
        sign_in
            .body
            .contains(r#"<form id="sign-in-key" method="post" action="/sign-in/key">"#)
    );
    assert!(
        sign_in
            .body
            .contains(r#"<input id="api-key" name="api_key" type="password""#)
    );
    // No identity provider is configured: no link to one.
    assert!(!sign_in.body.contains("sign-in-oidc"));
}

#[tokio::test]
async fn an_api_key_signs_in_once_with_a_strict_http_only_cookie() {
    let app = spawn_app().await;
    let key = app.create_api_key("manager", &["manager"], None);
    let mut browser = Browser::new(&app);

    let wrong = browser.sign_in("dsk_nothing_like_a_key").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not accepted"));

    let signed_in = browser.sign_in(&key).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/programme"));
    let session_cookie = signed_in
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("doorstep_session="))
        .expect("a session cookie");
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    // Served over plain http here: a Secure cookie would never come back.
    assert!(!session_cookie.contains("Secure"), "{session_cookie}");
    // The cookie holds a random id, not the key.
    assert!(!session_cookie.contains(&key));

    let programme = browser.get("/programme").await;
    assert_eq!(programme.status, StatusCode::OK);
    assert!(programme.body.contains("<h1>Programme</h1>"));
    let home = browser.get("/").await;
    assert_eq!(home.location.as_deref(), Some("/programme"));
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let programme = browser.get("/programme").await;
    let token = programme.hidden("csrf_token");
    let old_cookies = browser.cookies.clone();

    let signed_out = browser.post("/sign-out", &[("csrf_token", &token)]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/sign-in"));

    // The old cookie, sent again as a thief would, signs nobody in.
    browser.cookies = old_cookies;
    let again = browser.get("/programme").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location.as_deref(), Some("/sign-in"));
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let refused = browser.post("/sign-out", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = browser.post("/sign-out", &[("csrf_token", "0000")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Still signed in.
    assert_eq!(browser.get("/programme").await.status, StatusCode::OK);
    // The sign-in form is bound to the browser that loaded it.
    let mut stranger = Browser::new(&app);
    let key = app.create_api_key("officer", &["officer"], None);
    let forged = stranger
        .post(
            "/sign-in/key",
            &[("api_key", &key), ("csrf_token", "forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        !forged
            .set_cookies
            .iter()
            .any(|c| c.starts_with("doorstep_session="))
    );
}
