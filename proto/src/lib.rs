//! Herald's gRPC contract, `herald.v1`, generated from `proto/herald/v1/*.proto`.
//!
//! [`convert`] turns wire messages into the stored model and back; it is the
//! only place that knows both shapes.

#![allow(clippy::derive_partial_eq_without_eq)]

pub mod convert;
pub mod server;

pub mod v1 {
    tonic::include_proto!("herald.v1");
}

/// Encoded `FileDescriptorSet` of `herald.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald_descriptor");
