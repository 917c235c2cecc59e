//! Network namespaces: which one a process is in, and a sock_diag socket
//! opened inside another one.
//!
//! A netlink socket belongs to the netns of the thread that created it, for
//! its whole life; sock_diag reports only the sockets of that netns. To see a
//! container's sockets, a short-lived thread enters the container's netns
//! with `setns(2)` (which moves only the calling thread), creates the socket
//! there and exits; the agent's own threads never change namespace.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
};

use super::{DepthError, sock_diag::DiagSocket};

/// A network namespace, named by the inode of its nsfs file (the number in
/// `readlink /proc/PID/ns/net`, `net:[4026531840]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId(pub u64);

impl std::fmt::Display for NetnsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.0)
    }
}

/// The netns of process `pid`: one `stat` of `/proc/PID/ns/net`.
pub fn of_process(pid: u32) -> io::Result<NetnsId> {
    Ok(NetnsId(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino()))
}

/// The netns of the calling thread.
fn of_this_thread() -> io::Result<NetnsId> {
    Ok(NetnsId(std::fs::metadata("/proc/thread-self/ns/net")?.ino()))
}

/// Opens a sock_diag socket in `netns`, reached through `pid`, a process
/// that was seen in it. In the caller's own netns no thread is needed.
pub(super) fn open_diag_socket(pid: u32, netns: NetnsId) -> Result<DiagSocket, DepthError> {
    let here = of_this_thread().map_err(DepthError::Setup)?;
    if here == netns {
        return DiagSocket::open().map_err(|source| DepthError::Socket { netns, source });
    }
    let enter = move |source| DepthError::Setns { netns, pid, source };
    // Opening the nsfs file pins the namespace; checking its inode makes sure
    // `pid` was not replaced by a process of another netns since `of_process`.
    let file = File::open(format!("/proc/{pid}/ns/net")).map_err(enter)?;
    let found = NetnsId(file.metadata().map_err(enter)?.ino());
    if found != netns {
        return Err(enter(io::Error::other(format!("pid {pid} moved to {found}"))));
    }
    let helper = std::thread::Builder::new().name("bw-netns".into()).spawn(move || {
        // SAFETY: a valid nsfs fd; the thread exits right after, so no
        // other code runs in the foreign netns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(enter(io::Error::last_os_error()));
        }
        DiagSocket::open().map_err(|source| DepthError::Socket { netns, source })
    });
    match helper {
        Ok(handle) => handle.join().unwrap_or_else(|_| {
            Err(DepthError::Setns { netns, pid, source: io::Error::other("the netns helper thread panicked") })
        }),
        Err(source) => Err(DepthError::Setns { netns, pid, source }),
    }
}
