//! What the property tests of several layers share (test builds only; imports nothing of pipe).

use proptest::prelude::ProptestConfig;

/// 64 cases unless `PROPTEST_CASES` says otherwise.
pub(crate) fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}
