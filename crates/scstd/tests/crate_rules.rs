//! Rules every workspace crate follows, so that a new crate (a transport, a dev handler,
//! a protocol engine) gets them without anyone remembering: it takes the workspace
//! lints; a crate that has no unsafe code forbids it, which keeps memory safety a
//! property of the few I/O modules that need unsafe; and only the crates that drive
//! sockets reach tokio, so that the wire crates, the protocol engines, the core and the
//! dev handlers stay testable without a runtime (docs/architecture.md: "Dependencies
//! point one way").

use std::collections::{BTreeMap, BTreeSet};
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

/// The crates that may depend on an async runtime: the target drivers (their tokio
/// connection drivers), the daemon and the CLI. Everything else is fed by them.
const RUNTIME_CRATES: &[&str] = &["scst-iscsi", "scst-vhost", "scstd", "scstadmin"];

/// Packages that mean a runtime or sockets underneath.
const RUNTIME_PACKAGES: &[&str] = &["tokio", "mio", "socket2"];

/// The names under a manifest's normal `[dependencies]` tables (target-specific ones
/// included; dev and build dependencies are not part of what the crate ships).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]"
                || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split(['=', '.', ' ']).next().unwrap_or("");
        if !key.is_empty() {
            deps.push(key.trim_matches('"').to_string());
        }
    }
    deps
}

/// Cargo.lock's dependency lists, by package name (versions merged).
fn lock_graph(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut name = String::new();
    let mut in_list = false;
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            in_list = false;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"').to_string();
            graph.entry(name.clone()).or_default();
        } else if line == "dependencies = [" {
            in_list = true;
        } else if line == "]" {
            in_list = false;
        } else if in_list {
            let dep = line.trim_matches(|c| c == '"' || c == ',');
            let dep = dep.split(' ').next().unwrap_or("").to_string();
            graph.entry(name.clone()).or_default().insert(dep);
        }
    }
    graph
}

/// Every package a workspace crate ships with: its normal dependencies, those of the
/// workspace crates among them (from their manifests), and the registry packages'
/// dependencies from Cargo.lock.
fn shipped_closure(
    start: &str,
    members: &BTreeMap<String, Vec<String>>,
    lock: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = members[start].clone();
    while let Some(dep) = todo.pop() {
        if !seen.insert(dep.clone()) {
            continue;
        }
        match members.get(&dep) {
            Some(deps) => todo.extend(deps.iter().cloned()),
            None => todo.extend(lock.get(&dep).into_iter().flatten().cloned()),
        }
    }
    seen
}

#[test]
fn only_the_socket_drivers_reach_a_runtime() {
    let members: BTreeMap<String, Vec<String>> = workspace_crates()
        .into_iter()
        .map(|(name, dir)| {
            let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("read Cargo.toml");
            (name, normal_dependencies(&manifest))
        })
        .collect();
    let lock = fs::read_to_string(crates_dir().join("../Cargo.lock")).expect("read Cargo.lock");
    let lock = lock_graph(&lock);
    assert!(
        shipped_closure("scstd", &members, &lock).contains("tokio"),
        "the closure sees through workspace crates to registry packages"
    );

    let mut offenders = Vec::new();
    for name in members.keys() {
        if RUNTIME_CRATES.contains(&name.as_str()) {
            continue;
        }
        let closure = shipped_closure(name, &members, &lock);
        let reached: Vec<&str> = RUNTIME_PACKAGES
            .iter()
            .copied()
            .filter(|p| closure.contains(*p))
            .collect();
        if !reached.is_empty() {
            offenders.push(format!("{name} reaches {reached:?}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "only {RUNTIME_CRATES:?} may depend on a runtime or sockets:\n  {}",
        offenders.join("\n  ")
    );
}

/// Whether a line of Rust names `Result<…, String>`: an error that is only text, which
/// its caller can neither match on nor map to a wire status or an errno.
fn string_error(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.split("Result<").skip(1).any(|rest| {
        rest.split('>')
            .next()
            .is_some_and(|args| args.ends_with(", String"))
    })
}

/// Files of a library's sources that only tests compile.
fn is_test_source(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "test_util.rs"
}

#[test]
fn library_code_returns_typed_errors() {
    let mut offenders = Vec::new();
    for (name, dir) in workspace_crates() {
        if !dir.join("src/lib.rs").is_file() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        let bins = dir.join("src/bin");
        for file in files {
            if is_test_source(&file) || file.ends_with("src/main.rs") || file.starts_with(&bins) {
                continue;
            }
            let text = fs::read_to_string(&file).expect("read a source file");
            // A test module at the end of a file is test code too.
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or(&text);
            for (i, line) in code.lines().enumerate() {
                if string_error(line) {
                    let rel = file
                        .strip_prefix(&dir)
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    offenders.push(format!("{name}/{rel}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code returns a String as its error; give it a typed error (thiserror):\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn the_rules_read_what_they_mean() {
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nscsi-wire.workspace = true\n\
                    log = \"0.4\"\n\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n\
                    [dev-dependencies]\ntokio = \"1\"\n";
    assert_eq!(normal_dependencies(manifest), ["scsi-wire", "log", "libc"]);
    let lock = lock_graph(
        "[[package]]\nname = \"a\"\ndependencies = [\n \"b 1.0.0\",\n \"c\",\n]\n\n\
         [[package]]\nname = \"c\"\nversion = \"1\"\n",
    );
    assert_eq!(
        lock["a"],
        BTreeSet::from(["b".to_string(), "c".to_string()])
    );
    assert!(lock["c"].is_empty());
    // A member reaches tokio through another member and a registry package.
    let members = BTreeMap::from([
        ("a".to_string(), vec!["b".to_string()]),
        ("b".to_string(), vec!["ext".to_string()]),
    ]);
    let lock = BTreeMap::from([("ext".to_string(), BTreeSet::from(["tokio".to_string()]))]);
    assert!(shipped_closure("a", &members, &lock).contains("tokio"));

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

    assert!(string_error("fn f(v: &str) -> Result<(), String> {"));
    assert!(string_error(
        "    pub fn g() -> io::Result<Result<u32, String>> {"
    ));
    assert!(!string_error("fn f() -> Result<(), ParseError> {"));
    assert!(!string_error("fn f() -> Result<Vec<String>, Error> {"));
    assert!(!string_error("// a Result<(), String> in a comment"));
}
