//! The repository stands alone: a fresh clone with nothing beside it builds, tests and
//! benchmarks. No tracked file may lean on material outside the repository: a sibling
//! `../shared` directory (where the project's early tools and notes lived), or the SCST
//! notes `spec/scst.md` that code comments once cited. The project's own are
//! `scripts/conformance-score`, `scripts/vs-tgt` and `docs/scst-reference.md`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file names what it forbids.
const THIS_FILE: &str = "crates/scstd/tests/self_contained.rs";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The files git tracks, relative to the root; without git (an unpacked source tree),
/// every file outside build output and version control.
fn tracked_files(root: &Path) -> Vec<String> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output();
    if let Ok(out) = listed {
        if out.status.success() && !out.stdout.is_empty() {
            return String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "target" && name != ".git" {
                walk(root, &path, out);
            }
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// What in `line` points outside the repository, if anything.
fn outside_reference(line: &str) -> Option<&'static str> {
    const SHARED_ENTRIES: &[&str] = &[
        "shared/spec",
        "shared/conformance",
        "shared/bench",
        "shared/seeds",
        "shared/hooks",
        "shared/DESIGN.md",
        "shared/STYLE.md",
    ];
    if line.contains("../shared") {
        return Some("the sibling directory ../shared");
    }
    if SHARED_ENTRIES.iter().any(|e| line.contains(e)) {
        return Some("a path into shared/");
    }
    if line.contains("spec/scst.md") {
        return Some("spec/scst.md (cite docs/scst-reference.md)");
    }
    if cites_spec_section(line) {
        return Some("a `spec <section>` citation (cite scst-reference <section>)");
    }
    None
}

/// Whether `line` has the word `spec` followed by a section number, as in `(spec 6.5)`.
fn cites_spec_section(line: &str) -> bool {
    line.match_indices("spec ").any(|(at, _)| {
        let word_start = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '-');
        let number = line[at + "spec ".len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        word_start && number
    })
}

#[test]
fn citation_check_recognises_the_old_forms() {
    assert!(cites_spec_section(
        "// A later OutgoingUser wins (spec 6.5)."
    ));
    assert!(cites_spec_section("spec 2.4 says"));
    assert!(!cites_spec_section("a SPC-4 spec, not a section"));
    assert!(!cites_spec_section("scst-reference 6.5"));
    assert!(!cites_spec_section("inspec 3"));
    assert!(outside_reference("score=../shared/conformance/libiscsi-score").is_some());
    assert!(outside_reference("see /work/shared/spec/scst.md").is_some());
    assert!(outside_reference("(docs/scst-reference.md 2.5)").is_none());
    assert!(outside_reference("the range is taken shared/exclusive").is_none());
}

#[test]
fn no_tracked_file_refers_outside_the_repository() {
    let root = repo_root();
    let files = tracked_files(&root);
    assert!(
        files.iter().any(|f| f == "README.md") && files.len() > 50,
        "found the repository's files under {}: {} of them",
        root.display(),
        files.len()
    );
    let mut offences = Vec::new();
    for file in &files {
        if file == THIS_FILE {
            continue;
        }
        // Binary and non-UTF-8 files (images, corpora) carry no references.
        let Ok(text) = fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let Some(what) = outside_reference(line) else {
                continue;
            };
            offences.push(format!("{file}:{}: {what}: {}", n + 1, line.trim()));
        }
    }
    assert!(
        offences.is_empty(),
        "tracked files refer to material outside the repository (a fresh clone has \
         nothing beside it):\n{}",
        offences.join("\n")
    );
}
