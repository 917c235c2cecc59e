//! One sock_diag dump (`SOCK_DIAG_BY_FAMILY` with `NLM_F_DUMP` on a
//! `NETLINK_SOCK_DIAG` socket) and the figures it gives per socket.
//!
//! Kernel side (checked against Linux 6.18): `inet_diag_dump_icsk()` for TCP
//! and `udp_dump()` for UDP walk the protocol's hash tables, which are shared
//! by every network namespace and filtered by namespace, so one dump costs in
//! proportion to the node's sockets of that protocol; `unix_diag_dump()` walks
//! the UNIX socket table the same way. Only the netns of the netlink socket
//! is reported.

use std::{io, net::SocketAddr, os::fd::AsRawFd as _, time::Duration};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, SockDiagMessage, TCP_CLOSE, TCP_CLOSE_WAIT,
    TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_SYN_SENT,
    inet::{self, ExtensionFlags, InetRequest, InetResponse, SocketId},
    unix::{self, ShowFlags, UnixRequest, UnixResponse},
};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

use super::SocketProtocol;

/// How long a dump may go silent before it is abandoned.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// Receive buffer: the kernel fills at most 32 KiB per datagram of a dump.
pub(super) const RECV_BUFFER: usize = 64 * 1024;

/// One socket table the kernel can dump: a (family, protocol) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Table {
    Tcp4,
    Tcp6,
    Udp4,
    Udp6,
    Unix,
}

impl Table {
    pub(super) const ALL: [Table; 5] = [Table::Tcp4, Table::Tcp6, Table::Udp4, Table::Udp6, Table::Unix];

    pub(super) fn name(self) -> &'static str {
        match self {
            Table::Tcp4 => "tcp/ipv4",
            Table::Tcp6 => "tcp/ipv6",
            Table::Udp4 => "udp/ipv4",
            Table::Udp6 => "udp/ipv6",
            Table::Unix => "unix",
        }
    }

    /// The protocol of the sockets in this table.
    pub(super) fn protocol(self) -> SocketProtocol {
        match self {
            Table::Tcp4 | Table::Tcp6 => SocketProtocol::Tcp,
            Table::Udp4 | Table::Udp6 => SocketProtocol::Udp,
            Table::Unix => SocketProtocol::Unix,
        }
    }

    pub(super) fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The dump request; with `exchange`, TCP dumps carry `struct tcp_info`
    /// too (for its data segment counters).
    fn request(self, exchange: bool) -> SockDiagMessage {
        let inet = |family, protocol, states, socket_id| {
            // The sk_meminfo array, and INET_DIAG_INFO (struct tcp_info,
            // about 250 bytes, which triples the size of every message) only
            // when a hot TCP writer of the netns needs its exchange judged.
            let extensions = if exchange && protocol == IPPROTO_TCP {
                ExtensionFlags::SKMEMINFO | ExtensionFlags::INFO
            } else {
                ExtensionFlags::SKMEMINFO
            };
            SockDiagMessage::InetRequest(InetRequest { family, protocol, extensions, states, socket_id })
        };
        match self {
            Table::Tcp4 => inet(AF_INET, IPPROTO_TCP, tcp_states(), SocketId::new_v4()),
            Table::Tcp6 => inet(AF_INET6, IPPROTO_TCP, tcp_states(), SocketId::new_v6()),
            Table::Udp4 => inet(AF_INET, IPPROTO_UDP, inet::StateFlags::all(), SocketId::new_v4()),
            Table::Udp6 => inet(AF_INET6, IPPROTO_UDP, inet::StateFlags::all(), SocketId::new_v6()),
            Table::Unix => SockDiagMessage::UnixRequest(UnixRequest {
                // Connected (stream, seqpacket, connected datagram) and
                // unconnected (datagram senders) sockets; not listeners.
                state_flags: unix::StateFlags::from_bits_retain((1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE)),
                inode: 0,
                show_flags: ShowFlags::PEER | ShowFlags::RQLEN | ShowFlags::MEMINFO,
                cookie: [0; 8],
            }),
        }
    }
}

/// The TCP states whose socket has an owner that can write: not listeners,
/// and not the mini sockets of SYN_RECV and TIME_WAIT, which have no inode.
/// Skipping TIME_WAIT keeps dumps small on busy servers.
fn tcp_states() -> inet::StateFlags {
    let states = [
        TCP_ESTABLISHED,
        TCP_SYN_SENT,
        TCP_FIN_WAIT1,
        TCP_FIN_WAIT2,
        TCP_CLOSE,
        TCP_CLOSE_WAIT,
        TCP_LAST_ACK,
        TCP_CLOSING,
    ];
    inet::StateFlags::from_bits_retain(states.iter().fold(0, |bits, &state| bits | (1 << state)))
}

