//! `cargo xtask setup`: makes this machine able to build and test batchwatch.
//!
//! Each step first looks whether its work is done, prints one line saying
//! what it found or what it is about to do, and only then changes anything.
//! Running setup twice therefore does nothing the second time. A step that
//! fails stops setup with the step's name, the error, and how to do the step
//! by hand. docs/setup.md describes the steps for people.

mod apt;
mod bpf_linker;
mod kernel;
mod pip;
mod step;
pub mod toolchain;

use std::time::Instant;

use anyhow::anyhow;

use self::step::{Plan, Step};

/// The steps, in order: packages first (nothing later needs them, but they
/// are the longest wait on a fresh machine and the one a person most often
/// has to do by hand), then the eBPF build toolchain, then the kernel.
fn steps() -> [Step; 8] {
    [
        apt::STEP,
        toolchain::NIGHTLY_STEP,
        toolchain::MUSL_STEP,
        bpf_linker::STEP,
        pip::STEP,
        kernel::TRACEFS_STEP,
        kernel::BTF_STEP,
        kernel::ROOT_STEP,
    ]
}

/// Runs every step, stopping at the first that fails.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut warnings = 0;
    for step in steps() {
        let plan = (step.plan)().map_err(|error| failed(&step, &error))?;
        match plan {
            Plan::Done(what) => eprintln!("setup: {:<12} ok: {what}", step.name),
            Plan::Warn(what) => {
                warnings += 1;
                eprintln!("setup: {:<12} WARNING: {what}", step.name);
            }
            Plan::Do(what, work) => {
                eprintln!("setup: {:<12} {what}", step.name);
                let step_started = Instant::now();
                work().map_err(|error| failed(&step, &error))?;
                eprintln!("setup: {:<12} done in {:.1?}", step.name, step_started.elapsed());
            }
        }
    }
    if warnings > 0 {
        eprintln!("setup: finished in {:.1?} with {warnings} warning(s) above", started.elapsed());
    }
    Ok(())
}

fn failed(step: &Step, error: &anyhow::Error) -> anyhow::Error {
    anyhow!(
        "setup step `{}` failed: {error:#}\n\nTo do this step by hand:\n{}\n\nThen run `cargo xtask setup` again.",
        step.name,
        (step.by_hand)(),
    )
}
