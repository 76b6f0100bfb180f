#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{}", scstd::USAGE);
        return ExitCode::SUCCESS;
    }
    if std::env::args()
        .skip(1)
        .any(|a| a == "-V" || a == "--version")
    {
        println!("{}", scstd::version_line("scstd"));
        return ExitCode::SUCCESS;
    }
    let args = match scstd::Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scstd: {e}\n\n{}", scstd::USAGE);
            return ExitCode::from(2);
        }
    };
    match scstd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scstd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
