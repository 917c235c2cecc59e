//! Who a process is: pid, start time, command. The start time tells a
//! process from a later one that was given the same pid.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{self, Read as _},
    os::{fd::OwnedFd, unix::fs::DirEntryExt as _},
    path::PathBuf,
};

use procfs::{FromRead as _, process::Process};
use rustix::fs::{AtFlags, Mode, OFlags};

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
        Identity::read_at(pid, runtimes).map(|(identity, _)| identity)
    }

    /// Reads the identity of `pid` as [`Identity::read`] does, with the
    /// inode of the `/proc/PID` directory it was read through (which a
    /// [`ProcSweep`] takes as confirmed). Its stat, cmdline and cgroup are
    /// opened through that one directory: the process it names cannot change
    /// under those reads, and each open walks one name, not `/proc/PID/...`
    /// afresh. 12 system calls (open and `fstat` the directory, open, read
    /// and close each file, close it), and the runtime's (one `statx` of
    /// its `exe` for an executable met before).
    pub fn read_at(pid: u32, runtimes: &mut RuntimeDetector) -> Option<(Identity, u64)> {
        let dir = ProcDir::open(pid).ok()?;
        let mut buf = Vec::with_capacity(1024);
        dir.read("stat", &mut buf).ok()?;
        let stat = procfs::process::Stat::from_read(buf.as_slice()).ok()?;
        let command = match dir.read("cmdline", &mut buf) {
            Ok(()) => command_line(&buf),
            Err(_) => String::new(),
        };
        let container = match dir.read("cgroup", &mut buf) {
            Ok(()) => Container::from_cgroup_file(&String::from_utf8_lossy(&buf)),
            Err(_) => None,
        };
        let identity = Identity {
            pid,
            start_ticks: stat.starttime,
            comm: stat.comm,
            command,
            container,
            runtime: runtimes.detect(&dir),
        };
        Some((identity, dir.inode))
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

    /// Takes `pid` as running at the `/proc/PID` inode its identity was just
    /// read through ([`Identity::read_at`]): its first sweep then reads no
    /// stat of its own.
    pub fn confirm(&mut self, pid: u32, inode: u64) {
        self.confirmed.insert(pid, inode);
    }

    /// Forgets a process that exited.
    pub fn forget(&mut self, pid: u32) {
        self.confirmed.remove(&pid);
    }
}

/// A process's `/proc/PID` directory, held open (`O_PATH`) so that the files
/// read through it all belong to the process it named when opened, and
/// each is one name to walk rather than `/proc/PID/...` from the root.
pub(crate) struct ProcDir {
    dir: OwnedFd,
    /// The directory's inode, as a listing of `/proc` gives it.
    inode: u64,
}

impl ProcDir {
    pub(crate) fn open(pid: u32) -> io::Result<ProcDir> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(format!("/proc/{pid}"), flags, Mode::empty())?;
        let inode = rustix::fs::fstat(&dir)?.st_ino;
        Ok(ProcDir { dir, inode })
    }

    /// Reads the file `name` of the directory whole into `buf`: an open, reads
    /// until one comes back short, a close. (`fs::read` would also `statx`
    /// and `lseek` each file for a size that `/proc` does not know, and read
    /// once more for the end.) A short read is the end for the files read
    /// here: `stat` and `cgroup` are formatted whole before the first read
    /// copies out what fits, and `cmdline` copies until the buffer is full or
    /// the arguments end.
    fn read(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut file = self.open_file(name)?;
        buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = file.read(&mut chunk)?;
            buf.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                return Ok(());
            }
        }
    }
}

impl ProcDir {
    /// Opens the file (or the file a link names) `name` of the directory.
    pub(crate) fn open_file(&self, name: &str) -> io::Result<File> {
        Ok(File::from(rustix::fs::openat(&self.dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?))
    }

    /// The status of what the link `name` of the directory points to.
    pub(crate) fn stat(&self, name: &str) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::statat(&self.dir, name, AtFlags::empty())?)
    }

    /// Where the link `name` of the directory points.
    pub(crate) fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt as _;
        let target = rustix::fs::readlinkat(&self.dir, name, Vec::new())?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(target.into_bytes())))
    }
}

/// A `/proc/PID/cmdline` (arguments ended by NULs) as one line: the
/// arguments joined by spaces, empty ones left out.
fn command_line(cmdline: &[u8]) -> String {
    let text = String::from_utf8_lossy(cmdline);
    text.split('\0').filter(|arg| !arg.is_empty()).collect::<Vec<_>>().join(" ")
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
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        process::{Command, Stdio},
    };

    use super::*;

    #[test]
    fn an_identity_is_read_through_the_directory_a_sweep_lists() {
        // Read once `cat` echoes a line: its exec has completed (`spawn`
        // returns as the exec begins, with the command line not set yet).
        let mut child = Command::new("cat").arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("cat");
        child.stdin.as_mut().unwrap().write_all(b"x\n").unwrap();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut String::new()).unwrap();
        let pid = child.id();
        let (identity, inode) = Identity::read_at(pid, &mut RuntimeDetector::default()).expect("a running child");
        let stat = Process::new(pid as i32).unwrap().stat().unwrap();
        assert_eq!((identity.start_ticks, identity.comm.as_str()), (stat.starttime, "cat"));
        assert_eq!(identity.command, "cat -");
        assert!(identity.runtime.is_some(), "its executable was read");
        let mut sweep = ProcSweep::default();
        sweep.confirm(pid, inode);
        sweep.start();
        assert_eq!(sweep.listing.as_ref().and_then(|listing| listing.get(&pid)), Some(&inode), "the inode listed");
        // Confirmed at that inode: taken as running with no stat read, even
        // for a start time that does not match (which a stat read would refute).
        assert!(sweep.is_alive(&Identity { start_ticks: identity.start_ticks + 1, ..identity.clone() }));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(Identity::read_at(pid, &mut RuntimeDetector::default()).is_none(), "gone");
    }

    /// A read that fills the buffer is not the end: command lines of one
    /// byte under, exactly and over a 4096-byte chunk, and of several chunks,
    /// come whole.
    #[test]
    fn command_lines_longer_than_a_read_come_whole() {
        // `sh -c 'read x' sh FILLER`: 16 bytes and the filler's, NULs included.
        for total in [4095, 4096, 4097, 10_000] {
            let filler = "x".repeat(total - 17);
            let mut child =
                Command::new("sh").args(["-c", "read x", "sh", &filler]).stdin(Stdio::piped()).spawn().expect("sh");
            let cmdline = format!("/proc/{}/cmdline", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while fs::read(&cmdline).unwrap_or_default().len() != total {
                assert!(std::time::Instant::now() < deadline, "sh never showed its {total}-byte command line");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let identity = Identity::read(child.id(), &mut RuntimeDetector::default()).expect("a running child");
            child.kill().expect("kill");
            child.wait().expect("wait");
            assert_eq!(identity.command, format!("sh -c read x sh {filler}"), "{total} bytes");
        }
    }

    #[test]
    fn command_lines_join_their_arguments() {
        assert_eq!(command_line(b"redis-server\0*:6379\0\0"), "redis-server *:6379");
        assert_eq!(command_line(b"nginx: worker process\0\0\0"), "nginx: worker process");
        assert_eq!(command_line(b""), "");
    }

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
