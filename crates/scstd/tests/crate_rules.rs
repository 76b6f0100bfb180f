//! Rules every workspace crate follows, so that a new crate (a transport, a dev handler,
//! a protocol engine) gets them without anyone remembering: it takes the workspace
//! lints, and a crate that has no unsafe code forbids it, which keeps memory safety a
//! property of the few I/O modules that need unsafe.

use std::fs;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the crates directory exists")
}

/// Every workspace member (`members = ["crates/*"]`): its name and directory.
fn workspace_crates() -> Vec<(String, PathBuf)> {
    let mut crates: Vec<_> = fs::read_dir(crates_dir())
        .expect("read crates/")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, p)
        })
        .collect();
    crates.sort();
    assert!(
        crates.len() >= 8,
        "found the workspace's crates: {crates:?}"
    );
    crates
}

/// Whether a manifest has `[lints]` with `workspace = true` (or `lints.workspace = true`).
fn takes_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
            continue;
        }
        let setting = line.replace(' ', "");
        if (in_lints && setting == "workspace=true") || setting == "lints.workspace=true" {
            return true;
        }
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether a line of Rust uses `unsafe` in code (not in a comment or a lint name).
fn uses_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == "unsafe")
}

/// The crate roots of a package's library and binaries.
fn crate_roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|r| dir.join(r))
        .filter(|p| p.is_file())
        .collect();
    rust_files(&dir.join("src/bin"), &mut roots);
    roots
}

#[test]
fn every_crate_takes_the_workspace_lints() {
    let missing: Vec<String> = workspace_crates()
        .into_iter()
        .filter(|(_, dir)| {
            let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("read Cargo.toml");
            !takes_workspace_lints(&manifest)
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        missing.is_empty(),
        "add a `[lints]` table with `workspace = true` to the Cargo.toml of: {missing:?}"
    );
}

#[test]
fn crates_without_unsafe_code_forbid_it() {
    let mut missing = Vec::new();
    for (name, dir) in workspace_crates() {
        let mut sources = Vec::new();
        rust_files(&dir.join("src"), &mut sources);
        let has_unsafe = sources.iter().any(|f| {
            let text = fs::read_to_string(f).expect("read source");
            text.lines().any(uses_unsafe)
        });
        if has_unsafe {
            continue;
        }
        for root in crate_roots(&dir) {
            let text = fs::read_to_string(&root).expect("read crate root");
            if !text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]") {
                let rel = root.strip_prefix(&dir).unwrap_or(&root);
                missing.push(format!("{name}: {}", rel.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these crates have no unsafe code: add #![forbid(unsafe_code)] to\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_rules_read_what_they_mean() {
    assert!(takes_workspace_lints(
        "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
    ));
    assert!(takes_workspace_lints("[package]\nlints.workspace = true\n"));
    assert!(!takes_workspace_lints(
        "[lints]\n\n[dependencies]\nworkspace = true\n"
    ));
    assert!(!takes_workspace_lints("[package]\nname = \"x\"\n"));

    assert!(uses_unsafe("    let n = unsafe { libc::geteuid() };"));
    assert!(uses_unsafe("unsafe fn raw() {}"));
    assert!(!uses_unsafe("#![forbid(unsafe_code)]"));
    assert!(!uses_unsafe("    // no unsafe here"));
    assert!(!uses_unsafe("let not_unsafe = 1;"));
}
