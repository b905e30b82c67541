//! Compile-time behaviour of `#[agent_action]` and `#[derive(Classify)]`.
//! Regenerate the expected messages with `TRYBUILD=overwrite`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
