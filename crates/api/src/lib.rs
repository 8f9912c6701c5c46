//! The `doorstep.v1` gRPC API, generated from `proto/` at build time.

/// Messages, clients and servers of package `doorstep.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("doorstep.v1");
}

/// The encoded `FileDescriptorSet` of every Doorstep proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("doorstep_descriptor");
