//! Pipe fill: the bytes sitting in a pipe against its capacity, read through
//! a descriptor of our own for the same pipe.
//!
//! Kernel side (fs/pipe.c, Linux 6.18): `FIONREAD` sums `buf->len` over the
//! occupied slots under the pipe mutex; `F_GETPIPE_SZ` is `max_usage *
//! PAGE_SIZE`. A writer blocks (or gets `EAGAIN`) when all `max_usage` slots
//! are taken. Normal writes merge into the last page, so a full pipe holds
//! its capacity in bytes; after a partial read, or in packet mode (`O_DIRECT`,
//! one slot per write), the slots run out with fewer bytes and the percentage
//! under-reports.
//!
//! # Opening the pipe, and what that does to its users
//! `open("/proc/PID/fd/N")` runs `fifo_open()` on the pipe and counts us as
//! one more reader or writer while our descriptor lives:
//! - as a reader (`O_RDONLY`), we would keep `pipe->readers` above zero: a
//!   writer whose reader has gone would get its writes accepted, and lost,
//!   instead of `EPIPE`/`SIGPIPE`, the very drop this agent reports. Not done.
//! - as a writer (`O_WRONLY`), which is what we do, the monitored writer sees
//!   nothing: `pipe_write()` only looks at the readers. The reader's EOF is
//!   delayed if every real writer closes during the microseconds we hold the
//!   pipe; it gets it when we close. Our close wakes the pipe's waiters, and
//!   sends `SIGIO` to `O_ASYNC` users, only when it leaves exactly one side
//!   at zero, that is when the pipe has lost its last reader (its writer is
//!   getting `EPIPE` anyway) or its last other writer (EOF, as above).
//! - opening is an open event for fsnotify and audit, like any `open`.
//!
//! What is never opened: a named FIFO (a path on a filesystem, not pipefs).
//! There a process can sit in a blocking `open()` waiting for a partner;
//! our open would complete it, and our close leave it with EOF or `EPIPE`.
//! Nor anything else that the fd number came to mean: the fd is first opened
//! with `O_PATH` (which calls no driver `open`), checked to be the very pipe
//! asked for (pipefs device and inode), and only that checked file is
//! reopened through `/proc/self/fd`, so a reused fd number can never make us
//! open a device.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
};

use super::Depth;

pub(super) struct PipeProbe {
    /// `st_dev` of pipefs, shared by every anonymous pipe.
    pipefs_dev: u64,
}

impl PipeProbe {
    pub(super) fn new() -> io::Result<PipeProbe> {
        let (reader, _writer) = std::io::pipe()?;
        Ok(PipeProbe { pipefs_dev: File::from(std::os::fd::OwnedFd::from(reader)).metadata()?.dev() })
    }

    /// The fill of the pipe behind `fd` of `pid`, which must still be the
    /// anonymous pipe `inode`; `None` if the fd was closed, the process is
    /// gone or the fd now names something else. Seven syscalls: `openat`
    /// (`O_PATH`), `statx`, `openat` (`O_WRONLY`), `ioctl(FIONREAD)`,
    /// `fcntl(F_GETPIPE_SZ)`, two `close`.
    pub(super) fn sample(&self, pid: u32, fd: i32, inode: u64) -> io::Result<Option<Depth>> {
        let gone = |error: &io::Error| matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ESRCH));
        let path = OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(format!("/proc/{pid}/fd/{fd}"));
        let path = match path {
            Ok(path) => path,
            Err(error) if gone(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        let meta = path.metadata()?;
        if !meta.file_type().is_fifo() || meta.dev() != self.pipefs_dev || meta.ino() != inode {
            return Ok(None);
        }
        let pipe = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/self/fd/{}", path.as_raw_fd()))?;
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer.
        if unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &raw mut queued) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: F_GETPIPE_SZ takes no argument.
        let capacity = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if capacity < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(pipe);
        let queued = u64::try_from(queued).unwrap_or(0);
        Ok(Some(Depth {
            queued_bytes: queued,
            charged_bytes: queued,
            capacity_bytes: capacity as u64,
            protocol: None,
            exchange: None,
        }))
    }
}
