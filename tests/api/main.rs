//! Integration tests through the real gRPC API, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod lifecycle;
mod lookups;
mod model_check;
mod reference;
mod replicas;
mod rules;
mod validation;
mod watch;
mod writes;