/// `SK_MEMINFO_*` from `sk_get_meminfo()` (include/uapi/linux/sock_diag.h).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SkMemInfo {
    /// `SK_MEMINFO_WMEM_ALLOC`: `sk_wmem_alloc`, the truesize of skbs this
    /// socket allocated for sending and that are not freed yet.
    pub(super) wmem_alloc: u32,
    /// `SK_MEMINFO_SNDBUF`: `sk_sndbuf`, the limit (`SO_SNDBUF`, doubled).
    pub(super) sndbuf: u32,
    /// `SK_MEMINFO_WMEM_QUEUED`: `sk_wmem_queued`, the truesize of what TCP
    /// holds on its write and retransmit queues.
    pub(super) wmem_queued: u32,
}

/// What a dump says about one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Inet {
        inode: u32,
        protocol: SocketProtocol,
        /// `idiag_wqueue`: for TCP `write_seq - snd_una` (tcp_diag_get_info),
        /// for UDP `sk_wmem_alloc_get()` (udp_diag_get_info).
        wqueue: u32,
        mem: Option<SkMemInfo>,
        /// The socket's own address and its peer's.
        local: SocketAddr,
        remote: SocketAddr,
        /// `tcpi_data_segs_in` and `tcpi_data_segs_out` from `struct
        /// tcp_info`: segments carrying data received and sent, counted by
        /// the kernel on every segment anyway. Only in dumps that asked.
        data_segments: Option<(u32, u32)>,
    },
    Unix {
        inode: u32,
        /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
        sock_type: u8,
        /// `UNIX_DIAG_RQLEN` for a socket that is not listening:
        /// (`unix_inq_len()`, `unix_outq_len()`), the bytes waiting in its
        /// own receive queue and the `sk_wmem_alloc` of what it sent.
        rqlen: Option<(u32, u32)>,
        /// `SK_MEMINFO_SNDBUF` from `UNIX_DIAG_MEMINFO`.
        sndbuf: Option<u32>,
        /// The inode of the connected peer (`UNIX_DIAG_PEER`).
        peer: Option<u32>,
    },
}

impl Record {
    pub(super) fn inode(&self) -> u32 {
        match self {
            Record::Inet { inode, .. } | Record::Unix { inode, .. } => *inode,
        }
    }

    fn of_inet(response: &InetResponse, protocol: SocketProtocol) -> Record {
        let mem = response.nlas.iter().find_map(|nla| match nla {
            inet::nlas::Nla::MemInfo(mem) => Some(SkMemInfo {
                wmem_alloc: mem.bottom_send_queues,
                sndbuf: mem.send_queue_max,
                wmem_queued: mem.send_queue,
            }),
            _ => None,
        });
        let data_segments = response.nlas.iter().find_map(|nla| match nla {
            inet::nlas::Nla::TcpInfo(info) => Some((info.data_segs_in, info.data_segs_out)),
            _ => None,
        });
        let id = &response.header.socket_id;
        Record::Inet {
            inode: response.header.inode,
            protocol,
            wqueue: response.header.send_queue,
            mem,
            local: SocketAddr::new(id.source_address, id.source_port),
            remote: SocketAddr::new(id.destination_address, id.destination_port),
            data_segments,
        }
    }

    fn of_unix(response: &UnixResponse) -> Record {
        let (mut rqlen, mut sndbuf, mut peer) = (None, None, None);
        for nla in &response.nlas {
            match nla {
                unix::nlas::Nla::ReceiveQueueLength(inq, outq) => rqlen = Some((*inq, *outq)),
                // The crate names the SK_MEMINFO fields of UNIX_DIAG_MEMINFO
                // after a guess: its `max_datagram_size` is slot 3,
                // SK_MEMINFO_SNDBUF (`sk_sndbuf`). Its `alloc` is slot 5,
                // SK_MEMINFO_WMEM_QUEUED, always 0 for UNIX sockets: the
                // figure that matters, SK_MEMINFO_WMEM_ALLOC, is dropped by
                // the crate and read from UNIX_DIAG_RQLEN instead.
                unix::nlas::Nla::MemInfo(mem) => sndbuf = Some(mem.max_datagram_size),
                unix::nlas::Nla::Peer(inode) => peer = Some(*inode),
                _ => {}
            }
        }
        Record::Unix { inode: response.header.inode, sock_type: response.header.kind, rqlen, sndbuf, peer }
    }
}

