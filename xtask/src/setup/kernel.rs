//! What the kernel side needs: tracefs mounted (tracepoints are attached by
//! name through it), BTF, and root to load programs.

use std::{path::Path, process::Command};

use super::step::{Plan, Step, is_root};
use crate::cmd;

const TRACEFS: &str = "/sys/kernel/tracing";
const BTF: &str = "/sys/kernel/btf/vmlinux";

pub const TRACEFS_STEP: Step = Step { name: "tracefs", plan: tracefs, by_hand: tracefs_by_hand };
pub const BTF_STEP: Step = Step { name: "BTF", plan: btf, by_hand: btf_by_hand };
pub const ROOT_STEP: Step = Step { name: "root", plan: root, by_hand: root_by_hand };

fn tracefs() -> anyhow::Result<Plan> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(Plan::Done(format!("mounted at {TRACEFS}")));
    }
    if !is_root() {
        return Ok(Plan::Warn(format!(
            "not mounted at {TRACEFS}, and mounting it needs root: `sudo mount -t tracefs tracefs {TRACEFS}`"
        )));
    }
    Ok(Plan::Do(
        format!("mounting tracefs at {TRACEFS} (not mounted; attaching tracepoints needs it)"),
        Box::new(|| cmd::run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))),
    ))
}

fn tracefs_by_hand() -> String {
    format!("  mount -t tracefs tracefs {TRACEFS}   # as root; it lasts until reboot")
}

fn btf() -> anyhow::Result<Plan> {
    Ok(if Path::new(BTF).exists() {
        Plan::Done(format!("{BTF} exists"))
    } else {
        Plan::Warn(format!(
            "{BTF} is missing: this kernel was built without CONFIG_DEBUG_INFO_BTF, and the probes need BTF"
        ))
    })
}

fn btf_by_hand() -> String {
    String::from("  run on a kernel built with CONFIG_DEBUG_INFO_BTF=y")
}

fn root() -> anyhow::Result<Plan> {
    Ok(if is_root() {
        Plan::Done(String::from("running as root"))
    } else {
        Plan::Warn(String::from(
            "not root: loading eBPF programs needs root, so the agent and the eBPF integration tests \
             will fail; run them as root",
        ))
    })
}

fn root_by_hand() -> String {
    String::from("  run as root")
}
