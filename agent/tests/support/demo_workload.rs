//! The workload the dashboards test watches: one process named
//! `bwdash-demo` whose threads give every batching metric something to show.
//!
//! The process is the test binary itself, started again through a symlink
//! of that name (the kernel names a process after the file it executes), so
//! that it has its name from its first write; the test binary runs only its
//! `demo_workload` test, which calls [`run`] when [`ENV`] is set. It runs
//! until its standard input closes, or [`LIFETIME`] at most.
//!
//! | thread | what it does | what it shows |
//! |---|---|---|
//! | `hot` | 1-byte `write()`s to /dev/null, ~10000/s | an un-batched hot writer (`hot_writer`) |
//! | `batched` | `writev()`s of 16 records to /dev/null, 200/s | batch sizes above one record |
//! | `sockfill` | fills a non-blocking UNIX stream socket nobody reads, then retries | buffer depth near 100 %, `eagain` drops |
//! | `epipe` | writes to a pipe whose reader is closed | `epipe` drops |
//! | `badiov` | `writev()` with an unreadable iovec array | probe errors (`args_unreadable`) |
//! | `uring1` | one SQE per `io_uring_enter`, ~8000/s | `io_uring_unbatched`, SQEs per enter |
//! | `overflow` | a ring whose completions are never reaped | CQ overflows, ring fill 100 % |
//! | `sqpoll` | an SQPOLL ring fed one SQE every 30 ms | SQPOLL wake-ups (`sqpoll_trickle`) |
//! | `denied` | `io_uring_setup` under a seccomp filter returning EPERM | set-ups denied |
//! | `idle` | every 5 s, one write to a new descriptor it then keeps idle | fd map evictions (the agent runs with `--evict-idle-after 10s`) |
//! | `syncer` | a 100-byte `write()` then `fdatasync()` of a temporary file, ~50/s | sync per write (`sync_per_write`), writes per sync, sync duration |
//! | `syncfail` | `fsync()` of a pipe, twice a second: EINVAL | failed syncs |

use std::{
    fs::File,
    io::Read as _,
    os::fd::{AsRawFd as _, RawFd},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use io_uring::{IoUring, opcode, types};

/// The workload process's name (its `/proc/PID/comm`).
pub const NAME: &str = "bwdash-demo";
/// Set in the workload process's environment: the `demo_workload` test runs it.
pub const ENV: &str = "BATCHWATCH_DEMO_WORKLOAD";
/// The longest the workload runs, should its parent forget it.
pub const LIFETIME: Duration = Duration::from_secs(300);

/// The running workload process.
pub struct Demo {
    child: Child,
    dir: PathBuf,
}

impl Demo {
    /// Starts the workload: this test binary again, through a symlink
    /// named [`NAME`], running only the `test_name` test.
    pub fn start(test_name: &str) -> Demo {
        let dir = std::env::temp_dir().join(format!("bwdash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(NAME);
        let _ = std::fs::remove_file(&exe);
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &exe).unwrap();
        let child = Command::new(&exe)
            .args(["--exact", test_name, "--ignored", "--nocapture", "--test-threads=1"])
            .env(ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the demo workload");
        Demo { child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (a panicking thread ends it).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Closing its standard input ends it; a kill if it does not listen.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A thread of the workload: its name, and what it does until stopped.
type Worker = (&'static str, fn(&AtomicBool));

/// The workload itself, in the started process: runs the threads until
/// standard input closes (or [`LIFETIME`]), then returns.
pub fn run() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: [Worker; 12] = [
        ("hot", hot),
        ("batched", batched),
        ("sockfill", sockfill),
        ("epipe", epipe),
        ("badiov", badiov),
        ("uring1", uring_one_per_enter),
        ("overflow", uring_overflow),
        ("sqpoll", uring_sqpoll_trickle),
        ("denied", uring_denied),
        ("idle", idle),
        ("syncer", syncer),
        ("syncfail", syncfail),
    ];
    let handles: Vec<_> = workers
        .into_iter()
        .map(|(name, work)| {
            let stop = Arc::clone(&stop);
            thread::Builder::new().name(name.to_owned()).spawn(move || work(&stop)).unwrap()
        })
        .collect();
    // EOF on stdin (the parent dropped its end, or died) ends the workload.
    let (eof_tx, eof_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = eof_tx.send(());
    });
    let _ = eof_rx.recv_timeout(LIFETIME);
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("a workload thread panicked");
    }
}

fn dev_null() -> File {
    File::options().write(true).open("/dev/null").unwrap()
}

/// Repeats `work` (which should take little time) every `period` until stopped.
fn every(stop: &AtomicBool, period: Duration, mut work: impl FnMut()) {
    while !stop.load(Ordering::Relaxed) {
        work();
        thread::sleep(period);
    }
}

fn write_raw(fd: RawFd, bytes: &[u8]) -> isize {
    // SAFETY: `bytes` is valid for its length; a bad fd only makes write fail.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
}

/// A new descriptor every 5 s that writes once, then stays open and idle,
/// so that evictions keep coming.
fn idle(stop: &AtomicBool) {
    let mut kept = Vec::new();
    let mut ticks = 0;
    every(stop, Duration::from_millis(500), || {
        if ticks % 10 == 0 {
            let null = dev_null();
            assert_eq!(write_raw(null.as_raw_fd(), b"x"), 1);
            kept.push(null);
        }
        ticks += 1;
    });
}

/// ~10000 one-byte writes a second: ten times `hot_writer.min_calls_per_sec`,
/// so that a busy machine's longer sleeps still leave it flagged.
fn hot(stop: &AtomicBool) {
    let null = dev_null();
    every(stop, Duration::from_millis(10), || {
        for _ in 0..100 {
            assert_eq!(write_raw(null.as_raw_fd(), b"x"), 1);
        }
    });
}

/// 200 writev()s a second, 16 records of 64 bytes each.
fn batched(stop: &AtomicBool) {
    let null = dev_null();
    let record = [b'r'; 64];
    let iovecs = [libc::iovec { iov_base: record.as_ptr() as *mut _, iov_len: record.len() }; 16];
    every(stop, Duration::from_millis(5), || {
        // SAFETY: the iovecs point into `record`, alive for the call.
        let written = unsafe { libc::writev(null.as_raw_fd(), iovecs.as_ptr(), iovecs.len() as i32) };
        assert_eq!(written, 16 * 64);
    });
}

/// A connected pair of UNIX stream sockets; the writing end non-blocking.
fn socket_pair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two-element array.
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) },
        0
    );
    (fds[0], fds[1])
}

