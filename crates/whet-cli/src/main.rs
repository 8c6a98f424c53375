//! The `whet` binary: parse the command line, run, print errors, exit with 0 / 1 / 2.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = whet_cli::main_with_args(std::env::args_os());
    ExitCode::from(code)
}
