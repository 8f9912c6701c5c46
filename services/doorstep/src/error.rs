//! The one place where every error becomes a `tonic::Status`. Handlers work in [`ApiError`]
//! (every lower error converts into it with `?`) and answer through [`answer`].

use doorstep_commands::{Failure, Refusal};
use doorstep_domain::{DomainError, InvalidInput};
use doorstep_projections::ProjectionError;
use doorstep_store::StoreError;
use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Every way a call can fail, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The Code does not allow this step now.
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the record is at version {actual}, not the expected {expected}")]
    VersionConflict { expected: u64, actual: u64 },
    /// Other writers kept changing the record while this command was being decided.
    #[error("the record kept changing while this command was decided; retry it")]
    Contention,
    #[error("the read model has not reached position {0} yet")]
    ReadModelBehind(u64),
    #[error("the service is shutting down")]
    Unavailable,
    /// No credential, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential whose roles do not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller has used up its share of calls for now.
    #[error("too many calls from this credential; slow down and retry")]
    RateLimited,
    /// Anything the caller cannot fix; logged with its cause chain, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotAllowed(message) => Self::NotAllowed(message),
            DomainError::InvalidInput(input) => Self::InvalidInput(input),
            DomainError::NotFound => Self::NotFound("no complaint has this id".to_owned()),
            DomainError::EscalationNotFound => {
                Self::NotFound("the complaint has no escalation with this id".to_owned())
            }
            // The operator can fix this one, so the caller is told how.
            DomainError::OutsideCalendar { field, error } => Self::InvalidInput(InvalidInput::new(
                field,
                format!(
                    "{error}; a calendar that covers it is set with `calendar.bank_holidays_file`"
                ),
            )),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Domain(error) => error.into(),
            error @ Refusal::NotFound { .. } => Self::NotFound(error.to_string()),
            Refusal::VersionConflict { expected, actual } => {
                Self::VersionConflict { expected, actual }
            }
            error @ Refusal::KeyReused { .. } => Self::AlreadyExists(error.to_string()),
            Refusal::Contention => Self::Contention,
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Store(error) => error.into(),
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Closed => Self::Unavailable,
            other => Self::internal(other),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::InvalidPageToken => Self::InvalidInput(InvalidInput::new(
                "page_token",
                "is not a token this service issued",
            )),
            other => Self::internal(other),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidInput(input) => {
                let message = format!("{}: {}", input.field, input.reason);
                let details = ErrorDetails::with_bad_request_violation(input.field, input.reason);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotAllowed(message) => Status::failed_precondition(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            error @ (ApiError::VersionConflict { .. } | ApiError::Contention) => {
                Status::aborted(error.to_string())
            }
            error @ ApiError::ReadModelBehind(_) => Status::deadline_exceeded(error.to_string()),
            ApiError::Unavailable => Status::unavailable("the service is shutting down"),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            error @ ApiError::RateLimited => Status::resource_exhausted(error.to_string()),
            ApiError::Internal(source) => {
                tracing::error!(error = %ErrorChain(source.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// A handler's answer: its message, or its error as the caller's status.
pub fn answer<T>(result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// Implements a generated tonic service trait for an API type whose own methods, one per RPC and
/// of the same names, answer in [`ApiError`]: each trait method calls its namesake and
/// [`answer`]s, so the impls differ only in their request and response types.
macro_rules! answered_by {
    (
        $(#[$attr:meta])*
        $service:path, $api:ty {
            $(type $stream:ident = $stream_type:ty;)*
            $(fn $method:ident($request:ty) -> $response:ty;)+
        }
    ) => {
        $(#[$attr])*
        #[tonic::async_trait]
        impl $service for $api {
            $(type $stream = $stream_type;)*
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, tonic::Status> {
                    $crate::error::answer(<$api>::$method(self, request).await)
                }
            )+
        }
    };
}
pub(crate) use answered_by;

/// Displays an error with every cause after it.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Displays an error with every cause after it, for logs outside the gRPC path (the console).
pub fn chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> impl std::fmt::Display + 'a {
    ErrorChain(error)
}
