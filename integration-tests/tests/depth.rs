//! Buffer depth end to end: a writer that filled its socket and holds it
//! full is seen at 100% of its send buffer, as a UNIX socket. Root only.

mod common;

use batchwatch::attribution::fds::FdKind;
use common::observe_while_ticking;

#[test]
fn a_full_socket_reads_full() {
    let [observed] = observe_while_ticking([&["eagain", "--eagain", "10", "--hold", "3s"][..]]);
    let process = observed.process();
    let fd = &process.fds[&observed.report.fd];
    let depth = fd.depth.expect("depth sampled while the socket was held full");
    assert!(depth.percent() >= 99.0, "{depth:?}");
    assert_eq!(depth.queued_bytes, observed.report.bytes_written, "nobody read anything");
    assert_eq!(fd.info.as_ref().map(|info| info.kind), Some(FdKind::Unix), "protocol learnt from sock_diag");
    assert!(process.depth_percent().is_some_and(|p| p >= 99.0));
}
