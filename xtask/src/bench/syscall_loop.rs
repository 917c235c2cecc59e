//! `bench-loop`: the syscall loops that `cargo xtask bench` times. A binary of
//! its own, built in release mode, so that the loop around each syscall is a
//! few instructions and the same for every variant the harness compares.
//!
//! - `bench-loop measure --calls N WORKLOAD...`: for each workload, `N` calls
//!   split in batches, each batch timed with the monotonic clock; prints one
//!   line per workload: `NAME MEDIAN_NS_PER_CALL MIN_NS_PER_CALL TIMED_CALLS
//!   ALL_CALLS` (all: with the untimed warm-up).
//! - `bench-loop sustain --seconds S [--rate R]`: 1-byte `write()`s to
//!   /dev/null, as fast as possible or paced at `R` per second; prints
//!   `CALLS SECONDS`.
//! - `bench-loop hold N`: forks `N` children that each make one 1-byte
//!   `write()` and then sleep in a blocking read; prints `ready N` once all
//!   have written, and lets them go when its stdin closes (or it dies).
//!
//! Only the C library is used: `std` for write, writev, send, fsync and getppid
//! (each one direct libc call; glibc's `send` is the `sendto` syscall), raw
//! `syscall()` for io_uring, whose ring is set up here from the kernel's ABI
//! (linux/io_uring.h).

use std::{
    ffi::{c_long, c_void},
    fs::File,
    hint::black_box,
    io::{IoSlice, Read as _, Write as _},
    net::UdpSocket,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Syscall loops timed by `cargo xtask bench`")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Time each workload: ns per call, median and minimum of the batches.
    Measure {
        /// Calls per workload, split evenly over the batches.
        #[arg(long, default_value_t = 1_000_000)]
        calls: u64,
        #[arg(long, default_value_t = 5)]
        batches: u64,
        /// Stop a workload's batches early once it has run this long.
        #[arg(long, default_value_t = 4.0)]
        max_seconds: f64,
        #[arg(required = true)]
        workloads: Vec<Workload>,
    },
    /// 1-byte writes to /dev/null for a while; prints `CALLS SECONDS`.
    Sustain {
        #[arg(long)]
        seconds: f64,
        /// Calls per second (0: as many as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Fork `processes` children that write once each and stay alive.
    Hold { processes: u32 },
}

/// What one timed call does.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// `write(/dev/null, 1 byte)`.
    Write,
    /// `writev(/dev/null, 4 iovecs of 1 byte)`.
    Writev,
    /// `send(1 byte)` on a UDP socket connected to a loopback socket that
    /// never reads (the kernel drops what its buffer cannot take; the send
    /// still succeeds).
    Sendto,
    /// `io_uring_enter(to_submit = 1)` of one NOP, whose completion is reaped
    /// from the ring afterwards.
    UringNop,
    /// `io_uring_enter(to_submit = 16)` of 16 NOPs, their completions reaped.
    UringNop16,
    /// `io_uring_enter(to_submit = 0)`: the syscall and nothing to do.
    UringEmpty,
    /// `getppid()`, which no probe watches.
    Getppid,
    /// `write(1 byte)` then `fsync()` of a file in $TMPDIR: a write made
    /// durable, which waits for the disk.
    WriteFsync,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Writev => "writev",
            Workload::Sendto => "sendto",
            Workload::UringNop => "uring-nop",
            Workload::UringNop16 => "uring-nop16",
            Workload::UringEmpty => "uring-empty",
            Workload::Getppid => "getppid",
            Workload::WriteFsync => "write-fsync",
        }
    }

    /// Calls per batch: a durable write takes the disk's time (tens of
    /// microseconds to milliseconds), a thousand times a plain call's.
    fn per_batch(self, per_batch: u64) -> u64 {
        match self {
            Workload::WriteFsync => (per_batch / 1000).max(50),
            _ => per_batch,
        }
    }
}

