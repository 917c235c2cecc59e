//! Buffer depth: how full the kernel queue is that a hot descriptor writes
//! into, in bytes and as a share of the queue's limit. Sustained depth above
//! ~80% means the reader or the network cannot keep up: backpressure, the
//! leading indicator before `EAGAIN` and other drops.
//!
//! Sockets are read from sock_diag netlink dumps, one dump per (network
//! namespace, socket table) per round whatever the number of fds; pipes
//! through a descriptor of our own for the pipe (the `pipe` submodule says
//! why that is safe and what it does). Checked against Linux 6.18.
//! io_uring rings' submission and completion queues are read from
//! `/proc/PID/fdinfo/FD` ([`fdinfo`]), when the model samples ring depths.
//!
//! # What "queued" and "full" mean per kind
//! A depth has two figures, because for sockets the kernel does not limit
//! payload bytes but the memory charged for them (`skb->truesize`: payload
//! plus `struct sk_buff` and `skb_shared_info`, rounded to the allocation).
//! [`Depth::queued_bytes`] is the payload waiting, for people;
//! [`Depth::charged_bytes`] is what the kernel compares with the limit
//! [`Depth::capacity_bytes`], so [`Depth::percent`] reaches 100 exactly when
//! the writer blocks or gets `EAGAIN`. The two differ most for small writes
//! on UNIX sockets, where each `write()` becomes its own skb: 768 bytes are
//! charged for a 1-byte write, so 278 one-byte writes fill the default
//! 208 KiB send buffer (measured), and an un-batched logger blocks with a
//! few KiB of payload queued.
//!
//! | fd | queued bytes | charged bytes (the limit's unit) | capacity |
//! |---|---|---|---|
//! | TCP | `idiag_wqueue` = `write_seq - snd_una`: written and not yet acknowledged, unsent and in flight (`tcp_diag_get_info()`, what `ss` shows as Send-Q) | `SK_MEMINFO_WMEM_QUEUED` (`sk_wmem_queued`): TCP keeps every skb on its write or retransmit queue until acked; `tcp_sendmsg()` waits while `sk_stream_memory_free()` finds `sk_wmem_queued >= sk_sndbuf`. (`SK_MEMINFO_WMEM_ALLOC` is only the clones handed to the qdisc and driver.) | `SK_MEMINFO_SNDBUF` |
//! | UDP | `SK_MEMINFO_WMEM_ALLOC` (`sk_wmem_alloc`): UDP has no send queue; a datagram is charged from `sock_alloc_send_skb()` until the qdisc or driver frees it (or while corked), and `sock_alloc_send_pskb()` blocks when `sk_wmem_alloc >= sk_sndbuf`. `idiag_wqueue` is the same figure (`udp_diag_get_info()`). Near 0 unless a qdisc or NIC queue backs up. | same | `SK_MEMINFO_SNDBUF` |
//! | UNIX stream, seqpacket | the peer's `unix_inq_len()` (its `UNIX_DIAG_RQLEN` rqueue, peer found through `UNIX_DIAG_PEER`): the bytes written and not yet read. Falls back to the charged figure when the peer is not in the dump. | `UNIX_DIAG_RQLEN` wqueue = `unix_outq_len()` = `sk_wmem_alloc`: the skbs sit in the peer's receive queue but stay charged to the sender until read; `sock_alloc_send_pskb()` blocks on `sk_wmem_alloc >= sk_sndbuf`. (`SK_MEMINFO_WMEM_QUEUED` is always 0 here.) | `SK_MEMINFO_SNDBUF` |
//! | UNIX datagram | charged figure (the receiver's queue mixes senders) | as above; a sender also blocks when the receiver holds more than `net.unix.max_dgram_qlen` datagrams, which this does not see | `SK_MEMINFO_SNDBUF` |
//! | pipe | `FIONREAD` | `FIONREAD` | `F_GETPIPE_SZ` |
//!
//! TCP autotunes `sk_sndbuf` upwards (to `net.ipv4.tcp_wmem[2]`) as ACKs
//! come in, and ACKs free memory: a writer that got `EAGAIN` at 100% can be
//! sampled a moment later at ~92% (measured on loopback).
//!
//! # Limits
//! - A sample is a point in time: a buffer that fills and drains between
//!   two rounds is not seen (the drop counters see its overflow).
//! - A socket is looked for in the netns of its process. A socket created
//!   in another netns (then passed over SCM_RIGHTS, or made by a thread that
//!   had called `setns`) is not found and is left out of the result.

