//! Signing in (an API key pasted once, or OpenID Connect) and out.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{Markup, html};

use super::error::ConsoleError;
use super::session::{SIGN_IN_COOKIE, Session, cookie, random_token, same_secret};
use super::{Shared, access, layout, oidc};
use crate::auth::guard::API_KEY_HEADER;

/// How long the sign-in form stays valid.
const SIGN_IN_FORM_SECONDS: i64 = 3_600;

fn sign_in_form(state: &Shared, token: &str, problem: Option<&str>) -> Markup {
    layout::page(
        "Sign in",
        None,
        None,
        html! {
            div class="sign-in" {
                @if let Some(problem) = problem {
                    div class="notice" role="alert" { p { (problem) } }
                }
                @if state.oidc.is_some() {
                    p { a id="sign-in-oidc" class="button" href="/sign-in/oidc" { "Sign in with your organisation" } }
                    p class="or" { "Or sign in with an API key:" }
                } @else {
                    p class="lead" { "Paste the API key you were given. You will stay signed in until you sign out or stop using the console for a while." }
                }
                form id="sign-in-key" method="post" action="/sign-in/key" {
                    input type="hidden" name="csrf_token" value=(token);
                    p {
                        label for="api-key" { "API key" }
                        input id="api-key" name="api_key" type="password" autocomplete="current-password" required;
                    }
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

/// `GET /sign-in`: the form, with a token bound to this browser by a cookie (a sign-in form
/// posted from another site is refused).
pub async fn page(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Some(session) = state.sessions.find(&headers).await? {
        return Ok(Redirect::to(access::home(&session.principal)).into_response());
    }
    Ok(form_for(&state, &headers, StatusCode::OK, None))
}

/// The sign-in form, with the token the browser already holds when it has one: a second load
/// (another tab, the browser's own requests for an icon) must not invalidate the form on screen.
fn form_for(
    state: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let token = cookie(headers, SIGN_IN_COOKIE)
        .filter(|token| token.len() == 64 && token.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .map_or_else(random_token, str::to_owned);
    let cookie = state
        .sessions
        .cookie(SIGN_IN_COOKIE, &token, "Strict", SIGN_IN_FORM_SECONDS);
    let mut response = (status, sign_in_form(state, &token, problem)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /sign-in/key`: checks the key with the same key store the gRPC API uses; the session's
/// principal (roles, contractor) is the key's.
pub async fn with_key(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    let bound = cookie(&headers, SIGN_IN_COOKIE);
    let submitted = form.get("csrf_token").map(String::as_str);
    if !matches!((bound, submitted), (Some(bound), Some(submitted)) if same_secret(bound, submitted))
    {
        return Err(ConsoleError::MissingCsrfToken);
    }
    let key = form
        .get("api_key")
        .map(|key| key.trim())
        .unwrap_or_default();
    let mut presented = HeaderMap::new();
    let principal = match HeaderValue::from_str(key) {
        Ok(value) if !key.is_empty() => {
            presented.insert(API_KEY_HEADER, value);
            state
                .authenticator
                .authenticate(&presented, Some(peer.ip()))
                .await
        }
        _ => Err(crate::error::ApiError::Unauthenticated(String::new())),
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(crate::error::ApiError::RateLimited) => {
            return Ok(form_for(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many keys were tried from here. Wait a minute and try again."),
            ));
        }
        Err(_) => {
            return Ok(form_for(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That API key was not accepted. Check it and paste it again."),
            ));
        }
    };
    // The key's name: what `doorstep api-keys create --name` was given.
    let name = principal
        .subject
        .strip_prefix("api-key:")
        .unwrap_or(&principal.subject)
        .to_owned();
    signed_in(&state, &principal, &name).await
}

/// Starts the session and sends the browser to its first page.
pub(super) async fn signed_in(
    state: &Shared,
    principal: &crate::auth::Principal,
    display_name: &str,
) -> Result<Response, ConsoleError> {
    let session_cookie = state.sessions.start(principal, display_name).await?;
    tracing::info!(subject = %principal.subject, "signed in to the console");
    let mut response = Redirect::to(access::home(principal)).into_response();
    for value in [session_cookie, state.sessions.removal(SIGN_IN_COOKIE)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// `POST /sign-out`: deletes the session server-side, so the old cookie signs nobody in.
pub async fn sign_out(
    State(state): State<Shared>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    if !session.accepts(form.get("csrf_token").map(String::as_str)) {
        return Err(ConsoleError::MissingCsrfToken);
    }
    let removal = state.sessions.end(&session).await?;
    let mut response = Redirect::to("/sign-in").into_response();
    if let Ok(value) = HeaderValue::from_str(&removal) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /sign-in/oidc`: off to the identity provider.
pub async fn with_oidc(State(state): State<Shared>) -> Result<Response, ConsoleError> {
    let Some(oidc) = &state.oidc else {
        return Err(ConsoleError::NotFound);
    };
    oidc.redirect(&state.sessions).await
}

/// `GET /auth/callback`: the identity provider's answer.
pub async fn oidc_callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    let Some(oidc) = &state.oidc else {
        return Err(ConsoleError::NotFound);
    };
    let (principal, display_name) = oidc.callback(&state.sessions, &headers, &query).await?;
    let session_cookie = state.sessions.start(&principal, &display_name).await?;
    tracing::info!(subject = %principal.subject, "signed in to the console through OpenID Connect");
    // The browser arrives here from the provider's site, so a redirect straight on would be
    // part of a cross-site navigation and the new SameSite=Strict cookie would not be sent with
    // it: a page of our own moves on instead.
    let home = access::home(&principal);
    let body = layout::page(
        "Signed in",
        None,
        None,
        html! {
            meta http-equiv="refresh" content=(format!("0;url={home}"));
            p { "You are signed in. " a href=(home) { "Continue" } }
        },
    );
    let mut response = body.into_response();
    for value in [session_cookie, oidc::state_cookie_removal(&state.sessions)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}
