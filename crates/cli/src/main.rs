//! The `atlasnorm` binary: the command line of [`atlasnorm_cli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(atlasnorm_cli::run(std::env::args_os(), true))
}
