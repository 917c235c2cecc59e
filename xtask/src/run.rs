//! `cargo xtask run [-- ARGS]`: set up, build the agent in release mode, and
//! replace this process with it, so that it owns the terminal (the live view
//! needs it) and its exit code is the task's.

use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::Context as _;

use crate::{cmd, setup, target_dir, workspace_root};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    cmd::run(Command::new("cargo").current_dir(workspace_root()).args(["build", "--release", "-p", "batchwatch"]))
        .context("building batchwatch")?;

    let binary = target_dir().join("release").join("batchwatch");
    let mut agent = Command::new(&binary);
    agent.args(args);
    eprintln!("  $ {}", cmd::display(&agent));
    // `exec` only returns when it failed.
    let error = agent.exec();
    Err(error).with_context(|| format!("could not start {}", binary.display()))
}
