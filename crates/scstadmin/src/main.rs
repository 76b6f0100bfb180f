//! scstadmin for scst-rs: SCST's option style (docs/scst-reference.md 3.4), talking to a running
//! scstd over its management socket (docs/management.md) instead of sysfs. It reports what
//! it does in SCST's scstadmin's words.
//!
//! Exit status (scstadmin(8)): 0 on success; 1 on an error, as SCST's; 2 on a usage
//! error; 3 when scstd is not running (nothing answers on the socket); 141 when standard
//! output is closed before the listing is written (as a process killed by SIGPIPE).

#![forbid(unsafe_code)]

use std::process::ExitCode;

/// Print one line to standard output, returning the write error (a closed pipe) to the
/// caller instead of panicking as `println!` does; `main` turns it into a quiet exit.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

mod apply;
mod args;
mod change;
mod list;
mod session;

use anyhow::Result;
use args::{parse_args, ArgError, Invocation, USAGE};
use session::{Admin, NotRunning};

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_RUNNING: u8 = 3;
/// 128 + SIGPIPE: what a shell reports for SCST's scstadmin writing into a closed pipe.
const EXIT_BROKEN_PIPE: u8 = 141;

/// The git commit of the build (set by the build script), empty when unknown.
const COMMIT: &str = env!("SCST_RS_COMMIT");

fn version_line() -> String {
    let version = env!("CARGO_PKG_VERSION");
    if COMMIT.is_empty() {
        format!("scstadmin (scst-rs) {version}")
    } else {
        format!("scstadmin (scst-rs) {version} (git {COMMIT})")
    }
}

/// Commands that name a target and take `-driver`, with where the target's name is.
fn target_name(inv: &Invocation) -> Option<&str> {
    match inv.command.as_str() {
        "rem_target" | "enable_target" | "disable_target" | "list_tgt_attr" | "set_tgt_attr"
        | "add_tgt_attr" | "rem_tgt_attr" => inv.value.as_deref(),
        _ => inv.options.get("target").map(String::as_str),
    }
}

/// `-driver` left out: the driver that has the named target, as SCST's scstadmin finds
/// it. Left unset when no driver or more than one has it (the command then says which
/// option it needs).
fn resolve_driver(a: &mut Admin, inv: &mut Invocation) -> Result<()> {
    if inv.options.contains_key("driver") {
        return Ok(());
    }
    let Some(t) = target_name(inv).map(str::to_string) else {
        return Ok(());
    };
    let mut found = Vec::new();
    for drv in scst_mgmt::apply::dirs(&a.list("targets")?) {
        if a.exists(&format!("targets/{drv}/{t}"))? {
            found.push(drv.to_string());
        }
    }
    if let [drv] = found.as_slice() {
        inv.options.insert("driver".into(), drv.clone());
    }
    Ok(())
}

fn run(mut inv: Invocation) -> Result<()> {
    // The whole file is checked before anything is read or changed.
    let file = apply::file_for(&inv)?;
    let socket = session::socket_path(inv.options.get("socket").map(String::as_str));
    let mut a = Admin::connect(&socket)?;
    resolve_driver(&mut a, &mut inv)?;
    let done = apply::run(&mut a, &inv, file)?
        || list::run(&mut a, &inv)?
        || change::run(&mut a, &inv)?.is_some();
    if !done {
        anyhow::bail!("-{}: not supported yet", inv.command);
    }
    if !apply::is_dry_run(&inv) {
        say!("\nAll done.");
    }
    Ok(())
}

/// The exit status for an error, and whether it is reported (a closed stdout is not).
fn classify(e: &anyhow::Error) -> (u8, bool) {
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return (EXIT_BROKEN_PIPE, false);
    }
    if e.downcast_ref::<NotRunning>().is_some() {
        return (EXIT_NOT_RUNNING, true);
    }
    (EXIT_ERROR, true)
}

/// Write to standard error; a closed stderr is no reason to panic.
fn complain(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty()
        || args
            .iter()
            .any(|a| a == "-h" || a == "-help" || a == "--help")
    {
        complain(USAGE);
        return ExitCode::from(EXIT_USAGE);
    }
    if args.iter().any(|a| a == "-version" || a == "--version") {
        use std::io::Write as _;
        return match writeln!(std::io::stdout(), "{}", version_line()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(EXIT_BROKEN_PIPE),
        };
    }
    let inv = match parse_args(args) {
        Ok(i) => i,
        Err(ArgError::Usage(m)) => {
            complain(&format!("scstadmin: {m}\n\n{USAGE}"));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(ArgError::NotYet(cmd)) => {
            complain(&format!("scstadmin: -{cmd}: not supported yet"));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match run(inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, report) = classify(&e);
            if report {
                // SCST's form, on standard error so that listings stay clean.
                complain(&format!(
                    "\nFATAL: Received the following error:\n\n\t{e}\n"
                ));
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Missing;

    #[test]
    fn every_exit_status_is_documented() {
        let guide = include_str!("../../../docs/management.md");
        let man = include_str!("../../../packaging/man/scstadmin.8");
        for code in [EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_BROKEN_PIPE] {
            assert!(guide.contains(&format!("\n| {code} | ")), "docs: {code}");
            assert!(man.contains(&format!(".TP\n.B {code}\n")), "man: {code}");
        }
    }

    #[test]
    fn version_line_names_the_package_version() {
        assert!(
            version_line().starts_with(concat!("scstadmin (scst-rs) ", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn a_closed_pipe_exits_quietly_and_a_missing_daemon_has_its_own_status() {
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(classify(&pipe), (EXIT_BROKEN_PIPE, false));
        let gone = anyhow::Error::from(NotRunning {
            socket: "/run/x.sock".into(),
            reason: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(classify(&gone), (EXIT_NOT_RUNNING, true));
        assert!(gone.to_string().contains("/run/x.sock"));
        let missing = anyhow::Error::from(Missing("No such device 'd' exists.".into()));
        assert_eq!(classify(&missing), (EXIT_ERROR, true));
    }
}
