//! Integration tests through the real gRPC API, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod lifecycle;
mod rules;
mod validation;
