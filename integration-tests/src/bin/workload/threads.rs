//! Many threads writing to one descriptor at once, on every CPU: the
//! kernel's per-descriptor statistics must add up exactly however the calls
//! interleave.

use std::{
    os::fd::AsRawFd as _,
    sync::{Arc, Barrier},
    thread,
};

use integration_tests::{
    WorkloadReport,
    threads::{IOVEC_BYTES, WRITE_BYTES, WRITEV_IOVECS},
};

use super::{open_devnull, write, writev};

/// One `write()` of [`WRITE_BYTES`] to /dev/null, then `threads` threads,
/// thread `t` pinned to CPU `t % CPUs` and released together, each making
/// `count` calls on that descriptor: `write()`s of [`WRITE_BYTES`] from even
/// threads, `writev()`s of [`WRITEV_IOVECS`] × [`IOVEC_BYTES`] from odd ones.
pub fn threads(threads: u64, count: u64) -> WorkloadReport {
    let devnull = open_devnull();
    let fd = devnull.as_raw_fd();
    // The entry exists before the threads race: every call after this one has a gap.
    assert_eq!(write(fd, &[b'w'; WRITE_BYTES]), WRITE_BYTES as isize, "the first write");
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads as usize)
        .map(|t| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                pin_to_cpu(t % cpus);
                let record = [b'r'; WRITE_BYTES];
                let iov = [libc::iovec { iov_base: record.as_ptr() as *mut _, iov_len: IOVEC_BYTES }; WRITEV_IOVECS];
                start.wait();
                for _ in 0..count {
                    let n = if t % 2 == 0 { write(fd, &record[..WRITE_BYTES]) } else { writev(fd, &iov) };
                    assert!(n > 0, "thread {t}: {}", std::io::Error::last_os_error());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a writer thread panicked");
    }
    let writers = threads.div_ceil(2);
    let vectored = threads / 2;
    let bytes = WRITE_BYTES as u64 * (1 + writers * count) + (WRITEV_IOVECS * IOVEC_BYTES) as u64 * vectored * count;
    WorkloadReport { fd, calls: 1 + threads * count, bytes_written: bytes, ..Default::default() }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity
    // (0: the calling thread) only use the set given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let ret = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(ret, 0, "pinning a thread to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}