fn main() {
    match Cli::parse().mode {
        Mode::Measure { calls, batches, max_seconds, workloads } => {
            let devnull = File::options().write(true).open("/dev/null").expect("opening /dev/null");
            let udp = connected_udp().expect("connecting a UDP socket on loopback");
            let synced = SyncedFile::create().expect("creating a file in $TMPDIR to fsync");
            let mut ring = Ring::new(BATCH_SQES).expect("setting up an io_uring");
            let per_batch = (calls / batches.max(1)).max(1);
            for workload in workloads {
                let per_batch = workload.per_batch(per_batch);
                let (median, min, timed, all) = time(per_batch, batches, max_seconds, |n| match workload {
                    Workload::Write => repeat_write(&devnull, n),
                    Workload::Writev => repeat_writev(&devnull, n),
                    Workload::Sendto => repeat_send(&udp.0, n),
                    Workload::UringNop => ring.repeat_nops(n, 1),
                    Workload::UringNop16 => ring.repeat_nops(n, BATCH_SQES),
                    Workload::UringEmpty => ring.repeat_empty(n),
                    Workload::Getppid => repeat_getppid(n),
                    Workload::WriteFsync => synced.repeat_write_fsync(n),
                });
                println!("{} {median:.2} {min:.2} {timed} {all}", workload.name());
            }
        }
        Mode::Sustain { seconds, rate } => {
            let devnull = File::options().write(true).open("/dev/null").expect("opening /dev/null");
            let (calls, elapsed) = sustain(&devnull, Duration::from_secs_f64(seconds), rate);
            println!("{calls} {elapsed:.3}");
        }
        Mode::Hold { processes } => hold(processes),
    }
}

