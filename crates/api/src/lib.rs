//! The `doorstep.v1` gRPC API, generated from `proto/` at build time.

/// Messages, clients and servers of package `doorstep.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("doorstep.v1");
}

/// The encoded `FileDescriptorSet` of every Doorstep proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("doorstep_descriptor");

/// One RPC of the API, as the descriptor set describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiMethod {
    /// `package.Service/Method`, the gRPC path without its leading slash.
    pub path: String,
    pub server_streaming: bool,
}

/// Every method of every Doorstep service, read from [`FILE_DESCRIPTOR_SET`]: a method added to
/// `proto/` is listed without anyone naming it.
pub fn methods() -> Result<Vec<ApiMethod>, prost::DecodeError> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| ApiMethod {
                    path: format!("{}.{}/{}", file.package(), service.name(), method.name()),
                    server_streaming: method.server_streaming(),
                })
            })
        })
        .collect())
}
