//! The `whet` binary: parse the command line, run, print errors, exit with 0 / 1 / 2.

use std::process::ExitCode;

/// polars' counting allocator over the system one: its streaming engine spills to disk when the
/// allocations it counts exceed its budget (`POLARS_OOC_MEMORY_BUDGET_MB`).
#[global_allocator]
static ALLOC: polars_ooc::Allocator = polars_ooc::Allocator;

fn main() -> ExitCode {
    let code = whet_cli::main_with_args(std::env::args_os());
    ExitCode::from(code)
}
