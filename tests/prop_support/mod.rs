//! Helpers shared by the property-test files (`mod prop_support;`).

use proptest::prelude::ProptestConfig;
use proptest::sample::Index;

/// `cases` unless `PROPTEST_CASES` says otherwise.
pub fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        // Failures print their minimal input; nothing is written to tests/.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// Turns random indices into sorted cut points within `0..=len`.
pub fn cuts(indices: &[Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = indices.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}
