//! The console's way into the API: the gRPC services' own implementations, called in-process
//! with the signed-in principal in the request's extensions, exactly where the auth layer puts
//! it. Every call is first checked against the policy table, as the auth layer would; the
//! handlers then confine contractors and validate as they do for gRPC callers, so a page can
//! show nothing and do nothing the API would not.

use std::future::Future;
use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use super::access::may_call;
use super::error::ConsoleError;
use crate::auth::Principal;
use crate::complaints::ComplaintApi;
use crate::contractors::ContractorApi;
use crate::escalations::EscalationApi;
use crate::performance::PerformanceApi;

/// The API's services, shared with the gRPC server.
#[derive(Clone)]
pub struct Services {
    pub complaints: Arc<ComplaintApi>,
    pub contractors: Arc<ContractorApi>,
    pub performance: Arc<PerformanceApi>,
    pub escalations: Arc<EscalationApi>,
}

/// Calls `method` for `principal` with `body`, if the policy lets it: `call` is the service's
/// trait method, given the request as the auth layer would hand it on.
pub async fn call<T, R, F, Fut>(
    principal: &Principal,
    method: &'static str,
    body: T,
    call: F,
) -> Result<R, ConsoleError>
where
    F: FnOnce(Request<T>) -> Fut,
    Fut: Future<Output = Result<Response<R>, Status>>,
{
    if !may_call(principal, method) {
        return Err(ConsoleError::Forbidden);
    }
    let mut request = Request::new(body);
    request.extensions_mut().insert(principal.clone());
    call(request)
        .await
        .map(Response::into_inner)
        .map_err(|status| from_status(&status))
}

/// The page a gRPC status becomes.
fn from_status(status: &Status) -> ConsoleError {
    match status.code() {
        Code::NotFound => ConsoleError::NotFound,
        Code::PermissionDenied => ConsoleError::Forbidden,
        Code::Unauthenticated => ConsoleError::SignedOut,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ConsoleError::BadRequest(status.message().to_owned())
        }
        Code::Aborted | Code::AlreadyExists => ConsoleError::Conflict(status.message().to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            ConsoleError::Unavailable
        }
        // The service has logged the cause already (error.rs).
        _ => ConsoleError::Internal,
    }
}