pub mod fdinfo;
mod netns;
mod pipe;
mod sock_diag;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

pub use self::netns::NetnsId;
use self::{
    pipe::PipeProbe,
    sock_diag::{DiagSocket, DumpFailure, Record, Table},
};
use crate::attribution::fds::{FdInfo, FdKind};

/// A cached netlink socket whose netns had no sampled fd for this many rounds
/// is closed. The socket pins its netns (a container that exited keeps its
/// namespace, loopback included, alive while the socket is open), so there
/// is no "netns is gone" event to wait for: idleness is the signal.
const NETNS_IDLE_ROUNDS: u64 = 10;

/// A socket inode that a dump of every table did not contain is looked for
/// again with a full dump after this many rounds (it may not have been
/// connected or bound yet, or is of a family not dumped here).
const RETRY_ABSENT_ROUNDS: u64 = 10;

/// Processes tried, per round, to enter a netns whose socket is not open.
const OPEN_ATTEMPTS: usize = 3;

/// What the sampler learnt about an inode is forgotten after it was not
/// asked for during this many rounds.
const FORGET_ROUNDS: u64 = 60;

/// What kind of kernel object a descriptor points to, as far as depth goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepthKind {
    Socket,
    /// An anonymous pipe (`pipe:[INODE]`); named FIFOs are not sampled.
    Pipe,
}

/// One descriptor to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DepthRequest {
    pub pid: u32,
    pub fd: i32,
    /// The inode in the `/proc/PID/fd/N` link, `socket:[INODE]` or `pipe:[INODE]`.
    pub inode: u64,
    pub kind: DepthKind,
    /// Whether to read what a TCP socket exchanged (see [`Exchange`]): asked
    /// for hot writers only, as it makes the netns's TCP dumps larger.
    pub exchange: bool,
}

impl DepthRequest {
    /// The request for `fd` of `pid` as the agent resolved it, if it is a
    /// socket or an anonymous pipe.
    pub fn for_fd(pid: u32, fd: i32, info: &FdInfo) -> Option<DepthRequest> {
        let kind = match info.kind {
            FdKind::Socket | FdKind::Tcp | FdKind::Udp | FdKind::Unix => DepthKind::Socket,
            FdKind::Pipe => DepthKind::Pipe,
            _ => return None,
        };
        Some(DepthRequest { pid, fd, inode: info.inode()?, kind, exchange: false })
    }

    /// The request, reading what the socket exchanged too when `exchange`.
    pub fn with_exchange(self, exchange: bool) -> DepthRequest {
        DepthRequest { exchange, ..self }
    }

    pub fn key(&self) -> DepthKey {
        DepthKey { pid: self.pid, fd: self.fd }
    }
}

/// The descriptor a depth belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DepthKey {
    pub pid: u32,
    pub fd: i32,
}

/// The protocol of a socket, as sock_diag reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketProtocol {
    Tcp,
    Udp,
    Unix,
}

impl SocketProtocol {
    /// The refined kind of a descriptor that was only known as a socket.
    pub fn fd_kind(self) -> FdKind {
        match self {
            SocketProtocol::Tcp => FdKind::Tcp,
            SocketProtocol::Udp => FdKind::Udp,
            SocketProtocol::Unix => FdKind::Unix,
        }
    }
}

