//! The Store conformance suite, run against `MemoryStore`.

actguard::conformance_suite!(actguard::MemoryStore::new());
