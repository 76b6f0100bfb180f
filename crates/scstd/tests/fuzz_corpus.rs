//! Replays the checked-in fuzz corpora (fuzz/corpus/<target>/*) through the same entry
//! points the cargo-fuzz targets call, so that the normal test command keeps every
//! input that once mattered (seeds, minimized coverage, past crashes) passing on stable.

#[allow(dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_entry;

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    for f in &files {
        let data = std::fs::read(f).expect("read corpus file");
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{target}: {} panics", f.display());
    }
}

#[test]
fn pdu_decode() {
    replay("pdu_decode", fuzz_entry::pdu_decode::run);
}

#[test]
fn text_negotiate() {
    replay("text_negotiate", fuzz_entry::text_negotiate::run);
}

#[test]
fn cdb_parse() {
    replay("cdb_parse", fuzz_entry::cdb_parse::run);
}

#[test]
fn pr_params() {
    replay("pr_params", fuzz_entry::pr_params::run);
}

#[test]
fn scst_conf() {
    replay("scst_conf", fuzz_entry::scst_conf::run);
}

#[test]
fn mgmt_command() {
    replay("mgmt_command", fuzz_entry::mgmt_command::run);
}

#[test]
fn isns_message() {
    replay("isns_message", fuzz_entry::isns_message::run);
}

#[test]
fn login_session() {
    replay("login_session", fuzz_entry::login_session::run);
}

#[test]
fn login_to_logout() {
    replay("login_to_logout", fuzz_entry::login_to_logout::run);
}

/// The hand-written seeds log in and reach their end (a logout, or the cold reset
/// one of them asks for): a target that never got past the login would fuzz nothing.
#[test]
fn login_to_logout_seeds_reach_the_full_feature_phase() {
    use fuzz_entry::login_to_logout::session;
    use iscsi_engine::full_feature::Ending;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/login_to_logout");
    for name in [
        "seed-login-logout",
        "seed-read-answered",
        "seed-write-r2t",
        "seed-abort-waiting-write",
        "seed-lun-reset-later",
        "seed-nop-out-with-login",
    ] {
        let data = std::fs::read(dir.join(name)).expect("seed");
        assert_eq!(session(&data), Some(Ending::Logout), "{name}");
    }
    let data = std::fs::read(dir.join("seed-nop-text-time-cold-reset")).expect("seed");
    assert_eq!(session(&data), Some(Ending::ColdReset));
}

#[test]
fn full_feature() {
    replay("full_feature", fuzz_entry::full_feature::run);
}