/// How full one kernel queue is (see the module docs for each figure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Payload bytes written and not yet consumed (acknowledged for TCP,
    /// read for UNIX sockets and pipes).
    pub queued_bytes: u64,
    /// What the kernel counts against `capacity_bytes` (socket memory,
    /// including skb overhead; the bytes themselves for pipes).
    pub charged_bytes: u64,
    /// The limit: the send buffer (`sk_sndbuf`), or the pipe's size.
    pub capacity_bytes: u64,
    /// `None` for pipes.
    pub protocol: Option<SocketProtocol>,
    /// For a TCP socket asked with [`DepthRequest::exchange`]: what it
    /// carried each way, and its peer.
    pub exchange: Option<Exchange>,
}

/// What a TCP connection carried each way since it began, and who is at its
/// other end: the evidence that tells a stream (data goes out, nothing comes
/// back) from request/response (about one segment in for each one out).
/// The kernel counts these segments whatever batchwatch does, so reading
/// them costs the writer nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `tcpi_data_segs_in`, `tcpi_data_segs_out`: segments carrying data.
    pub data_segments_in: u32,
    pub data_segments_out: u32,
    /// The socket at the other end, when it lives in the same netns (a
    /// loopback or node-local connection): its inode.
    pub peer_inode: Option<u32>,
}

impl Depth {
    /// `charged_bytes` as a percentage of `capacity_bytes`. It reaches 100
    /// when the writer blocks, and can pass it by up to one write: the
    /// kernel checks the limit before each allocation, not after.
    pub fn percent(&self) -> f64 {
        if self.capacity_bytes == 0 { 0.0 } else { self.charged_bytes as f64 * 100.0 / self.capacity_bytes as f64 }
    }
}

