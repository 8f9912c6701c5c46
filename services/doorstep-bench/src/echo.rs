//! The echo phase's method: a trivial unary call served by the same server, behind the same
//! layers (telemetry, authentication, rate limit) as `LogComplaint`, so intake ÷ echo is what
//! Doorstep adds beside gRPC itself. Bench-only: `doorstep` never serves it.

use doorstep_server::Application;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

#[allow(clippy::pedantic, clippy::nursery, missing_docs)]
pub mod proto {
    tonic::include_proto!("doorstep.bench.v1");
}

use proto::echo_service_server::{EchoService, EchoServiceServer};
use proto::{EchoRequest, EchoResponse};

/// Answers every call with its own text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            text: request.into_inner().text,
        }))
    }
}

/// The application with the echo service mounted beside the API.
pub fn mounted_on(application: Application) -> Application {
    application.serve_also(Routes::new(EchoServiceServer::new(Echo)))
}