/// Runs `batches` batches of `per_batch` calls (fewer once `max_seconds`
/// have passed, but at least three); returns the median and the minimum
/// ns per call over the batches, the calls timed, and all calls made.
fn time(per_batch: u64, batches: u64, max_seconds: f64, mut run: impl FnMut(u64)) -> (f64, f64, u64, u64) {
    // One short batch first, untimed: page faults, caches, CPU frequency.
    let warm_up = per_batch / 10;
    run(warm_up);
    let started = Instant::now();
    let mut samples = Vec::new();
    for batch in 0..batches.max(1) {
        if batch >= 3 && started.elapsed().as_secs_f64() > max_seconds {
            break;
        }
        let t0 = Instant::now();
        run(per_batch);
        samples.push(t0.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let timed = per_batch * samples.len() as u64;
    (median, samples[0], timed, timed + warm_up)
}

fn repeat_write(file: &File, n: u64) {
    let mut file = file;
    for _ in 0..n {
        black_box(file.write(black_box(b"x")).expect("write to /dev/null"));
    }
}

fn repeat_writev(file: &File, n: u64) {
    let mut file = file;
    let byte = [b'x'];
    let iovecs = [IoSlice::new(&byte), IoSlice::new(&byte), IoSlice::new(&byte), IoSlice::new(&byte)];
    for _ in 0..n {
        black_box(file.write_vectored(black_box(&iovecs)).expect("writev to /dev/null"));
    }
}

/// A file in $TMPDIR, removed when dropped.
struct SyncedFile {
    file: File,
    path: std::path::PathBuf,
}

impl SyncedFile {
    fn create() -> std::io::Result<SyncedFile> {
        let path = std::env::temp_dir().join(format!("bench-loop-fsync-{}", std::process::id()));
        let file = File::options().create(true).truncate(true).write(true).open(&path)?;
        Ok(SyncedFile { file, path })
    }

    fn repeat_write_fsync(&self, n: u64) {
        let mut file = &self.file;
        for _ in 0..n {
            black_box(file.write(black_box(b"x")).expect("write to the synced file"));
            file.sync_all().expect("fsync");
        }
    }
}

impl Drop for SyncedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A sender connected to a receiver that never reads, both on loopback;
/// the receiver lives as long as the sender is used.
fn connected_udp() -> std::io::Result<(UdpSocket, UdpSocket)> {
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    sender.connect(receiver.local_addr()?)?;
    Ok((sender, receiver))
}

fn repeat_send(socket: &UdpSocket, n: u64) {
    for _ in 0..n {
        black_box(socket.send(black_box(b"x")).expect("send on a connected UDP socket"));
    }
}

fn repeat_getppid(n: u64) {
    for _ in 0..n {
        black_box(std::os::unix::process::parent_id());
    }
}

/// 1-byte writes for `duration`, at most `rate` per second (0: no limit).
fn sustain(file: &File, duration: Duration, rate: u64) -> (u64, f64) {
    const CHUNK: u64 = 256;
    let started = Instant::now();
    let mut calls = 0;
    loop {
        repeat_write(file, CHUNK);
        calls += CHUNK;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            return (calls, elapsed.as_secs_f64());
        }
        if rate > 0 {
            // Ahead of the pace: sleep until the calls made are due.
            let due = Duration::from_secs_f64(calls as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(elapsed) {
                std::thread::sleep(ahead);
            }
        }
    }
}

unsafe extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
    fn mmap(addr: *mut c_void, length: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> *mut c_void;
    fn fork() -> i32;
    fn _exit(status: i32) -> !;
    fn wait(status: *mut i32) -> i32;
}

/// `fork` and `wait` in the children of `hold`.
fn hold(processes: u32) {
    let (mut ready_reader, ready_writer) = std::io::pipe().expect("pipe");
    let (hold_reader, hold_writer) = std::io::pipe().expect("pipe");
    for _ in 0..processes {
        // SAFETY: this process has one thread, so the child may go on with
        // anything; it only writes, reads and exits.
        match unsafe { fork() } {
            -1 => panic!("fork failed after some children: {}", std::io::Error::last_os_error()),
            0 => {
                drop(hold_writer);
                let mut ready_writer = ready_writer;
                let mut hold_reader = hold_reader;
                // The one write the agent sees from this process.
                let _ = ready_writer.write(b"r");
                // Returns at end of file: when the parent closes its end or dies.
                let _ = hold_reader.read(&mut [0u8; 1]);
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { _exit(0) };
            }
            _ => {}
        }
    }
    drop(ready_writer);
    drop(hold_reader);
    let mut seen = 0u64;
    let mut buf = [0u8; 4096];
    while seen < u64::from(processes) {
        match ready_reader.read(&mut buf).expect("reading the children's writes") {
            0 => panic!("children exited before writing"),
            n => seen += n as u64,
        }
    }
    println!("ready {processes}");
    std::io::stdout().flush().expect("stdout");
    // Hold until the harness closes stdin, then let the children go.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(hold_writer);
    // SAFETY: `wait` with a null status pointer; reaps until no child is left.
    while unsafe { wait(ptr::null_mut()) } > 0 {}
}

const SYS_IO_URING_SETUP: c_long = 425;
const SYS_IO_URING_ENTER: c_long = 426;
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const PROT_READ_WRITE: i32 = 0x1 | 0x2;
const MAP_SHARED_POPULATE: i32 = 0x01 | 0x8000;
const SQE_SIZE: usize = 64;
const CQE_SIZE: usize = 16;

/// `struct io_uring_params`, `io_sqring_offsets` and `io_cqring_offsets`
/// as 30 `u32`s: 10 of parameters, then 10 of each offsets struct.
#[repr(C)]
struct Params([u32; 30]);

impl Params {
    const SQ_ENTRIES: usize = 0;
    const CQ_ENTRIES: usize = 1;
    const SQ_OFF: usize = 10;
    const CQ_OFF: usize = 20;
    // Within each offsets struct.
    const HEAD: usize = 0;
    const TAIL: usize = 1;
    const RING_MASK: usize = 2;
    /// `array` for the SQ ring, `cqes` for the CQ ring.
    const SQ_ARRAY: usize = 6;
    const CQ_CQES: usize = 5;
}

/// SQEs per enter of the batched io_uring workload, and the ring's size.
const BATCH_SQES: u32 = 16;

/// A minimal io_uring: batches of NOPs, or empty enters.
struct Ring {
    fd: OwnedFd,
    sq_tail: *const AtomicU32,
    sq_mask: u32,
    sq_array: *mut u32,
    sqes: *mut u8,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const u8,
}

impl Ring {
    fn new(entries: u32) -> std::io::Result<Ring> {
        let mut params = Params([0; 30]);
        // SAFETY: io_uring_setup(entries, params) fills `params`.
        let fd = unsafe { syscall(SYS_IO_URING_SETUP, entries, &raw mut params) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let p = &params.0;
        let (sq, cq) = (Params::SQ_OFF, Params::CQ_OFF);
        let sq_len = p[sq + Params::SQ_ARRAY] as usize + p[Params::SQ_ENTRIES] as usize * 4;
        let cq_len = p[cq + Params::CQ_CQES] as usize + p[Params::CQ_ENTRIES] as usize * CQE_SIZE;
        let sq_ring = map(&fd, sq_len, IORING_OFF_SQ_RING)?;
        let cq_ring = map(&fd, cq_len, IORING_OFF_CQ_RING)?;
        let sqes = map(&fd, p[Params::SQ_ENTRIES] as usize * SQE_SIZE, IORING_OFF_SQES)?;
        // SAFETY: the offsets are the kernel's, within the mapped lengths.
        unsafe {
            Ok(Ring {
                sq_tail: sq_ring.add(p[sq + Params::TAIL] as usize).cast(),
                sq_mask: *sq_ring.add(p[sq + Params::RING_MASK] as usize).cast::<u32>(),
                sq_array: sq_ring.add(p[sq + Params::SQ_ARRAY] as usize).cast(),
                sqes,
                cq_head: cq_ring.add(p[cq + Params::HEAD] as usize).cast(),
                cq_tail: cq_ring.add(p[cq + Params::TAIL] as usize).cast(),
                cq_mask: *cq_ring.add(p[cq + Params::RING_MASK] as usize).cast::<u32>(),
                cqes: cq_ring.add(p[cq + Params::CQ_CQES] as usize),
                fd,
            })
        }
    }

    fn enter(&self, to_submit: u32) -> c_long {
        // SAFETY: io_uring_enter(fd, to_submit, min_complete, flags, sig, sigsz).
        unsafe {
            syscall(SYS_IO_URING_ENTER, self.fd.as_raw_fd(), to_submit, 0u32, 0u32, ptr::null::<c_void>(), 0usize)
        }
    }

    /// `n` enters of `batch` NOPs each (at most the ring's size), every
    /// completion reaped.
    fn repeat_nops(&mut self, n: u64, batch: u32) {
        for i in 0..n {
            // SAFETY: this thread is the rings' only user; indices are masked.
            unsafe {
                let tail = (*self.sq_tail).load(Ordering::Relaxed);
                for k in 0..batch {
                    let index = tail.wrapping_add(k) & self.sq_mask;
                    let sqe = self.sqes.add(index as usize * SQE_SIZE);
                    // A zeroed SQE is IORING_OP_NOP; user_data is at byte 32.
                    ptr::write_bytes(sqe, 0, SQE_SIZE);
                    sqe.add(32).cast::<u64>().write(i);
                    self.sq_array.add(index as usize).write(index);
                }
                (*self.sq_tail).store(tail.wrapping_add(batch), Ordering::Release);
            }
            let submitted = self.enter(batch);
            assert_eq!(submitted, c_long::from(batch), "io_uring_enter did not take the NOPs");
            // SAFETY: as above; NOPs complete within the enter.
            unsafe {
                let head = (*self.cq_head).load(Ordering::Relaxed);
                let tail = (*self.cq_tail).load(Ordering::Acquire);
                assert_eq!(tail.wrapping_sub(head), batch, "the NOPs' completions are not in the ring");
                for k in 0..batch {
                    let cqe = self.cqes.add((head.wrapping_add(k) & self.cq_mask) as usize * CQE_SIZE);
                    let res = cqe.add(8).cast::<i32>().read();
                    assert_eq!(res, 0, "a NOP failed");
                }
                (*self.cq_head).store(tail, Ordering::Release);
            }
        }
    }

    /// `n` enters with nothing to submit or wait for.
    fn repeat_empty(&mut self, n: u64) {
        for _ in 0..n {
            black_box(self.enter(0));
        }
    }
}

fn map(fd: &OwnedFd, len: usize, offset: i64) -> std::io::Result<*mut u8> {
    // SAFETY: a shared mapping of the ring's memory; never unmapped (the
    // process ends first).
    let at = unsafe { mmap(ptr::null_mut(), len, PROT_READ_WRITE, MAP_SHARED_POPULATE, fd.as_raw_fd(), offset) };
    if at as isize == -1 { Err(std::io::Error::last_os_error()) } else { Ok(at.cast()) }
}
