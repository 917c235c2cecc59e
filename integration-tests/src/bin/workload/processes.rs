//! Process churn: many short-lived writers, a pid reused by a new writer,
//! one process writing to more descriptors than the agent can track.

use std::{os::fd::AsRawFd as _, thread, time::Duration};

use integration_tests::{Child, WorkloadReport};

use crate::{open_devnull, write};

/// Forks `count` children that each write `calls` bytes to /dev/null, one
/// byte per call, then exit; waits for every one of them.
pub fn forks(count: u64, calls: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let children = (0..count).map(|_| fork_writer(devnull.as_raw_fd(), calls)).collect();
    WorkloadReport { fd: devnull.as_raw_fd(), children, ..Default::default() }
}

/// A child that writes `calls` bytes to `fd`, one per call, and exits.
fn fork_writer(fd: i32, calls: u64) -> Child {
    // SAFETY: the workload is single-threaded; the child only writes and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        for _ in 0..calls {
            write(fd, b"c");
        }
        // SAFETY: leave at once, skipping the parent's atexit handlers and buffers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    Child { pid: pid as u32, fd, calls, bytes_written: calls }
}

/// A child writes `first` times and exits; after `pause`, a second child is
/// forked with the same pid (through `ns_last_pid`) and writes `second`
/// times, then lingers for `pause` so that the agent sees it alive. With
/// `flood`, the first child waits after its writes for `pause`, while
/// `flood` other children write once each and exit, then exits.
pub fn reuse(first: u64, second: u64, pause: Duration, flood: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let fd = devnull.as_raw_fd();
    let a = if flood == 0 { fork_writer(fd, first) } else { flooded_writer(fd, first, pause, flood) };
    thread::sleep(pause);
    // Another process may take the pid first on a busy machine: try again.
    for _ in 0..100 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (a.pid - 1).to_string()).expect("ns_last_pid (needs root)");
        // SAFETY: as in `fork_writer`; this child lingers before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if std::process::id() == a.pid {
                for _ in 0..second {
                    write(fd, b"c");
                }
                thread::sleep(pause);
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if pid as u32 == a.pid {
            let b = Child { pid: a.pid, fd, calls: second, bytes_written: second };
            return WorkloadReport { fd, children: vec![a, b], ..Default::default() };
        }
    }
    panic!("pid {} was never handed out again", a.pid);
}

/// A child that writes `calls` bytes to `fd` and waits; once `pause` has
/// passed, `flood` other writers come and go, then the child exits.
fn flooded_writer(fd: i32, calls: u64, pause: Duration, flood: u64) -> Child {
    let mut go = [0; 2];
    // SAFETY: `go` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    // SAFETY: as in `fork_writer`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        for _ in 0..calls {
            write(fd, b"c");
        }
        let mut byte = [0u8];
        // SAFETY: our own copy of the write end goes first, so that the read
        // ends (EOF) when the parent closes its copy.
        unsafe {
            libc::close(go[1]);
            libc::read(go[0], byte.as_mut_ptr().cast(), 1);
        }
        // SAFETY: as in `fork_writer`.
        unsafe { libc::_exit(0) };
    }
    thread::sleep(pause);
    for _ in 0..flood {
        fork_writer(fd, 1);
    }
    // SAFETY: our descriptors; closing the write end releases the child.
    unsafe {
        libc::close(go[0]);
        libc::close(go[1]);
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    Child { pid: pid as u32, fd, calls, bytes_written: calls }
}

/// Writes once to each of `fds` new descriptors of /dev/null.
pub fn many_fds(fds: u64) -> WorkloadReport {
    let open: Vec<_> = (0..fds).map(|_| open_devnull()).collect();
    for fd in &open {
        assert_eq!(write(fd.as_raw_fd(), b"m"), 1);
    }
    WorkloadReport { fd: open[0].as_raw_fd(), calls: fds, bytes_written: fds, ..Default::default() }
}
