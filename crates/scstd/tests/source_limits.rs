//! The repository's size rule: no Rust source file outside tests is over 1,000 lines.
//! A file that long holds more than one idea; splitting it into modules is what makes
//! the layout show the architecture. Test code is exempt: files named `tests.rs` or
//! `*_tests.rs`, and everything under a `tests/` directory.

use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1_000;

/// Directories that hold no sources of ours: build output, version control, and the
/// fuzz corpora (inputs, not code).
const SKIPPED_DIRS: &[&str] = &["target", ".git", "corpus"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// Every `.rs` file under `dir`, as paths relative to `root`.
fn rust_sources(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name) && !name.starts_with('.') {
                rust_sources(root, &path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(
                path.strip_prefix(root)
                    .expect("under the root")
                    .to_path_buf(),
            );
        }
    }
}

fn line_count(path: &Path) -> usize {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.iter().filter(|&&b| b == b'\n').count()
}

#[test]
fn no_source_file_outside_tests_is_over_the_limit() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_sources(&root, &root, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("crates/scst-core/src/lib.rs")),
        "the walk found the workspace's sources"
    );

    let mut oversized = Vec::new();
    for rel in files.iter().filter(|f| !is_test_file(f)) {
        let lines = line_count(&root.join(rel));
        if lines > MAX_LINES {
            oversized.push(format!("{} ({lines} lines)", rel.display()));
        }
    }
    assert!(
        oversized.is_empty(),
        "over {MAX_LINES} lines: split these into modules:\n  {}",
        oversized.join("\n  ")
    );
}

#[test]
fn test_files_are_told_apart_from_sources() {
    for test in [
        "crates/scst-core/src/copy_tests.rs",
        "crates/scst-mgmt/src/conf/tests.rs",
        "crates/scstd/tests/e2e.rs",
        "crates/scstd/tests/common/mod.rs",
    ] {
        assert!(is_test_file(Path::new(test)), "{test} is test code");
    }
    for source in [
        "crates/scst-core/src/copy.rs",
        "crates/scst-mgmt/src/conf/mod.rs",
        "crates/scst-core/src/contests.rs",
        "fuzz/src/lib.rs",
    ] {
        assert!(
            !is_test_file(Path::new(source)),
            "{source} is not test code"
        );
    }
}
