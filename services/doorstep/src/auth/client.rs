//! The client side of a credential: what `doorstep report`, the benchmarks and the tests attach
//! to every call.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel whose every call carries a credential.
pub type AuthenticatedChannel = InterceptedService<Channel, CallerCredential>;

/// A credential sent as gRPC metadata on every call. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct CallerCredential {
    header: Option<(&'static str, MetadataValue<Ascii>)>,
}

/// A credential that cannot be sent as a header (it holds characters headers may not).
#[derive(Debug, thiserror::Error)]
#[error("the credential holds characters a gRPC header cannot carry")]
pub struct UnsendableCredential;

impl CallerCredential {
    /// `authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Result<Self, UnsendableCredential> {
        let mut value =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| UnsendableCredential)?;
        value.set_sensitive(true);
        Ok(Self {
            header: Some(("authorization", value)),
        })
    }

    /// `x-api-key: <key>`.
    pub fn api_key(key: &str) -> Result<Self, UnsendableCredential> {
        let mut value = MetadataValue::try_from(key.trim()).map_err(|_| UnsendableCredential)?;
        value.set_sensitive(true);
        Ok(Self {
            header: Some((super::guard::API_KEY_HEADER, value)),
        })
    }

    /// No credential: only public methods (health) will answer.
    pub fn none() -> Self {
        Self { header: None }
    }

    /// `channel` with this credential on every call.
    pub fn attach(self, channel: Channel) -> AuthenticatedChannel {
        InterceptedService::new(channel, self)
    }
}

impl std::fmt::Debug for CallerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.header {
            Some((name, _)) => write!(f, "CallerCredential({name}: [redacted])"),
            None => f.write_str("CallerCredential(none)"),
        }
    }
}

impl Interceptor for CallerCredential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some((name, value)) = &self.header {
            request.metadata_mut().insert(*name, value.clone());
        }
        Ok(request)
    }
}