/// Errors of a sampling round. None of them stops the round: the depths that
/// could be read are returned alongside.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// Setting the sampler up (the pipefs probe pipe, our own netns).
    #[error("setting up depth sampling: {0}")]
    Setup(#[source] io::Error),
    /// `/proc/PID/ns/net` could not be read for a reason other than the
    /// process having exited (which is not an error). At most one per round.
    #[error("reading the network namespace of pid {pid}: {source}")]
    Netns { pid: u32, source: io::Error },
    /// Entering a process's network namespace failed: opening its nsfs file
    /// or `setns(2)` in the helper thread.
    #[error("entering {netns} through pid {pid}: {source}")]
    Setns { netns: NetnsId, pid: u32, source: io::Error },
    /// Creating or binding the `NETLINK_SOCK_DIAG` socket failed.
    #[error("opening a sock_diag socket in {netns}: {source}")]
    Socket { netns: NetnsId, source: io::Error },
    /// Sending a dump request or receiving its answer failed (or timed out);
    /// the socket is closed and reopened next round.
    #[error("sock_diag dump of {table} sockets in {netns}: {source}")]
    Dump { netns: NetnsId, table: &'static str, source: io::Error },
    /// The kernel answered a dump with an error. `ENOENT`, `EOPNOTSUPP` and
    /// `EAFNOSUPPORT` mean the kernel lacks that diag module; that table is
    /// then no longer asked for, so this comes once.
    #[error("the kernel refused the sock_diag dump of {table} sockets in {netns}: {source}")]
    Kernel { netns: NetnsId, table: &'static str, source: io::Error },
    /// Some messages of a dump could not be decoded and were skipped.
    #[error("{count} undecodable sock_diag messages in the dump of {table} sockets in {netns}")]
    Decode { netns: NetnsId, table: &'static str, count: usize },
    /// Reading a pipe's fill failed, for a reason other than the fd being
    /// closed or the process gone. At most one per round (see
    /// [`RoundStats::pipe_failures`] for the count).
    #[error("reading the fill of pipe fd {fd} of pid {pid}: {source}")]
    Pipe { pid: u32, fd: i32, source: io::Error },
}

/// What one round did and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub requests: usize,
    /// Requests that got a depth.
    pub sampled: usize,
    /// Network namespaces with at least one socket asked for.
    pub namespaces: usize,
    /// sock_diag sockets opened this round (a new netns, or after a failure).
    pub namespaces_opened: usize,
    /// sock_diag dumps.
    pub dumps: usize,
    /// Sockets the dumps described (all of the netns, not only those asked for).
    pub sockets_seen: usize,
    /// Netlink bytes received.
    pub netlink_bytes: usize,
    /// Pipes opened.
    pub pipes: usize,
    /// Pipes whose fill could not be read.
    pub pipe_failures: usize,
    /// System calls the sampler made, not counting the 5 or so a helper
    /// thread's creation costs when a netns is entered.
    pub syscalls: usize,
    pub elapsed: Duration,
}

/// One round's result.
#[derive(Debug, Default)]
pub struct DepthRound {
    /// One entry per request that could be sampled; a request whose fd was
    /// closed, whose process exited, or whose socket was not found is absent.
    pub depths: Vec<(DepthKey, Depth)>,
    /// What went wrong, at most one error per cause and netns; log them,
    /// they do not invalidate `depths`.
    pub errors: Vec<DepthError>,
    pub stats: RoundStats,
}

/// What the sampler remembers about one socket inode.
struct Memo {
    /// The table the socket was found in, or `None`: not found in any.
    table: Option<Table>,
    /// The round it was last found, or last missed by a full dump.
    since: u64,
    last_wanted: u64,
}

/// One network namespace the sampler talks to.
struct Namespace {
    /// `None` until opened, and after a failed dump.
    socket: Option<DiagSocket>,
    last_used: u64,
    memo: HashMap<u32, Memo>,
}

/// The sockets of one netns asked for in a round.
#[derive(Default)]
struct Group {
    /// Processes seen in the netns, to enter it through.
    pids: Vec<u32>,
    /// By socket inode: the descriptors that point to it.
    wanted: HashMap<u32, Vec<DepthKey>>,
    /// Whether any of them asked for its exchange.
    exchange: bool,
}

impl Namespace {
    /// Opens the netns's sock_diag socket unless it is open, entering the
    /// netns through one of `pids`; whether it is open.
    fn open(&mut self, netns: NetnsId, pids: &[u32], round: &mut DepthRound) -> bool {
        if self.socket.is_some() {
            return true;
        }
        let mut failure = None;
        // Processes may have exited since they wrote: try a few.
        for &pid in pids.iter().take(OPEN_ATTEMPTS) {
            round.stats.syscalls += 9;
            match netns::open_diag_socket(pid, netns) {
                Ok(socket) => {
                    self.socket = Some(socket);
                    round.stats.namespaces_opened += 1;
                    return true;
                }
                // The process may have exited: try the next one.
                Err(error) => failure = Some(error),
            }
        }
        round.errors.extend(failure);
        false
    }

    /// Which tables to dump, as bits: those the `wanted` sockets were found
    /// in, or all of them (then `true`) when one is new, or due for another
    /// look.
    fn tables_to_dump(&mut self, wanted: &HashMap<u32, Vec<DepthKey>>, now: u64) -> (u8, bool) {
        let mut tables = 0u8;
        let mut full = false;
        for inode in wanted.keys() {
            match self.memo.get_mut(inode) {
                None => full = true,
                Some(memo) => {
                    memo.last_wanted = now;
                    match memo.table {
                        Some(table) => tables |= table.bit(),
                        None => full |= now - memo.since >= RETRY_ABSENT_ROUNDS,
                    }
                }
            }
        }
        if full {
            tables = Table::ALL.iter().fold(0, |bits, table| bits | table.bit());
        }
        (tables, full)
    }

    /// Records where each `wanted` socket was found (or that a full,
    /// complete dump found it nowhere), and adds the depths found to
    /// `round`.
    fn remember(
        &mut self,
        wanted: HashMap<u32, Vec<DepthKey>>,
        dumped: &Dumped,
        full: bool,
        now: u64,
        round: &mut DepthRound,
    ) {
        for (inode, keys) in wanted {
            match dumped.found.get(&inode) {
                Some((table, record)) => {
                    self.memo.insert(inode, Memo { table: Some(*table), since: now, last_wanted: now });
                    if let Some(depth) = depth_of(record, &dumped.unix_inq, &dumped.tcp_ends) {
                        round.depths.extend(keys.into_iter().map(|key| (key, depth)));
                    }
                }
                None if full && dumped.complete => {
                    self.memo.insert(inode, Memo { table: None, since: now, last_wanted: now });
                }
                // Known to be in no table, and not due for another look.
                None if self.memo.get(&inode).is_some_and(|memo| memo.table.is_none()) => {}
                // Not where it was last time (closed, or a partial answer):
                // look everywhere next round.
                None => {
                    self.memo.remove(&inode);
                }
            }
        }
    }
}

/// What the dumps of one netns found.
#[derive(Default)]
struct Dumped {
    /// The wanted sockets, by inode, with the table each was in.
    found: HashMap<u32, (Table, Record)>,
    /// UNIX sockets' own receive queues, by inode, to find what their peers sent.
    unix_inq: HashMap<u32, u32>,
    /// TCP sockets by (local, remote) address, to find a connection's
    /// other end: only in dumps that asked for exchanges.
    tcp_ends: HashMap<(SocketAddr, SocketAddr), u32>,
    /// Every table asked for answered in full.
    complete: bool,
    /// The socket failed: it must be opened afresh.
    socket_failed: bool,
    /// Tables the kernel cannot dump, as bits.
    unsupported: u8,
}

/// Dumps `tables` (bits) through `socket`, keeping the records of the
/// `wanted` sockets, with TCP exchanges when `exchange`; counts the cost and
/// the errors in `round`.
fn dump_tables(
    socket: &mut DiagSocket,
    netns: NetnsId,
    tables: u8,
    wanted: &HashMap<u32, Vec<DepthKey>>,
    exchange: bool,
    buf: &mut Vec<u8>,
    round: &mut DepthRound,
) -> Dumped {
    let mut dumped = Dumped { complete: true, ..Dumped::default() };
    for table in Table::ALL {
        if tables & table.bit() == 0 {
            continue;
        }
        round.stats.dumps += 1;
        let result = socket.dump(table, exchange, buf, |record| {
            match record {
                Record::Unix { inode, rqlen: Some((inq, _)), .. } => {
                    dumped.unix_inq.insert(inode, inq);
                }
                Record::Inet { inode, protocol: SocketProtocol::Tcp, local, remote, .. } if exchange => {
                    dumped.tcp_ends.insert((local, remote), inode);
                }
                _ => {}
            }
            if wanted.contains_key(&record.inode()) {
                dumped.found.insert(record.inode(), (table, record));
            }
        });
        let cost = match &result {
            Ok(cost) | Err((_, cost)) => *cost,
        };
        round.stats.syscalls += 1 + cost.recvs;
        round.stats.sockets_seen += cost.sockets;
        round.stats.netlink_bytes += cost.bytes;
        if cost.undecodable > 0 {
            round.errors.push(DepthError::Decode { netns, table: table.name(), count: cost.undecodable });
        }
        match result {
            Ok(_) => {}
            Err((DumpFailure::Io(source), _)) => {
                round.errors.push(DepthError::Dump { netns, table: table.name(), source });
                dumped.socket_failed = true;
                dumped.complete = false;
                break;
            }
            Err((DumpFailure::Kernel(source), _)) => {
                if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT)) {
                    dumped.unsupported |= table.bit();
                } else {
                    dumped.complete = false;
                }
                round.errors.push(DepthError::Kernel { netns, table: table.name(), source });
            }
        }
    }
    dumped
}

