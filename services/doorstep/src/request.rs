//! What every write handler takes from a gRPC request besides its body.

use doorstep_domain::input::RequestKey;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::error::ApiError;
use doorstep_commands::CommandOrigin;

/// Who sent the request, how, with which request id, and a digest of the method and body that
/// tells a retry from a different request reusing the id. The method is part of the digest
/// because several calls share a body shape: a close and a reopen with the same id, request id and
/// reason are different requests.
///
/// The actor is the authenticated principal the guard resolved, never anything the caller wrote
/// in the request.
pub fn command_origin<T: Message>(
    request: &Request<T>,
    request_id: Option<RequestKey>,
    source_channel: &str,
) -> Result<CommandOrigin, ApiError> {
    let actor = crate::auth::principal(request)?.subject.clone();
    Ok(CommandOrigin {
        actor,
        source_channel: source_channel.to_owned(),
        request_id,
        fingerprint: fingerprint(request),
    })
}

/// The longest a query waits for the read models to reach a caller's `min_position`.
const MAX_READ_YOUR_WRITES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Read-your-writes: waits until the read models have applied `min_position` (the position a
/// write returned), or answers DEADLINE_EXCEEDED after a bounded wait.
pub async fn wait_for_read_model(
    read_model: &doorstep_projections::ReadModel,
    min_position: Option<u64>,
) -> Result<(), crate::error::ApiError> {
    let Some(position) = min_position else {
        return Ok(());
    };
    if read_model
        .wait_for(position, MAX_READ_YOUR_WRITES_WAIT)
        .await
    {
        Ok(())
    } else {
        Err(crate::error::ApiError::ReadModelBehind(position))
    }
}

fn fingerprint<T: Message>(request: &Request<T>) -> String {
    let method = request.extensions().get::<tonic::GrpcMethod>().map_or_else(
        || std::any::type_name::<T>().to_owned(),
        |method| format!("{}/{}", method.service(), method.method()),
    );
    let mut digest = Sha256::new();
    digest.update(method.as_bytes());
    digest.update([0]);
    digest.update(request.get_ref().encode_to_vec());
    format!("{:x}", digest.finalize())
}
