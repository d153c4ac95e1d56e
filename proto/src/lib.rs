//! The `cairn.v1` protocol: protobuf messages and tonic client/server code
//! generated from `proto/cairn/v1/*.proto` by `build.rs` at build time.
//!
//! # Layout
//! - [`v1`]: messages and the `Retrieval` and `Indexer` services (client and server).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.

/// Messages and services of package `cairn.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.v1");
}

/// Encoded `FileDescriptorSet` of every `cairn.v1` file, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cairn_v1_descriptor");
