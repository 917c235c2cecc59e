//! What to change, in words: for each flagged descriptor or ring, the
//! batching primitive of the process's runtime (see `runtime`) that fits
//! it, or pipelining where the peer holds the fix.

use super::{FdState, ProcessState, exchange::Peer, io_uring::RingState, sync};
use crate::runtime::{Runtime, RuntimeName};

/// How a stream in `runtime` batches its writes to `what` ("fd 3 (pipe ...)").
pub fn for_stream(runtime: Option<&Runtime>, what: &str) -> String {
    let name = runtime.map_or(RuntimeName::Native, |r| r.name);
    let how = match name {
        RuntimeName::Nodejs => {
            "Node.js: `stream.cork()` before a burst of writes and `uncork()` on the next tick (`process.nextTick`), \
             or a Writable with `_writev`, so queued records leave in one writev"
        }
        RuntimeName::Go => {
            "Go: wrap the writer in a `bufio.Writer` (`bufio.NewWriterSize(w, 64<<10)`) and `Flush()` it from a \
             `time.Ticker` (and when a batch ends), so records leave in one write per flush"
        }
        RuntimeName::Java => {
            "Java: write through a `BufferedOutputStream` or `BufferedWriter` (8 KiB by default) and `flush()` per \
             batch or on a timer, not per record"
        }
        RuntimeName::Python => {
            "Python: use a buffered file object (`buffering=-1`, the default, not 0) and flush per batch, or join \
             the records and `write()` them once; in asyncio, drain an `asyncio.Queue` in chunks"
        }
        RuntimeName::Rust => {
            "Rust: wrap it in `std::io::BufWriter` and `flush()` per batch; in tokio, send records through a \
             `tokio::sync::mpsc` channel and write what `recv_many` returns at once"
        }
        RuntimeName::Dotnet => {
            ".NET: wrap the stream in a `BufferedStream` (or write through a `PipeWriter`) and flush per batch"
        }
        RuntimeName::Native => {
            "native: give the stream full buffering (`setvbuf(f, NULL, _IOFBF, 64 << 10)`) and `fflush` per batch, \
             or gather the records into one `writev()`"
        }
    };
    format!("{what}: {how}")
}

/// How a round-trip bound connection batches: the peer pipelines.
pub fn for_round_trip(what: &str, peer: Option<&Peer>) -> String {
    let peer = peer.map_or_else(|| "the peer".to_owned(), |p| format!("the peer ({})", p.describe()));
    format!(
        "{what}: request/response, batching lies with {peer}: have it pipeline, sending several requests before \
         reading the replies (a client's pipeline or batch API, multi-key commands such as MGET, HTTP/2)"
    )
}

/// Advice for one descriptor, for each of its raised flags.
pub fn of_fd(runtime: Option<&Runtime>, fd: i32, state: &FdState) -> Vec<String> {
    let mut advice = Vec::new();
    if state.flag.is_raised() {
        advice.push(for_stream(runtime, &state.describe(fd)));
    }
    if state.round_trip.is_raised() {
        advice.push(for_round_trip(&state.describe(fd), state.peer()));
    }
    advice
}

/// Advice for one ring, for each of its raised flags.
fn of_ring(ring: &RingState) -> Vec<String> {
    let name = ring.fd.map_or_else(|| "io_uring ring (fd unknown)".to_owned(), |fd| format!("io_uring ring fd {fd}"));
    let mut advice = Vec::new();
    if ring.unbatched.is_raised() {
        advice.push(format!(
            "{name}: queue several SQEs before each `io_uring_enter` (liburing: one `io_uring_submit` per batch, \
             not per `io_uring_get_sqe`)"
        ));
    }
    if ring.trickle.is_raised() {
        advice.push(format!("{name}: raise `sq_thread_idle`, or drop SQPOLL for this light load"));
    }
    advice
}

/// Advice for every flagged descriptor and ring of `process`.
pub fn of_process(process: &ProcessState) -> Vec<String> {
    let runtime = process.identity.runtime.as_ref();
    let fds = process.fds.iter().flat_map(|(&fd, state)| of_fd(runtime, fd, state));
    let rings = process.io_uring.iter().flat_map(|u| &u.rings).flat_map(of_ring);
    let mut advice: Vec<String> = fds.chain(rings).collect();
    // Process-wide syncs (`sync()`, `syncfs()`) and a file's own give the
    // same advice: say it once.
    for state in process.syncs.values().filter(|state| state.flag.is_raised()) {
        let sync = sync::advice(&process.identity, state.info.as_ref());
        if !advice.contains(&sync) {
            advice.push(sync);
        }
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_runtime_is_told_its_own_primitive() {
        let runtime = |name| Runtime { name, version: None };
        let said = |name| for_stream(Some(&runtime(name)), "fd 1 (pipe pipe:[5])");
        assert!(said(RuntimeName::Nodejs).contains("cork()"));
        assert!(said(RuntimeName::Go).contains("bufio.Writer") && said(RuntimeName::Go).contains("Ticker"));
        assert!(said(RuntimeName::Java).contains("BufferedOutputStream"));
        assert!(said(RuntimeName::Python).contains("asyncio.Queue"));
        assert!(said(RuntimeName::Rust).contains("BufWriter") && said(RuntimeName::Rust).contains("recv_many"));
        assert!(said(RuntimeName::Dotnet).contains("BufferedStream"));
        assert!(for_stream(None, "fd 1").contains("writev()"), "unknown is native");
        let peer = Peer::Local { pid: 20, comm: "cli".into(), fd: 5 };
        assert!(for_round_trip("fd 8", Some(&peer)).contains("the peer (pid 20 (cli) fd 5): have it pipeline"));
    }
}
