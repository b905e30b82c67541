//! The Store conformance suite against `PostgresStore`, each test in its own fresh schema (dropped at
//! the end). Needs a server: `ACTGUARD_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.

use crate::support::pg_support;

actguard::conformance_suite!(pg_support::fresh_fixture().await);
