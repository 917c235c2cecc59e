//! Capabilities given up once the probes are attached: loading and
//! attaching them (CAP_BPF, CAP_PERFMON) and mounting tracefs (CAP_SYS_ADMIN)
//! happen once, at start; what the agent does every tick needs less.
//!
//! Kept, each only where the process holds it (docs/deploy.md says which
//! capability each part uses):
//! - `CAP_BPF` while probes run: every tick reads their maps with bpf(2).
//!   Since Linux 6.5 a map's descriptor is enough, but before, where
//!   unprivileged BPF is off (the default), every bpf(2) command needs it.
//! - `CAP_SYS_PTRACE`, `CAP_DAC_READ_SEARCH`, `CAP_DAC_OVERRIDE`: other
//!   processes' `/proc/PID/fd`, fdinfo and io, and their pipes for the fill
//!   sample, every tick.
//! - `CAP_SYS_ADMIN` while the buffer-depth sampler runs: setns(2) into each
//!   pod's network namespace, whenever a new one appears; and on kernels
//!   before 5.8, which have no CAP_BPF, for the map reads.
//!
//! Everything else is dropped from the permitted set (so it cannot be taken
//! back), the effective and inheritable sets, the ambient set, and, where
//! CAP_SETPCAP allows it, the bounding set: `CAP_PERFMON` always, and all a
//! root shell gives beyond the list. Capabilities belong to a thread, and new
//! threads inherit their creator's: this runs on the main thread before the
//! agent starts any other.

use caps::{CapSet, Capability, CapsHashSet, errors::CapsError};

use crate::agent::Agent;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A capability set could not be read or written.
    #[error("cannot {what} the {set:?} capability set: {source}")]
    Capset {
        what: &'static str,
        set: CapSet,
        #[source]
        source: CapsError,
    },
}

/// What the agent gave up, and what it kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    pub kept: Vec<Capability>,
    pub dropped: Vec<Capability>,
}

/// Drops what `agent`, started, no longer needs.
pub fn drop_unneeded(agent: &Agent) -> Result<Privileges, PrivilegeError> {
    let needed = still_needed(Needs {
        probes: agent.node().degraded.is_none(),
        depth_sampler: agent.samples_depth(),
        kernel_has_cap_bpf: kernel_has_cap_bpf(),
    });
    let permitted = read(CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(&needed).copied().collect();
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in read(CapSet::Bounding)?.difference(&needed) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(failed("drop from", CapSet::Bounding))?;
        }
    }
    // Ambient capabilities are a kernel feature since 4.3: nothing to clear before.
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).map_err(failed("clear", CapSet::Ambient))?;
    }
    let inheritable: CapsHashSet = read(CapSet::Inheritable)?.intersection(&needed).copied().collect();
    // Effective first: it must stay within the permitted set.
    for (set, value) in [(CapSet::Inheritable, &inheritable), (CapSet::Effective, &kept), (CapSet::Permitted, &kept)] {
        caps::set(None, set, value).map_err(failed("set", set))?;
    }
    Ok(Privileges { kept: sorted(&kept), dropped: sorted(&permitted.difference(&kept).copied().collect()) })
}

/// What the running agent uses.
#[derive(Debug, Clone, Copy)]
struct Needs {
    probes: bool,
    depth_sampler: bool,
    kernel_has_cap_bpf: bool,
}

fn still_needed(needs: Needs) -> CapsHashSet {
    let mut needed = CapsHashSet::from_iter([
        Capability::CAP_SYS_PTRACE,
        Capability::CAP_DAC_READ_SEARCH,
        Capability::CAP_DAC_OVERRIDE,
    ]);
    if needs.probes {
        needed.insert(Capability::CAP_BPF);
    }
    if needs.depth_sampler || (needs.probes && !needs.kernel_has_cap_bpf) {
        needed.insert(Capability::CAP_SYS_ADMIN);
    }
    needed
}

/// Whether this kernel knows CAP_BPF (Linux 5.8 on).
fn kernel_has_cap_bpf() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|last| last.trim().parse::<u8>().ok())
        .is_some_and(|last| last >= Capability::CAP_BPF.index())
}

fn read(set: CapSet) -> Result<CapsHashSet, PrivilegeError> {
    caps::read(None, set).map_err(failed("read", set))
}

fn failed(what: &'static str, set: CapSet) -> impl FnOnce(CapsError) -> PrivilegeError {
    move |source| PrivilegeError::Capset { what, set, source }
}

fn sorted(set: &CapsHashSet) -> Vec<Capability> {
    let mut caps: Vec<_> = set.iter().copied().collect();
    caps.sort_by_key(|cap| cap.index());
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfmon_always_goes_and_sys_admin_stays_only_for_a_use() {
        let full = Needs { probes: true, depth_sampler: true, kernel_has_cap_bpf: true };
        let needed = still_needed(full);
        assert!(!needed.contains(&Capability::CAP_PERFMON));
        assert!(needed.contains(&Capability::CAP_BPF) && needed.contains(&Capability::CAP_SYS_ADMIN));
        let no_sampler = still_needed(Needs { depth_sampler: false, ..full });
        assert!(!no_sampler.contains(&Capability::CAP_SYS_ADMIN), "nothing left uses it");
        let old_kernel = still_needed(Needs { depth_sampler: false, kernel_has_cap_bpf: false, ..full });
        assert!(old_kernel.contains(&Capability::CAP_SYS_ADMIN), "the map reads need it without CAP_BPF");
        let degraded = still_needed(Needs { probes: false, depth_sampler: false, kernel_has_cap_bpf: true });
        assert!(!degraded.contains(&Capability::CAP_BPF), "no probes, no maps to read");
        assert_eq!(degraded.len(), 3, "the /proc readers only: {degraded:?}");
    }
}