/// Samples buffer depth for a set of descriptors, once per round.
///
/// # Cost of a round
/// - one `statx` of `/proc/PID/ns/net` per distinct process with a socket;
/// - per netns with a socket asked for, one dump per socket table the asked
///   sockets are known to live in (the first time an inode is seen, all five:
///   TCP and UDP over IPv4 and IPv6, and UNIX): one `sendto`, then one
///   `recvfrom` per datagram of up to 32 KiB (164 bytes per TCP socket:
///   1,000 sockets came in 7), covering every socket of that table in the
///   netns, whether asked for or not; the kernel walks the node-wide hash
///   table of the protocol to find them;
/// - per pipe, 7 syscalls (see the `pipe` submodule), once per round
///   however many descriptors point to it;
/// - the first time a netns is seen (or after a failure): a helper thread and
///   about 9 syscalls, 5 in our own netns.
///
/// Measured on a 2-core VM (Linux 6.18, release build, tests `depth_cost` and
/// `pipe_cost`): 1,000 TCP sockets asked for, of a process in another netns
/// holding 1,001: a steady round takes ~1.15 ms and 9 syscalls (`statx`,
/// `sendto`, 7 `recvfrom`, 164 KB of netlink messages), most of it in the
/// kernel; the first round, which enters the netns and dumps all five
/// tables, ~2.2 ms and 26 syscalls. A pipe costs ~8 µs (7 syscalls).
pub struct DepthSampler {
    namespaces: HashMap<NetnsId, Namespace>,
    pipes: PipeProbe,
    /// Tables the kernel cannot dump (a missing diag module), as bits.
    unsupported: u8,
    round: u64,
    buf: Vec<u8>,
}

