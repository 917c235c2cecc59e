//! Test helper: performs one exact write pattern and prints what it did as a
//! [`WorkloadReport`] JSON line. Every operation is one raw syscall, never
//! buffered, so the tests know exactly what the kernel saw.

use std::{
    io::Write as _,
    os::fd::{AsRawFd as _, OwnedFd, RawFd},
    thread,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use integration_tests::WorkloadReport;

mod durability;
mod processes;
mod uring;

#[derive(Parser)]
struct Cli {
    /// Wait this long before the pattern (lets a tracer settle).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// Stay alive this long after printing the report (lets a poller see it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    linger: Duration,
    #[command(subcommand)]
    pattern: Pattern,
}

#[derive(Subcommand)]
enum Pattern {
    /// `count` write()s of `size` bytes to /dev/null.
    Write {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
        /// Calls per second at most (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// `count` writev()s of `iovecs` iovecs of `size` bytes each to /dev/null.
    Writev {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        iovecs: usize,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// `count` sendmmsg()s of `messages` UDP datagrams of `size` bytes to a
    /// loopback socket that never reads.
    Sendmmsg {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        messages: usize,
        #[arg(long)]
        size: usize,
    },
    /// A batcher flushing on a timer: every `period`, one writev() of a
    /// varying number of records (1 to 8, and every tenth flush a full 64).
    Timer {
        #[arg(long, value_parser = humantime::parse_duration)]
        period: Duration,
        #[arg(long)]
        flushes: u64,
    },
    /// Fill a non-blocking UNIX stream socket until it refuses, then go on
    /// until `eagain` calls failed with EAGAIN.
    Eagain {
        #[arg(long)]
        eagain: u64,
        /// Keep the full socket open this long afterwards.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        hold: Duration,
    },
    /// `count` short writes: each asks a non-blocking, emptied pipe for more
    /// than its capacity, and the kernel writes only what fits.
    Short {
        #[arg(long)]
        count: u64,
    },
    /// `count` writes to a pipe whose reader is gone (EPIPE).
    Epipe {
        #[arg(long)]
        count: u64,
    },
    /// `rounds` io_uring submits of `batch` writes each.
    UringBatch {
        #[arg(long)]
        rounds: u64,
        #[arg(long)]
        batch: u32,
        /// Use SQPOLL, its poller sleeping after this idle time.
        #[arg(long, value_parser = humantime::parse_duration)]
        sqpoll_idle: Option<Duration>,
        /// Wait between rounds.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        pause: Duration,
    },
    /// io_uring NOPs overflowing a CQ of 8 entries that is never reaped.
    UringOverflow {
        #[arg(long)]
        rounds: u64,
    },
    /// io_uring set-up refused by a seccomp filter; falls back to write().
    UringDenied,
    /// `count` short-lived children, one after the other, each writing
    /// `calls` bytes one at a time.
    Forks {
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        calls: u64,
    },
    /// A child writes `first` times and exits; after `pause` another child
    /// with the same pid writes `second` times (needs root).
    Reuse {
        #[arg(long)]
        first: u64,
        #[arg(long)]
        second: u64,
        #[arg(long, value_parser = humantime::parse_duration)]
        pause: Duration,
    },
    /// `count` 100-byte writes to a file, with an fsync after every `every`
    /// (none when 0); `--dsync` opens the file O_DSYNC.
    SyncEvery {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        every: u64,
        /// Writes per second at most (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long)]
        dsync: bool,
    },
    /// `count` fsyncs of a pipe, each failing with EINVAL.
    SyncPipe {
        #[arg(long)]
        count: u64,
    },
    /// `count` io_uring chains of a write linked to an FSYNC.
    UringFsync {
        #[arg(long)]
        count: u64,
    },
    /// One write to each of `fds` descriptors.
    ManyFds {
        #[arg(long)]
        fds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    thread::sleep(cli.delay);
    let mut report = match cli.pattern {
        Pattern::Write { count, size, rate } => {
            let devnull = open_devnull();
            let buf = vec![b'x'; size];
            paced(count, rate, |_| write(devnull.as_raw_fd(), &buf));
            tally(devnull.as_raw_fd(), count, (count * size as u64) as i64)
        }
        Pattern::Writev { count, iovecs, size, rate } => {
            let devnull = open_devnull();
            let buf = vec![b'x'; size];
            let iov = vec![libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: size }; iovecs];
            paced(count, rate, |_| writev(devnull.as_raw_fd(), &iov));
            tally(devnull.as_raw_fd(), count, (count * (iovecs * size) as u64) as i64)
        }
        Pattern::Sendmmsg { count, messages, size } => sendmmsg_pattern(count, messages, size),
        Pattern::Timer { period, flushes } => timer_pattern(period, flushes),
        Pattern::Eagain { eagain, hold } => eagain_pattern(eagain, hold),
        Pattern::Short { count } => short_pattern(count),
        Pattern::Epipe { count } => epipe_pattern(count),
        Pattern::UringBatch { rounds, batch, sqpoll_idle, pause } => {
            uring::batches(&uring::Batches { rounds, batch, sqpoll_idle, pause })
        }
        Pattern::UringOverflow { rounds } => uring::overflow(rounds),
        Pattern::UringDenied => uring::denied(),
        Pattern::Forks { count, calls } => processes::forks(count, calls),
        Pattern::Reuse { first, second, pause } => processes::reuse(first, second, pause),
        Pattern::ManyFds { fds } => processes::many_fds(fds),
        Pattern::SyncEvery { count, every, rate, dsync } => durability::sync_every(count, every, rate, dsync),
        Pattern::SyncPipe { count } => durability::sync_pipe(count),
        Pattern::UringFsync { count } => durability::uring_fsync(count),
    };
    report.pid = std::process::id();
    let line = serde_json::to_string(&report).expect("report serialises");
    std::io::stdout().write_all(format!("{line}\n").as_bytes()).expect("stdout");
    thread::sleep(cli.linger);
}

fn tally(fd: RawFd, calls: u64, bytes_written: i64) -> WorkloadReport {
    WorkloadReport { fd, calls, bytes_written: bytes_written as u64, ..Default::default() }
}

/// Runs `op` `count` times, at most `rate` times a second when `rate > 0`.
fn paced(count: u64, rate: u64, mut op: impl FnMut(u64) -> isize) {
    let start = Instant::now();
    for i in 0..count {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        assert!(op(i) >= 0, "write failed: {}", std::io::Error::last_os_error());
    }
}

pub fn open_devnull() -> OwnedFd {
    std::fs::OpenOptions::new().write(true).open("/dev/null").expect("open /dev/null").into()
}

pub fn write(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is valid for its length.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

fn writev(fd: RawFd, iov: &[libc::iovec]) -> isize {
    // SAFETY: every iovec points into a live buffer.
    unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) }
}

fn sendmmsg_pattern(count: u64, messages: usize, size: usize) -> WorkloadReport {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sender.connect(receiver.local_addr().expect("addr")).expect("connect");
    let buf = vec![b'x'; size];
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: size };
    // SAFETY: an all-zero msghdr is valid; the iovec it points at lives on.
    let mut msgs: Vec<libc::mmsghdr> = (0..messages)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &raw mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut report = tally(sender.as_raw_fd(), count, 0);
    for _ in 0..count {
        // SAFETY: `msgs` holds `messages` valid headers.
        let sent = unsafe { libc::sendmmsg(sender.as_raw_fd(), msgs.as_mut_ptr(), messages as u32, 0) };
        assert_eq!(sent, messages as i32, "sendmmsg: {}", std::io::Error::last_os_error());
        report.bytes_written += (messages * size) as u64;
    }
    report
}

fn timer_pattern(period: Duration, flushes: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let record = [b'r'; 100];
    let iov = vec![libc::iovec { iov_base: record.as_ptr() as *mut _, iov_len: 100 }; 64];
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..flushes {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let records = if i % 10 == 9 { 64 } else { 1 + (i as usize % 8) };
        let n = writev(devnull.as_raw_fd(), &iov[..records]);
        assert!(n >= 0, "writev: {}", std::io::Error::last_os_error());
        bytes += n as u64;
    }
    WorkloadReport { fd: devnull.as_raw_fd(), calls: flushes, bytes_written: bytes, ..Default::default() }
}

fn eagain_pattern(eagain: u64, hold: Duration) -> WorkloadReport {
    let mut pair = [0; 2];
    // SAFETY: `pair` has room for two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, pair.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    let fd = pair[0];
    let chunk = vec![b'x'; 4096];
    let mut report = tally(fd, 0, 0);
    while report.eagain < eagain {
        report.calls += 1;
        match write(fd, &chunk) {
            n if n == chunk.len() as isize => report.bytes_written += n as u64,
            n if n >= 0 => {
                report.short += 1;
                report.bytes_written += n as u64;
            }
            _ => {
                let err = std::io::Error::last_os_error();
                assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "write: {err}");
                report.eagain += 1;
            }
        }
    }
    thread::sleep(hold);
    report
}

fn epipe_pattern(count: u64) -> WorkloadReport {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors; SIG_IGN turns SIGPIPE into EPIPE.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    for _ in 0..count {
        assert_eq!(write(fds[1], b"x"), -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPIPE));
    }
    WorkloadReport { fd: fds[1], calls: count, epipe: count, ..Default::default() }
}

fn short_pattern(count: u64) -> WorkloadReport {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
    let [reader, writer] = fds;
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let capacity = unsafe { libc::fcntl(writer, libc::F_GETPIPE_SZ) } as usize;
    let too_much = vec![b'x'; capacity * 2];
    let mut drain = vec![0u8; capacity];
    let mut report = tally(writer, count, 0);
    for _ in 0..count {
        let n = write(writer, &too_much);
        assert!(n > 0 && (n as usize) < too_much.len(), "expected a short write, got {n}");
        report.short += 1;
        report.bytes_written += n as u64;
        // SAFETY: `drain` is valid for its length.
        while unsafe { libc::read(reader, drain.as_mut_ptr().cast(), drain.len()) } > 0 {}
    }
    report
}
