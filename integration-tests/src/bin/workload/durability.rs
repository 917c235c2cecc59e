//! Durability patterns: writes made durable by fsync every N writes, by an
//! `O_DSYNC` descriptor, by io_uring FSYNC requests, and a sync that fails.

use std::{
    fs::{File, OpenOptions},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use integration_tests::WorkloadReport;
use io_uring::{IoUring, opcode, squeue, types};

use crate::write;

/// A file of this process's own in the temporary directory (a real disk
/// here, so its syncs reach the device), removed when the pattern ends.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn new(name: &str, flags: i32) -> TempFile {
        let path = std::env::temp_dir().join(format!("batchwatch-{name}-{}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(flags)
            .open(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempFile { path, file }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `count` writes of 100 bytes to a file, with an `fsync` after every
/// `every` of them (none when 0), at most `rate` writes a second; with
/// `dsync` the file is opened `O_DSYNC`.
pub fn sync_every(count: u64, every: u64, rate: u64, dsync: bool) -> WorkloadReport {
    let temp = TempFile::new("sync", if dsync { libc::O_DSYNC } else { 0 });
    let fd = temp.file.as_raw_fd();
    let mut report = WorkloadReport { fd, ..Default::default() };
    let start = Instant::now();
    for i in 0..count {
        if rate > 0
            && let Some(wait) =
                (start + Duration::from_secs_f64(i as f64 / rate as f64)).checked_duration_since(Instant::now())
        {
            thread::sleep(wait);
        }
        assert_eq!(write(fd, &[b's'; 100]), 100, "write: {}", std::io::Error::last_os_error());
        report.calls += 1;
        report.bytes_written += 100;
        if every > 0 && (i + 1) % every == 0 {
            // SAFETY: a plain syscall on an open descriptor.
            assert_eq!(unsafe { libc::fsync(fd) }, 0, "fsync: {}", std::io::Error::last_os_error());
            report.syncs += 1;
        }
    }
    report
}

/// `count` `fsync`s of a pipe, which cannot be synced: each fails with EINVAL.
pub fn sync_pipe(count: u64) -> WorkloadReport {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    for _ in 0..count {
        // SAFETY: a plain syscall on an open descriptor.
        assert_eq!(unsafe { libc::fsync(fds[1]) }, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
    }
    WorkloadReport { fd: fds[1], syncs: count, sync_errors: count, ..Default::default() }
}

/// `count` io_uring chains of one 100-byte write linked to an FSYNC of the
/// same file, each submitted and reaped before the next.
pub fn uring_fsync(count: u64) -> WorkloadReport {
    let temp = TempFile::new("uring-fsync", 0);
    let fd = types::Fd(temp.file.as_raw_fd());
    let mut ring = IoUring::new(8).expect("io_uring set-up");
    let buf = [b'u'; 100];
    let mut report = WorkloadReport { fd: temp.file.as_raw_fd(), ..Default::default() };
    for _ in 0..count {
        let write = opcode::Write::new(fd, buf.as_ptr(), 100).offset(u64::MAX).build().flags(squeue::Flags::IO_LINK);
        let fsync = opcode::Fsync::new(fd).build();
        // SAFETY: `buf` and the file outlive the ring's use of them.
        unsafe {
            ring.submission().push(&write).expect("room for the write");
            ring.submission().push(&fsync).expect("room for the fsync");
        }
        ring.submit_and_wait(2).expect("io_uring_enter");
        for cqe in ring.completion() {
            assert!(cqe.result() >= 0, "request failed: {}", cqe.result());
        }
        report.sqes += 2;
        report.enters += 1;
        report.syncs += 1;
        report.bytes_written += 100;
    }
    report
}
