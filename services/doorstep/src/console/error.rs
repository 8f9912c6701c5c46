//! What can go wrong on a page, and the page each answers with. Not-found pages are identical
//! whatever was not found, so another contractor's records read exactly as missing ones.

use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use super::layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in first")]
    SignedOut,
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("the form is out of date")]
    MissingCsrfToken,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unavailable")]
    Unavailable,
    #[error("the sign-in did not complete")]
    SignInFailed,
    #[error("the signed-in user has no Doorstep role")]
    NoRole,
    #[error("internal error")]
    Internal,
}

impl From<super::session::SessionError> for ConsoleError {
    fn from(error: super::session::SessionError) -> Self {
        tracing::error!(error = %crate::error::chain(&error), "the console's session store failed");
        Self::Internal
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            Self::SignedOut => return Redirect::to("/sign-in").into_response(),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address, or it is not yours to see.".to_owned(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this page or action.".to_owned(),
            ),
            Self::MissingCsrfToken => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from a page of this session, so nothing was changed. \
                 Go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "Check what you asked for",
                message.clone(),
            ),
            Self::Conflict(message) => (StatusCode::CONFLICT, "Changed meanwhile", message.clone()),
            Self::SignInFailed => (
                StatusCode::UNAUTHORIZED,
                "Sign-in did not complete",
                "Your organisation's sign-in did not complete or took too long. Start again from \
                 the sign-in page."
                    .to_owned(),
            ),
            Self::NoRole => (
                StatusCode::FORBIDDEN,
                "No access to Doorstep",
                "You are signed in with your organisation, but your account has no Doorstep role. \
                 Ask your administrator to add you to a Doorstep group."
                    .to_owned(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service is busy or restarting.".to_owned(),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error has been logged.".to_owned(),
            ),
        };
        (status, layout::message(title, None, &text)).into_response()
    }
}
