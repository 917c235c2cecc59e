//! Who a process is: pid, start time, command. The start time tells a
//! process from a later one that was given the same pid.

use std::{collections::HashMap, fs, io, os::unix::fs::DirEntryExt as _};

use procfs::process::Process;

use crate::{
    attribution::container::Container,
    runtime::{Runtime, RuntimeDetector},
};

/// A process as `/proc` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    /// Start time in clock ticks since boot: with the pid, unique on a node.
    pub start_ticks: u64,
    /// The process name (`/proc/PID/comm`).
    pub comm: String,
    /// The command line, arguments joined by spaces.
    pub command: String,
    /// The container it runs in, if any.
    pub container: Option<Container>,
    /// Its language runtime, when its executable could be read.
    pub runtime: Option<Runtime>,
}

impl Identity {
    /// Reads the identity of `pid`, or `None` if it has exited; `runtimes`
    /// tells its runtime.
    pub fn read(pid: u32, runtimes: &mut RuntimeDetector) -> Option<Identity> {
        let process = Process::new(pid as i32).ok()?;
        let stat = process.stat().ok()?;
        let command = process.cmdline().map(|args| args.join(" ")).unwrap_or_default();
        Some(Identity {
            pid,
            start_ticks: stat.starttime,
            comm: stat.comm,
            command,
            container: Container::of_process(pid),
            runtime: runtimes.detect(pid),
        })
    }

    /// An identity for a process that exited before `/proc` could be read:
    /// only the name the kernel recorded at its first write is known.
    pub fn exited(pid: u32, comm: Option<String>) -> Identity {
        Identity {
            pid,
            start_ticks: 0,
            comm: comm.unwrap_or_else(|| "?".to_owned()),
            command: String::new(),
            container: None,
            runtime: None,
        }
    }

    /// Whether `/proc` still shows this same process.
    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid).is_some_and(|start| start == self.start_ticks)
    }
}

/// Tells which known processes still run, for a sweep of every one. The
/// kernel numbers each `/proc/PID` inode afresh when it creates it and ties
/// it to one process, so a pid whose directory keeps the inode it had when
/// its start time last matched is still that process: a sweep of 10,000
/// processes is one walk of `/proc`, not 10,000 stat reads. A new inode
/// (another process, or the same one whose inode the kernel dropped and
/// made again) costs one stat read.
#[derive(Debug, Default)]
pub struct ProcSweep {
    /// Each pid's inode in the listing of this sweep; `None` when `/proc`
    /// could not be listed, and every process has its stat read.
    listing: Option<HashMap<u32, u64>>,
    /// The inode of each pid's directory when its start time last matched.
    confirmed: HashMap<u32, u64>,
}

impl ProcSweep {
    /// Lists `/proc` for a new sweep.
    pub fn start(&mut self) {
        self.listing = list_proc().inspect_err(|e| tracing::warn!("listing /proc for a sweep: {e}")).ok();
    }

    /// Whether `identity` still runs, as of the last [`ProcSweep::start`].
    pub fn is_alive(&mut self, identity: &Identity) -> bool {
        let Some(listing) = &self.listing else { return identity.is_alive() };
        let Some(&inode) = listing.get(&identity.pid) else { return false };
        if self.confirmed.get(&identity.pid) == Some(&inode) {
            return true;
        }
        let alive = identity.is_alive();
        if alive {
            self.confirmed.insert(identity.pid, inode);
        }
        alive
    }

    /// Forgets a process that exited.
    pub fn forget(&mut self, pid: u32) {
        self.confirmed.remove(&pid);
    }
}

/// Every pid `/proc` lists, with its directory's inode number.
fn list_proc() -> io::Result<HashMap<u32, u64>> {
    let mut inodes = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        if let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse().ok()) {
            inodes.insert(pid, entry.ino());
        }
    }
    Ok(inodes)
}

/// Start time of `pid`, or `None` if it has exited.
pub fn start_ticks(pid: u32) -> Option<u64> {
    Process::new(pid as i32).ok()?.stat().ok().map(|stat| stat.starttime)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_sweep_trusts_an_unchanged_inode_and_finds_a_process_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let identity = Identity::read(pid, &mut RuntimeDetector::default()).expect("a running child");
        let mut sweep = ProcSweep::default();
        sweep.start();
        assert!(sweep.is_alive(&identity));
        let listed = sweep.listing.as_ref().and_then(|listing| listing.get(&pid));
        assert_eq!(sweep.confirmed.get(&pid), listed, "confirmed at its inode");
        // Another process under that pid, never confirmed: its stat is read.
        let other = Identity { start_ticks: identity.start_ticks + 1, ..identity.clone() };
        let mut fresh = ProcSweep::default();
        fresh.start();
        assert!(!fresh.is_alive(&other));
        child.kill().expect("kill");
        child.wait().expect("wait");
        sweep.start();
        assert!(!sweep.is_alive(&identity));
    }
}