impl DepthSampler {
    /// Opens nothing yet but a throwaway pipe, to learn pipefs's device.
    pub fn new() -> Result<DepthSampler, DepthError> {
        Ok(DepthSampler {
            namespaces: HashMap::new(),
            pipes: PipeProbe::new().map_err(DepthError::Setup)?,
            unsupported: 0,
            round: 0,
            buf: Vec::new(),
        })
    }

    /// Network namespaces with an open sock_diag socket.
    pub fn open_namespaces(&self) -> usize {
        self.namespaces.values().filter(|ns| ns.socket.is_some()).count()
    }

    /// Samples every request: one round.
    pub fn sample(&mut self, requests: &[DepthRequest]) -> DepthRound {
        let start = Instant::now();
        self.round += 1;
        let mut round = DepthRound::default();
        round.stats.requests = requests.len();

        let mut netns_of: HashMap<u32, Option<NetnsId>> = HashMap::new();
        let mut groups: BTreeMap<NetnsId, Group> = BTreeMap::new();
        let mut netns_error = false;
        // By inode: the depth of each pipe sampled this round (`None`: not
        // yet read through a live descriptor).
        let mut pipes: HashMap<u64, Option<Depth>> = HashMap::new();
        for request in requests {
            match request.kind {
                DepthKind::Pipe => {
                    // A pipe's fill is the pipe's, whichever descriptor
                    // points to it: processes that share one (a container's
                    // stdout, a supervisor's workers) cost one sample.
                    let sampled = pipes.entry(request.inode).or_default();
                    if sampled.is_none() {
                        *sampled = self.sample_pipe(request, &mut round);
                    }
                    round.depths.extend(sampled.map(|depth| (request.key(), depth)));
                }
                DepthKind::Socket => {
                    let netns = *netns_of.entry(request.pid).or_insert_with(|| {
                        round.stats.syscalls += 1;
                        match netns::of_process(request.pid) {
                            Ok(netns) => Some(netns),
                            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                            Err(source) => {
                                if !std::mem::replace(&mut netns_error, true) {
                                    round.errors.push(DepthError::Netns { pid: request.pid, source });
                                }
                                None
                            }
                        }
                    });
                    // Socket inodes come from get_next_ino(), 32 bits.
                    let (Some(netns), Ok(inode)) = (netns, u32::try_from(request.inode)) else { continue };
                    let group = groups.entry(netns).or_default();
                    if !group.pids.contains(&request.pid) {
                        group.pids.push(request.pid);
                    }
                    group.wanted.entry(inode).or_default().push(request.key());
                    group.exchange |= request.exchange;
                }
            }
        }
        round.stats.namespaces = groups.len();
        for (netns, group) in groups {
            self.sample_namespace(netns, group, &mut round);
        }

        let now = self.round;
        self.namespaces.retain(|_, ns| now - ns.last_used <= NETNS_IDLE_ROUNDS);
        round.stats.sampled = round.depths.len();
        round.stats.elapsed = start.elapsed();
        round
    }

