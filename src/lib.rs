//! warden: the permission-decision service of a web-analytics suite.
//!
//! Layers: `service` (gRPC handlers: parse, call, translate) → `engine`
//! (publishes the index, runs writes one at a time) → `index` (pure,
//! in-memory decisions and write rules) and `store` (sea-orm, SQLite or
//! PostgreSQL). `model` holds the plain types they share.

pub mod config;
pub mod dataset;
pub mod engine;
pub mod huge_pages;
pub mod index;
pub mod malloc;
pub mod model;
pub mod server;
pub mod service;
pub mod store;

/// Code generated from `proto/warden/v1/*.proto`: messages, server traits and
/// the Rust client other services use to call warden.
pub mod pb {
    tonic::include_proto!("warden.v1");

    /// Encoded descriptors of warden's protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/warden_descriptor.bin"));
}
