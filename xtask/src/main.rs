//! `cargo xtask`: the project's own tasks, so that a fresh machine needs only
//! the Rust toolchain to set up, run and test batchwatch.
//!
//! - `cargo xtask setup`: installs what the build and the tests need
//!   (see `setup/` and docs/setup.md); every step is skipped when done.
//! - `cargo xtask run [-- ARGS]`: setup, release build, then the agent.
//! - `cargo xtask test [-- ARGS]`: setup, fmt, clippy, then `cargo test`.
//! - `cargo xtask bench`: setup, release builds, then the overhead benchmark
//!   (see `bench/` and docs/performance.md).

mod bench;
mod cmd;
mod run;
mod setup;
mod test;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "batchwatch's project tasks")]
struct Cli {
    /// Also print the read-only commands that setup runs to check each step.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need; skips what is already done.
    Setup,
    /// Set up, build the agent in release mode and run it (the live view by default).
    Run {
        /// Arguments for batchwatch, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then `cargo fmt --check`, clippy and `cargo test` (root: the eBPF tests load probes).
    Test {
        /// Arguments for `cargo test`, after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then measure batchwatch's overhead next to bpftrace's (root; about 10 minutes).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::set_verbose(cli.verbose);
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Run { args } => run::run(&args),
        Task::Test { args } => test::run(&args),
        Task::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain on one line; no backtrace, which would only
            // show xtask's own frames.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the folder above this package.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root")
}

/// Where cargo puts build output: `CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}
