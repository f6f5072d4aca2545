//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of fixed
//! crashes (`fuzz/regressions/<target>/`) through the checks the fuzz targets run, so CI
//! keeps them passing without libFuzzer or nightly Rust.

use std::path::{Path, PathBuf};

use berth_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file under `dir` (none if it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

fn replay(kind: &str, must_exist: bool) {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let files = inputs(&fuzz_dir().join(kind).join(target));
        assert!(
            !must_exist || !files.is_empty(),
            "fuzz/{kind}/{target} holds no inputs"
        );
        for file in files {
            let data = std::fs::read(&file).expect("readable");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failing inputs: {failures:#?}");
}

#[test]
fn the_corpus_passes_every_check() {
    replay("corpus", true);
}

#[test]
fn fixed_crashes_stay_fixed() {
    replay("regressions", false);
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (target, _) in TARGETS {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}
