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
mod threads;
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

/// `count` records of `size` bytes, at most `rate` a second.
#[derive(clap::Args)]
struct Records {
    #[arg(long)]
    count: u64,
    #[arg(long)]
    size: usize,
    /// Records per second at most (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Subcommand)]
enum Pattern {
    /// `count` write()s of `size` bytes to /dev/null.
    Write(Records),
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
    /// The records of `write`, through a `std::io::BufWriter` (8 KiB):
    /// `count` records of `size` bytes at `rate` a second.
    Buffered(Records),
    /// `count` writev()s to /dev/null of `messages` framed messages each: a
    /// 4-byte header and a 20-byte payload, two iovecs per message.
    Framed {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        messages: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// An intermittent hot writer: `bursts` times, `calls` one-byte writes
    /// to /dev/null spread over `hot`, then nothing for `idle`.
    Bursts {
        #[arg(long)]
        bursts: u64,
        #[arg(long)]
        calls: u64,
        #[arg(long, value_parser = humantime::parse_duration)]
        hot: Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        idle: Duration,
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
    /// A user-space buffer of 64 KiB flushed by a ticker: a record of 50 B
    /// arrives every `every`, and every `period` what arrived goes out in one
    /// write() to /dev/null. The buffer never fills.
    Trickle {
        #[arg(long, value_parser = humantime::parse_duration)]
        period: Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Duration,
        #[arg(long)]
        flushes: u64,
    },
    /// A buffer of `buffer` bytes flushed only when full: records of 100 B
    /// arrive every `every`, and each time the buffer fills it goes out in
    /// one write() of exactly `buffer` bytes to /dev/null.
    FullBuffer {
        #[arg(long)]
        buffer: usize,
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Duration,
        #[arg(long)]
        flushes: u64,
    },
    /// `count` one-byte writes at `rate` a second to a loopback TCP
    /// connection whose reader (a thread of this process) reads and
    /// discards them and never answers.
    TcpStream {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        rate: u64,
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
        /// Register the ring's fd (`IORING_REGISTER_RING_FDS`): its enters
        /// then pass an index with `IORING_ENTER_REGISTERED_RING`.
        #[arg(long)]
        registered: bool,
        /// Submit without waiting, then wait in an enter of its own that
        /// submits nothing (two enters a round).
        #[arg(long)]
        wait_apart: bool,
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
        /// While the first child, done writing, waits: `flood` short-lived
        /// writers, so that a small `maps.max_processes` forgets the first
        /// child and the kernel cannot record its exit.
        #[arg(long, default_value_t = 0)]
        flood: u64,
    },
    /// Arguments no kernel accepts, between good writes of 100 bytes to an
    /// unlinked file: `count` writes, `pause`, then `write(fd, NULL,
    /// SIZE_MAX)` (EFAULT), a `writev` of 2^20 iovecs (EINVAL), a `writev`
    /// of two iovecs of `SSIZE_MAX / 2` bytes at NULL (EFAULT), `pause`, and
    /// `count` writes again. Then, on a UDP socket, a `sendmmsg` asking for
    /// 2^31 messages, of which the kernel sends 1024 (UIO_MAXIOV).
    BadArgs {
        #[arg(long)]
        count: u64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
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
    /// One write to /dev/null, then `threads` threads spread over the CPUs
    /// making `count` calls each on that descriptor at once (see `threads`).
    Threads {
        #[arg(long)]
        threads: u64,
        #[arg(long)]
        count: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    thread::sleep(cli.delay);
    let mut report = match cli.pattern {
        Pattern::Write(Records { count, size, rate }) => {
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
        Pattern::Buffered(Records { count, size, rate }) => {
            let devnull = open_devnull();
            let fd = devnull.as_raw_fd();
            let mut out = std::io::BufWriter::new(std::fs::File::from(devnull));
            let record = vec![b'x'; size];
            paced(count, rate, |_| out.write_all(&record).map_or(-1, |()| size as isize));
            out.flush().expect("flush");
            tally(fd, count, (count * size as u64) as i64)
        }
        Pattern::Framed { count, messages, rate } => {
            let devnull = open_devnull();
            let (header, payload) = ([b'h'; 4], [b'p'; 20]);
            let frame = [
                libc::iovec { iov_base: header.as_ptr() as *mut _, iov_len: header.len() },
                libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() },
            ];
            let iov = frame.repeat(messages);
            paced(count, rate, |_| writev(devnull.as_raw_fd(), &iov));
            tally(devnull.as_raw_fd(), count, (count * 24 * messages as u64) as i64)
        }
        Pattern::Bursts { bursts, calls, hot, idle } => {
            let devnull = open_devnull();
            let rate = (calls as f64 / hot.as_secs_f64()) as u64;
            for _ in 0..bursts {
                paced(calls, rate, |_| write(devnull.as_raw_fd(), b"x"));
                thread::sleep(idle);
            }
            tally(devnull.as_raw_fd(), bursts * calls, (bursts * calls) as i64)
        }
        Pattern::Sendmmsg { count, messages, size } => sendmmsg_pattern(count, messages, size),
        Pattern::Timer { period, flushes } => timer_pattern(period, flushes),
        Pattern::Trickle { period, every, flushes } => trickle_pattern(period, every, flushes),
        Pattern::FullBuffer { buffer, every, flushes } => full_buffer_pattern(buffer, every, flushes),
        Pattern::TcpStream { count, rate } => tcp_stream_pattern(count, rate),
        Pattern::Eagain { eagain, hold } => eagain_pattern(eagain, hold),
        Pattern::Short { count } => short_pattern(count),
        Pattern::Epipe { count } => epipe_pattern(count),
        Pattern::UringBatch { rounds, batch, sqpoll_idle, pause, registered, wait_apart } => {
            uring::batches(&uring::Batches { rounds, batch, sqpoll_idle, pause, registered, wait_apart })
        }
        Pattern::UringOverflow { rounds } => uring::overflow(rounds),
        Pattern::UringDenied => uring::denied(),
        Pattern::Forks { count, calls } => processes::forks(count, calls),
        Pattern::Reuse { first, second, pause, flood } => processes::reuse(first, second, pause, flood),
        Pattern::ManyFds { fds } => processes::many_fds(fds),
        Pattern::BadArgs { count, pause } => bad_args(count, pause),
        Pattern::SyncEvery { count, every, rate, dsync } => durability::sync_every(count, every, rate, dsync),
        Pattern::SyncPipe { count } => durability::sync_pipe(count),
        Pattern::UringFsync { count } => durability::uring_fsync(count),
        Pattern::Threads { threads, count } => threads::threads(threads, count),
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

pub fn writev(fd: RawFd, iov: &[libc::iovec]) -> isize {
    // SAFETY: every iovec points into a live buffer.
    unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) }
}

/// A UDP socket connected to a loopback one that never reads (returned
/// too, to keep it open).
fn udp_sender() -> (std::net::UdpSocket, std::net::UdpSocket) {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sender.connect(receiver.local_addr().expect("addr")).expect("connect");
    (sender, receiver)
}

/// `messages` message headers, each sending the one buffer `iov` points at.
fn mmsghdrs(iov: &mut libc::iovec, messages: usize) -> Vec<libc::mmsghdr> {
    (0..messages)
        .map(|_| {
            // SAFETY: an all-zero mmsghdr is valid; the iovec it points at lives on.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

fn sendmmsg_pattern(count: u64, messages: usize, size: usize) -> WorkloadReport {
    let (sender, _receiver) = udp_sender();
    let buf = vec![b'x'; size];
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: size };
    let mut msgs = mmsghdrs(&mut iov, messages);
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

fn trickle_pattern(period: Duration, every: Duration, flushes: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut report = tally(devnull.as_raw_fd(), 0, 0);
    let mut next_flush = Instant::now() + period;
    while report.calls < flushes {
        thread::sleep(every);
        buffer.extend_from_slice(&[b'r'; 50]);
        if Instant::now() >= next_flush {
            let n = write(devnull.as_raw_fd(), &buffer);
            assert_eq!(n, buffer.len() as isize, "write: {}", std::io::Error::last_os_error());
            report.calls += 1;
            report.bytes_written += n as u64;
            buffer.clear();
            next_flush += period;
        }
    }
    report
}

fn full_buffer_pattern(capacity: usize, every: Duration, flushes: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let mut buffer = Vec::with_capacity(capacity);
    let mut report = tally(devnull.as_raw_fd(), 0, 0);
    let record = [b'r'; 100];
    while report.calls < flushes {
        thread::sleep(every);
        // What fits goes in; a full buffer goes out, and the rest of the
        // record starts the next one (as BufferedOutputStream and bufio do).
        let fits = record.len().min(capacity - buffer.len());
        buffer.extend_from_slice(&record[..fits]);
        if buffer.len() == capacity {
            let n = write(devnull.as_raw_fd(), &buffer);
            assert_eq!(n, capacity as isize, "write: {}", std::io::Error::last_os_error());
            report.calls += 1;
            report.bytes_written += n as u64;
            buffer.clear();
            buffer.extend_from_slice(&record[fits..]);
        }
    }
    report
}

fn tcp_stream_pattern(count: u64, rate: u64) -> WorkloadReport {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let writer = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut reader, _) = listener.accept().expect("accept");
    let drain = thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()).expect("read"));
    paced(count, rate, |_| write(writer.as_raw_fd(), b"x"));
    let report = tally(writer.as_raw_fd(), count, count as i64);
    drop(writer);
    assert_eq!(drain.join().expect("the reader"), count);
    report
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

/// The bytes each good write of [`bad_args`] carries.
pub const BAD_ARGS_GOOD_WRITE: usize = 100;

fn bad_args(count: u64, pause: Duration) -> WorkloadReport {
    let dir = std::env::temp_dir();
    let file = tempfile_in(&dir);
    let fd = file.as_raw_fd();
    let good = [b'g'; BAD_ARGS_GOOD_WRITE];
    paced(count, 0, |_| write(fd, &good));
    thread::sleep(pause);
    let expect_errno = |ret: isize, errno: i32, what: &str| {
        assert_eq!(ret, -1, "{what} should fail");
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(errno), "{what}");
    };
    // SAFETY: the kernel refuses the NULL buffer before reading it.
    expect_errno(unsafe { libc::write(fd, std::ptr::null(), usize::MAX) }, libc::EFAULT, "write(NULL, SIZE_MAX)");
    let iov = vec![libc::iovec { iov_base: good.as_ptr() as *mut _, iov_len: good.len() }; 1 << 20];
    // SAFETY: every iovec points into `good`; the kernel refuses the count.
    expect_errno(unsafe { libc::writev(fd, iov.as_ptr(), 1 << 20) }, libc::EINVAL, "writev of 2^20 iovecs");
    let huge = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: isize::MAX as usize / 2 }; 2];
    // SAFETY: the kernel refuses the NULL buffers before reading them.
    expect_errno(unsafe { libc::writev(fd, huge.as_ptr(), 2) }, libc::EFAULT, "writev of SSIZE_MAX bytes at NULL");
    thread::sleep(pause);
    paced(count, 0, |_| write(fd, &good));
    let mut report = tally(fd, 2 * count + 3, 2 * count as i64 * BAD_ARGS_GOOD_WRITE as i64);
    report.children.push(huge_vlen_sendmmsg());
    report
}

/// An unlinked file in `dir`, open for writing.
fn tempfile_in(dir: &std::path::Path) -> std::fs::File {
    let path = dir.join(format!("batchwatch-badargs-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("create a temporary file");
    std::fs::remove_file(&path).expect("unlink it");
    file
}

/// One `sendmmsg` asking for 2^31 messages on a UDP socket: the kernel cuts
/// `vlen` to 1024 and sends those. Reported as a "child" of this process:
/// the socket, one call, and the bytes sent.
fn huge_vlen_sendmmsg() -> integration_tests::Child {
    const SENT: usize = 1024;
    const SIZE: usize = 10;
    let (sender, _receiver) = udp_sender();
    let buf = [b'm'; SIZE];
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: SIZE };
    let mut msgs = mmsghdrs(&mut iov, SENT);
    // SAFETY: the kernel reads at most UIO_MAXIOV (1024) headers, all valid.
    let sent = unsafe { libc::sendmmsg(sender.as_raw_fd(), msgs.as_mut_ptr(), 1 << 31, 0) };
    assert_eq!(sent, SENT as i32, "sendmmsg: {}", std::io::Error::last_os_error());
    integration_tests::Child {
        pid: std::process::id(),
        fd: sender.as_raw_fd(),
        calls: 1,
        bytes_written: (SENT * SIZE) as u64,
    }
}