/// How a dump failed.
#[derive(Debug)]
pub(super) enum DumpFailure {
    /// Sending, receiving or a timeout; the socket may hold a partial answer
    /// and must not be reused.
    Io(io::Error),
    /// The kernel refused the request (NLMSG_ERROR, or an error in NLMSG_DONE).
    Kernel(io::Error),
}

/// What a dump cost and found.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DumpCost {
    /// `recv` calls, the last one included.
    pub(super) recvs: usize,
    /// Bytes received.
    pub(super) bytes: usize,
    /// Socket messages received.
    pub(super) sockets: usize,
    /// Messages that could not be decoded, and were skipped.
    pub(super) undecodable: usize,
}

/// A `NETLINK_SOCK_DIAG` socket, bound in the netns it was created in.
pub(super) struct DiagSocket {
    socket: Socket,
    seq: u32,
}

impl DiagSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub(super) fn open() -> io::Result<DiagSocket> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        let timeout = libc::timeval { tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        // SAFETY: a valid fd and a timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DiagSocket { socket, seq: 0 })
    }

    /// Dumps `table` and hands every socket to `each`; one `send`, then one
    /// `recv` per datagram (up to 32 KiB, ~300 TCP sockets) until NLMSG_DONE.
    pub(super) fn dump(
        &mut self,
        table: Table,
        exchange: bool,
        buf: &mut Vec<u8>,
        mut each: impl FnMut(Record),
    ) -> Result<DumpCost, (DumpFailure, DumpCost)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = seq;
        let mut request = NetlinkMessage::new(header, table.request(exchange).into());
        request.finalize();
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        let mut cost = DumpCost::default();
        if let Err(error) = self.socket.send(&out, 0) {
            return Err((DumpFailure::Io(error), cost));
        }
        buf.resize(RECV_BUFFER, 0);
        loop {
            let len = match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(len) => len,
                Err(error) => return Err((DumpFailure::Io(error), cost)),
            };
            cost.recvs += 1;
            cost.bytes += len;
            if len > buf.len() {
                let truncated = io::Error::other(format!("sock_diag datagram of {len} bytes truncated"));
                return Err((DumpFailure::Io(truncated), cost));
            }
            if len == 0 {
                return Err((DumpFailure::Io(io::ErrorKind::UnexpectedEof.into()), cost));
            }
            let mut offset = 0;
            while offset + 16 <= len {
                let bytes = &buf[offset..len];
                // nlmsg_len and nlmsg_seq, read raw so that a message the
                // crate cannot decode can still be stepped over.
                let length = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
                let message_seq = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
                if length < 16 || length > bytes.len() {
                    let bad = io::Error::other(format!("sock_diag message length {length} out of bounds"));
                    return Err((DumpFailure::Io(bad), cost));
                }
                // NLMSG_ALIGN: messages start on 4-byte boundaries.
                offset += (length + 3) & !3;
                if message_seq != seq {
                    // Left over from an earlier, abandoned request.
                    continue;
                }
                let message_type = u16::from_ne_bytes(bytes[4..6].try_into().expect("2 bytes"));
                // NLMSG_ERROR and NLMSG_DONE both carry an errno, negated.
                let code = || bytes.get(16..20).map_or(0, |code| i32::from_ne_bytes(code.try_into().expect("4 bytes")));
                match message_type {
                    NLMSG_DONE if code() < 0 => {
                        return Err((DumpFailure::Kernel(io::Error::from_raw_os_error(-code())), cost));
                    }
                    NLMSG_DONE => return Ok(cost),
                    NLMSG_ERROR if code() < 0 => {
                        return Err((DumpFailure::Kernel(io::Error::from_raw_os_error(-code())), cost));
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        cost.sockets += 1;
                        match NetlinkMessage::<SockDiagMessage>::deserialize(&bytes[..length]).map(|m| m.payload) {
                            Ok(NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response))) => {
                                each(Record::of_inet(&response, table.protocol()));
                            }
                            Ok(NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(response))) => {
                                each(Record::of_unix(&response));
                            }
                            _ => cost.undecodable += 1,
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
