//! The git commit the binaries were built from, for `--version`: `SCST_RS_COMMIT` when
//! set (a build from a source tarball can pass it), else `git rev-parse` when building
//! inside a git checkout, else nothing. scstadmin's manifest points at this script too.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    // Without any rerun-if line cargo would rerun this on every change to the package.
    println!("cargo:rerun-if-env-changed=SCST_RS_COMMIT");
    let commit = std::env::var("SCST_RS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
            // Rebuilt when HEAD moves: HEAD itself (a checkout) and the branch it names
            // (a commit); --git-path finds both in a linked worktree too.
            for p in [
                Some("HEAD".to_string()),
                git(&["symbolic-ref", "-q", "HEAD"]),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(path) = git(&["rev-parse", "--git-path", &p]) {
                    if Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
            }
            Some(commit)
        })
        .unwrap_or_default();
    println!("cargo:rustc-env=SCST_RS_COMMIT={commit}");
}
