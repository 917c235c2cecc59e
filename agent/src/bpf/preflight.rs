//! What the probes need from the node, checked before loading them, so that a
//! missing piece is one clear sentence instead of a kernel error code.

use std::{ffi::CString, path::Path};

const TRACEFS: &str = "/sys/kernel/tracing";
const BTF: &str = "/sys/kernel/btf/vmlinux";

/// Capability numbers from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "batchwatch needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load its probes; \
         missing {0}: run it as root or grant those capabilities"
    )]
    MissingCapabilities(String),
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({0}); \
         mount it with `mount -t tracefs tracefs {TRACEFS}`"
    )]
    NoTracefs(std::io::Error),
    #[error(
        "the kernel has no BTF ({BTF} is missing; it needs CONFIG_DEBUG_INFO_BTF=y): \
         the write probes read syscall arguments through it"
    )]
    NoBtf,
    #[error(
        "batchwatch runs in pid namespace {found}, not the host's ({HOST_PID_NAMESPACE}): the probes see host pids, \
         so it would count itself, leave out another process and read the wrong /proc entries; run it in the \
         host pid namespace (`hostPID: true` in the pod spec, `--pid=host` for docker or podman)"
    )]
    NotHostPidNamespace { found: String },
}

/// The pid namespace of the first process, `PROC_PID_INIT_INO` in the
/// kernel's `proc_ns.h`: every other pid namespace has another inode.
const HOST_PID_NAMESPACE: &str = "pid:[4026531836]";

/// What preflight did to the node, for the start-up message.
#[derive(Debug, Default)]
pub struct Preflight {
    pub mounted_tracefs: bool,
}

/// Checks the pid namespace, capabilities, tracefs (mounting it if needed)
/// and BTF.
pub fn check() -> Result<Preflight, PreflightError> {
    check_host_pid_namespace()?;
    check_capabilities()?;
    let mounted_tracefs = ensure_tracefs()?;
    if !Path::new(BTF).exists() {
        return Err(PreflightError::NoBtf);
    }
    Ok(Preflight { mounted_tracefs })
}

/// Refuses a pid namespace other than the host's: the probes key everything
/// by host tgid, and the agent matches those with its own pid and `/proc`.
/// Neither the polling mode nor the probes can work there, so this is an
/// error in both.
pub fn check_host_pid_namespace() -> Result<(), PreflightError> {
    let found =
        std::fs::read_link("/proc/self/ns/pid").map_or_else(|e| e.to_string(), |link| link.display().to_string());
    if found == HOST_PID_NAMESPACE { Ok(()) } else { Err(PreflightError::NotHostPidNamespace { found }) }
}

fn check_capabilities() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = effective_capabilities(&status);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<_> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    Err(PreflightError::MissingCapabilities(missing.join(" and ")))
}

/// The `CapEff` mask of a `/proc/PID/status` text (0 if absent or garbled).
pub fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// Mounts tracefs unless it is there; returns whether it mounted it.
fn ensure_tracefs() -> Result<bool, PreflightError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(false);
    }
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (source, target, fstype) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: all pointers are valid C strings; no data argument.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(PreflightError::NoTracefs(std::io::Error::last_os_error()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_mask() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), 0x1ff_ffff_ffff);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), 0);
        assert_eq!(effective_capabilities(""), 0);
    }
}