/// Fills a socket that nobody reads until the kernel says EAGAIN, holds it
/// full, and tries again 50 times a second: every try is an `eagain` drop.
fn sockfill(stop: &AtomicBool) {
    let (writer, reader) = socket_pair();
    let chunk = vec![b's'; 16 * 1024];
    while write_raw(writer, &chunk) > 0 {}
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN));
    every(stop, Duration::from_millis(20), || {
        assert_eq!(write_raw(writer, &chunk[..4096]), -1);
    });
    // SAFETY: both descriptors are ours and closed once.
    unsafe {
        libc::close(writer);
        libc::close(reader);
    }
}

/// Writes to a pipe whose read end is closed: EPIPE, 20 times a second
/// (the test harness ignores SIGPIPE, as Rust programs do).
fn epipe(stop: &AtomicBool) {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the read end is ours.
    unsafe { libc::close(fds[0]) };
    every(stop, Duration::from_millis(50), || {
        assert_eq!(write_raw(fds[1], b"lost"), -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPIPE));
    });
    // SAFETY: the write end is ours.
    unsafe { libc::close(fds[1]) };
}

/// A write then an fdatasync of a temporary file, about 50 times a second:
/// one write made durable per sync.
fn syncer(stop: &AtomicBool) {
    let path = std::env::temp_dir().join(format!("bwdash-sync-{}", std::process::id()));
    let file = File::options().create(true).truncate(true).write(true).open(&path).unwrap();
    every(stop, Duration::from_millis(20), || {
        assert_eq!(write_raw(file.as_raw_fd(), &[b's'; 100]), 100);
        // SAFETY: a plain syscall on an open descriptor.
        assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0);
    });
    let _ = std::fs::remove_file(&path);
}