    /// The fill of the pipe of `request`, if its descriptor still names it.
    fn sample_pipe(&mut self, request: &DepthRequest, round: &mut DepthRound) -> Option<Depth> {
        round.stats.pipes += 1;
        round.stats.syscalls += 7;
        match self.pipes.sample(request.pid, request.fd, request.inode) {
            Ok(depth) => depth,
            Err(source) => {
                round.stats.pipe_failures += 1;
                if round.stats.pipe_failures == 1 {
                    round.errors.push(DepthError::Pipe { pid: request.pid, fd: request.fd, source });
                }
                None
            }
        }
    }

    /// Samples the sockets of one netns: opens its sock_diag socket if
    /// need be, dumps the tables the sockets are in, and remembers where
    /// each was found.
    fn sample_namespace(&mut self, netns: NetnsId, group: Group, round: &mut DepthRound) {
        let now = self.round;
        let ns = self.namespaces.entry(netns).or_insert_with(|| Namespace {
            socket: None,
            last_used: now,
            memo: HashMap::new(),
        });
        ns.last_used = now;
        if !ns.open(netns, &group.pids, round) {
            return;
        }
        let (tables, full) = ns.tables_to_dump(&group.wanted, now);
        let socket = ns.socket.as_mut().expect("opened above");
        let dumped =
            dump_tables(socket, netns, tables & !self.unsupported, &group.wanted, group.exchange, &mut self.buf, round);
        self.unsupported |= dumped.unsupported;
        if dumped.socket_failed {
            // It may still hold part of the answer: start afresh next round.
            ns.socket = None;
        }
        ns.remember(group.wanted, &dumped, full, now, round);
        ns.memo.retain(|_, memo| now - memo.last_wanted <= FORGET_ROUNDS);
    }
}

/// The depth of a socket from its dump record (see the module docs), and
/// for TCP its exchange when the dump carried one; `tcp_ends` finds its peer.
fn depth_of(
    record: &Record,
    unix_inq: &HashMap<u32, u32>,
    tcp_ends: &HashMap<(SocketAddr, SocketAddr), u32>,
) -> Option<Depth> {
    match *record {
        Record::Inet {
            protocol: SocketProtocol::Tcp, wqueue, mem: Some(mem), local, remote, data_segments, ..
        } => Some(Depth {
            queued_bytes: wqueue.into(),
            charged_bytes: mem.wmem_queued.into(),
            capacity_bytes: mem.sndbuf.into(),
            protocol: Some(SocketProtocol::Tcp),
            exchange: data_segments.map(|(data_segments_in, data_segments_out)| Exchange {
                local,
                remote,
                data_segments_in,
                data_segments_out,
                peer_inode: tcp_ends.get(&(remote, local)).copied(),
            }),
        }),
        Record::Inet { protocol, mem: Some(mem), .. } => Some(Depth {
            queued_bytes: mem.wmem_alloc.into(),
            charged_bytes: mem.wmem_alloc.into(),
            capacity_bytes: mem.sndbuf.into(),
            protocol: Some(protocol),
            exchange: None,
        }),
        Record::Unix { sock_type, rqlen: Some((_, outq)), sndbuf: Some(sndbuf), peer, .. } => {
            let connected_stream = matches!(i32::from(sock_type), libc::SOCK_STREAM | libc::SOCK_SEQPACKET);
            let peer_inq = peer.and_then(|peer| unix_inq.get(&peer)).filter(|_| connected_stream);
            Some(Depth {
                queued_bytes: peer_inq.copied().unwrap_or(outq).into(),
                charged_bytes: outq.into(),
                capacity_bytes: sndbuf.into(),
                protocol: Some(SocketProtocol::Unix),
                exchange: None,
            })
        }
        _ => None,
    }
}
