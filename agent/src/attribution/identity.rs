//! Who a process is: pid, start time, command. The start time tells a
//! process from a later one that was given the same pid.

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

/// Start time of `pid`, or `None` if it has exited.
pub fn start_ticks(pid: u32) -> Option<u64> {
    Process::new(pid as i32).ok()?.stat().ok().map(|stat| stat.starttime)
}