/// fsync of a pipe twice a second: the kernel says EINVAL, a failed sync.
fn syncfail(stop: &AtomicBool) {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    every(stop, Duration::from_millis(500), || {
        // SAFETY: a plain syscall on an open descriptor.
        assert_eq!(unsafe { libc::fsync(fds[1]) }, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
    });
    // SAFETY: both ends are ours.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// writev() with an iovec array at an unmapped address, 5 times a second:
/// the kernel says EFAULT, and the probe cannot read the iovecs.
fn badiov(stop: &AtomicBool) {
    let null = dev_null();
    every(stop, Duration::from_millis(200), || {
        // In the first page, which is never mapped.
        let unmapped = std::ptr::dangling::<libc::iovec>();
        // SAFETY: the kernel checks the address and fails with EFAULT; nothing is dereferenced here.
        assert_eq!(unsafe { libc::writev(null.as_raw_fd(), unmapped, 2) }, -1);
    });
}

/// A write SQE of 64 bytes to /dev/null.
fn write_sqe(null: &File, buffer: &[u8]) -> io_uring::squeue::Entry {
    opcode::Write::new(types::Fd(null.as_raw_fd()), buffer.as_ptr(), buffer.len() as u32).build()
}

/// ~8000 `io_uring_enter`s a second submitting one write SQE each, and
/// every 100th a batch of 8.
fn uring_one_per_enter(stop: &AtomicBool) {
    let mut ring = IoUring::new(16).expect("io_uring_setup");
    let null = dev_null();
    let buffer = [b'u'; 64];
    let mut round = 0u64;
    every(stop, Duration::from_millis(10), || {
        for _ in 0..80 {
            round += 1;
            let sqes = if round.is_multiple_of(100) { 8 } else { 1 };
            for _ in 0..sqes {
                // SAFETY: `buffer` outlives the request, which completes before the next round.
                unsafe { ring.submission().push(&write_sqe(&null, &buffer)).expect("room in the SQ") };
            }
            ring.submit_and_wait(sqes).expect("io_uring_enter");
            assert_eq!(ring.completion().count(), sqes);
        }
    });
}

/// A ring of 4 SQ and 8 CQ entries whose completions are never reaped:
/// once 8 are waiting, every further one overflows the CQ (10 a second).
fn uring_overflow(stop: &AtomicBool) {
    let mut ring: IoUring = IoUring::builder().setup_cqsize(8).build(4).expect("io_uring_setup");
    every(stop, Duration::from_millis(100), || {
        // SAFETY: a NOP refers to no memory.
        unsafe { ring.submission().push(&opcode::Nop::new().build()).expect("room in the SQ") };
        ring.submit().expect("io_uring_enter");
    });
}

/// An SQPOLL ring whose poller sleeps after 5 ms idle, fed one NOP every
/// 30 ms: every submission has to wake it (`IORING_ENTER_SQ_WAKEUP`).
fn uring_sqpoll_trickle(stop: &AtomicBool) {
    let mut ring: IoUring = IoUring::builder().setup_sqpoll(5).build(8).expect("io_uring_setup with SQPOLL");
    every(stop, Duration::from_millis(30), || {
        // SAFETY: a NOP refers to no memory.
        unsafe { ring.submission().push(&opcode::Nop::new().build()).expect("room in the SQ") };
        ring.submit().expect("io_uring_enter");
        ring.completion().for_each(drop);
    });
}

/// Why io_uring cannot be used here, if it cannot (kernel.io_uring_disabled, an old kernel).
pub fn io_uring_unavailable() -> Option<String> {
    let plain = IoUring::new(2).err().map(|e| format!("io_uring_setup: {e}"));
    let sqpoll = IoUring::<io_uring::squeue::Entry>::builder().setup_sqpoll(5).build(2).err();
    plain.or(sqpoll.map(|e| format!("io_uring_setup with SQPOLL: {e}")))
}

/// Refuses `io_uring_setup` to this thread with EPERM (a seccomp filter,
/// as containerd's default profile does), then tries it twice a second.
fn uring_denied(stop: &AtomicBool) {
    deny_io_uring_setup();
    every(stop, Duration::from_millis(500), || {
        let error = IoUring::new(4).err().expect("io_uring_setup must be refused");
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    });
}

/// Installs, for the calling thread only, a seccomp filter that fails
/// `io_uring_setup` with EPERM and allows everything else.
fn deny_io_uring_setup() {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let statement = |code, k| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jump = |k, jt, jf| libc::sock_filter { code: jeq, jt, jf, k };
    let mut program = [
        statement(load, ARCH),
        jump(AUDIT_ARCH, 1, 0),
        statement(ret, libc::SECCOMP_RET_ALLOW),
        statement(load, NR),
        jump(libc::SYS_io_uring_setup as u32, 0, 1),
        statement(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        statement(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let filter = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: prctl with a valid filter program; both calls affect only this thread.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &filter as *const _), 0);
    }
}
