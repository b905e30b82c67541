//! Modules shared by several test modules of this binary. Helpers the worker binaries (`bin/`) use as
//! well stay in the crate's library (`tests/lib.rs`, `actguard_tests`).

/// The compatibility fixture of release 0.1; `bin/make_compat_fixture.rs` writes it from the same file.
#[path = "../../fixtures/compat.rs"]
pub mod compat;

#[cfg(feature = "postgres")]
pub mod pg_support;

pub mod shipment_priority_scenario;
