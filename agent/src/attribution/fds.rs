//! What a file descriptor is: a file, a pipe, a socket, a terminal...
//! read from the `/proc/PID/fd/N` link, cached per (pid, fd) while the link
//! stays the same.

use std::{collections::BTreeMap, fmt, os::unix::fs::FileTypeExt as _, path::Path};

/// The kind of file behind a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdKind {
    File,
    Pipe,
    /// A socket whose protocol is not known yet (see `depth`).
    Socket,
    Tcp,
    Udp,
    Unix,
    Tty,
    /// A character device other than a terminal, such as /dev/null.
    CharDevice,
    IoUring,
    Other,
}

impl FdKind {
    pub fn name(self) -> &'static str {
        match self {
            FdKind::File => "file",
            FdKind::Pipe => "pipe",
            FdKind::Socket => "socket",
            FdKind::Tcp => "tcp",
            FdKind::Udp => "udp",
            FdKind::Unix => "unix",
            FdKind::Tty => "tty",
            FdKind::CharDevice => "chardev",
            FdKind::IoUring => "io_uring",
            FdKind::Other => "other",
        }
    }
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A descriptor as the agent last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    pub kind: FdKind,
    /// The link target: a path, `socket:[INODE]`, `pipe:[INODE]`, ...
    pub target: String,
    /// Opened `O_SYNC` or `O_DSYNC`: every write is made durable before it
    /// returns, a sync of its own.
    pub synced_writes: bool,
}

impl FdInfo {
    /// The inode of a socket or pipe, from its link target.
    pub fn inode(&self) -> Option<u64> {
        let inner = self.target.strip_prefix("socket:[").or_else(|| self.target.strip_prefix("pipe:["))?;
        inner.strip_suffix(']')?.parse().ok()
    }

    /// A name for the descriptor's file, for people.
    pub fn describe(&self, fd: i32) -> String {
        format!("fd {fd} ({} {})", self.kind, self.target)
    }
}

/// Classifies a `/proc/PID/fd/N` link target; `path` is the link itself, to
/// stat the file when the target is a path.
pub fn classify(target: &str, path: &Path) -> FdKind {
    if target.starts_with("socket:[") {
        FdKind::Socket
    } else if target.starts_with("pipe:[") {
        FdKind::Pipe
    } else if target == "anon_inode:[io_uring]" {
        FdKind::IoUring
    } else if target.starts_with("/dev/pts/") || target.starts_with("/dev/tty") || target == "/dev/console" {
        FdKind::Tty
    } else {
        match std::fs::metadata(path).map(|meta| meta.file_type()) {
            Ok(kind) if kind.is_file() => FdKind::File,
            Ok(kind) if kind.is_char_device() => FdKind::CharDevice,
            _ => FdKind::Other,
        }
    }
}

/// `O_DSYNC`, which `O_SYNC` includes (x86-64 `fcntl.h`).
const O_DSYNC: u32 = 0o10000;

/// Whether `fd` of `pid` was opened `O_SYNC` or `O_DSYNC`, from the `flags:`
/// line (octal) of `/proc/PID/fdinfo/FD`. Read once per file the descriptor
/// names: `fcntl(F_SETFL)` cannot change these flags.
fn opened_synced(pid: u32, fd: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else { return false };
    fdinfo_flags(&text).is_some_and(|flags| flags & O_DSYNC != 0)
}

