//! The behaviour tests of actguard, one module per subject, in one test binary: one link step instead
//! of one per file. A test is named by its module: `cargo test -p actguard-tests --test it claims::`.
//!
//! Every `#[agent_action]` of every module registers into the one registry of this binary, and every
//! agent built here audits all of them: action names are unique across the modules, and a test that
//! looks at the registry or the tool set filters it to its own module's actions. Two tests need a
//! process of their own and stay separate binaries (see `Cargo.toml`): `agent_startup` registers two
//! actions under one name, which would stop every agent of this binary, and `default_store` changes
//! the working directory of the process.

mod support;

mod approval;
mod attempt_budget;
mod backoff_properties;
mod claims;
#[cfg(feature = "reqwest")]
mod classifiers_http;
#[cfg(feature = "postgres")]
mod classifiers_postgres;
mod compat_store;
mod compensate_signature;
mod conformance_memory;
#[cfg(feature = "postgres")]
mod conformance_postgres;
mod conformance_sqlite;
#[cfg(feature = "browser")]
mod console_browser;
mod crash;
mod duplicate_disbursement;
mod escalation_loop;
mod guard_call;
mod input_limits;
mod key_templates;
mod log_chain;
mod log_columns;
#[cfg(feature = "postgres")]
mod log_columns_postgres;
mod log_roundtrip;
mod observability;
mod operators;
mod outcomes;
#[cfg(feature = "postgres")]
mod postgres_errors;
#[cfg(feature = "postgres")]
mod postgres_processes;
#[cfg(feature = "postgres")]
mod postgres_tls;
mod quarantine;
mod redaction;
mod renewal;
mod shipment_priority;
#[cfg(feature = "postgres")]
mod shipment_priority_postgres;
mod storage_errors;
mod store_files;
mod tamper;
mod tiered_failures;
mod tools;
#[cfg(feature = "webhook")]
mod webhook;
mod work_order_race;