/// The `flags:` of an fdinfo file.
fn fdinfo_flags(text: &str) -> Option<u32> {
    let line = text.lines().find_map(|line| line.strip_prefix("flags:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Resolves descriptors, re-reading the link each time (one `readlink`) but
/// classifying a target only when it changed: an fd number can be closed and
/// reused for another file.
#[derive(Default)]
pub struct FdResolver {
    /// Ordered by pid, then fd: forgetting a process that exited removes
    /// its range, not a walk of every process's descriptors (and costs no
    /// table per process, as a map of maps would: 2 MiB with 10,000).
    cache: BTreeMap<(u32, i32), FdInfo>,
    /// Whether the lack of permission to read other processes' descriptors
    /// was said already.
    told_denied: bool,
}

impl FdResolver {
    /// The descriptor `fd` of `pid`, or `None` if it is closed or the process gone.
    pub fn resolve(&mut self, pid: u32, fd: i32) -> Option<&FdInfo> {
        let link = format!("/proc/{pid}/fd/{fd}");
        let target = match std::fs::read_link(&link) {
            Ok(target) => target.to_string_lossy().into_owned(),
            Err(error) => {
                if error.kind() == std::io::ErrorKind::PermissionDenied
                    && !std::mem::replace(&mut self.told_denied, true)
                {
                    tracing::warn!(
                        "cannot read {link}: {error}; reading other processes' descriptors needs CAP_SYS_PTRACE \
                         (descriptor kinds, targets and buffer depth stay unknown; counting goes on)"
                    );
                }
                return None;
            }
        };
        let cached = self.cache.entry((pid, fd)).or_insert_with(|| FdInfo {
            kind: FdKind::Other,
            target: String::new(),
            synced_writes: false,
        });
        if cached.target != target {
            let kind = classify(&target, Path::new(&link));
            // Files and devices only: pipes and sockets ignore the flags.
            let synced_writes = matches!(kind, FdKind::File | FdKind::Other) && opened_synced(pid, fd);
            *cached = FdInfo { kind, target, synced_writes };
        }
        Some(cached)
    }

    /// The last known state of `fd`, without looking at `/proc`.
    pub fn cached(&self, pid: u32, fd: i32) -> Option<&FdInfo> {
        self.cache.get(&(pid, fd))
    }

    /// Forgets every descriptor of `pid`.
    pub fn forget(&mut self, pid: u32) {
        let fds: Vec<(u32, i32)> = self.cache.range((pid, i32::MIN)..=(pid, i32::MAX)).map(|(&key, _)| key).collect();
        for key in fds {
            self.cache.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_process_keeps_the_others_descriptors() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let (me, other) = (std::process::id(), child.id());
        let mut resolver = FdResolver::default();
        for pid in [me, other] {
            assert!(resolver.resolve(pid, 0).is_some() && resolver.resolve(pid, 2).is_some());
        }
        resolver.forget(me);
        assert!(resolver.cached(me, 0).is_none() && resolver.cached(me, 2).is_none());
        assert!(resolver.cached(other, 0).is_some() && resolver.cached(other, 2).is_some());
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn classifies_link_targets() {
        let nowhere = Path::new("/nonexistent");
        assert_eq!(classify("socket:[123]", nowhere), FdKind::Socket);
        assert_eq!(classify("pipe:[9]", nowhere), FdKind::Pipe);
        assert_eq!(classify("anon_inode:[io_uring]", nowhere), FdKind::IoUring);
        assert_eq!(classify("/dev/pts/3", nowhere), FdKind::Tty);
        assert_eq!(classify("/dev/null", Path::new("/dev/null")), FdKind::CharDevice);
        assert_eq!(classify("/proc/self/status", Path::new("/proc/self/status")), FdKind::File);
        assert_eq!(classify("anon_inode:[eventfd]", nowhere), FdKind::Other);
    }

    #[test]
    fn inode_of_sockets_and_pipes() {
        let info = |target: &str| FdInfo { kind: FdKind::Socket, target: target.to_owned(), synced_writes: false };
        assert_eq!(info("socket:[4242]").inode(), Some(4242));
        assert_eq!(info("pipe:[7]").inode(), Some(7));
        assert_eq!(info("/var/log/x").inode(), None);
    }

    #[test]
    fn o_sync_and_o_dsync_descriptors_are_seen() {
        use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
        assert_eq!(fdinfo_flags("pos:\t0\nflags:\t0104001\nmnt_id:\t1\n"), Some(0o104001));
        let path = std::env::temp_dir().join(format!("batchwatch-dsync-{}", std::process::id()));
        let mut resolver = FdResolver::default();
        for (flags, synced) in [(libc::O_DSYNC, true), (libc::O_SYNC, true), (0, false)] {
            let file = std::fs::OpenOptions::new().create(true).append(true).custom_flags(flags).open(&path).unwrap();
            let info = resolver.resolve(std::process::id(), file.as_raw_fd()).unwrap().clone();
            resolver.forget(std::process::id());
            assert_eq!((info.kind, info.synced_writes), (FdKind::File, synced), "flags {flags:o}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn resolves_own_descriptors() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut resolver = FdResolver::default();
        let info = resolver.resolve(std::process::id(), fd).unwrap();
        assert_eq!((info.kind, info.target.as_str()), (FdKind::CharDevice, "/dev/null"));
        drop(file);
        assert!(resolver.resolve(std::process::id(), fd).is_none());
    }
}
