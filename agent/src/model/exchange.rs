//! Streams against request/response, per descriptor: does the writer send
//! without waiting, or answer a peer one message at a time?
//!
//! Only a stream can batch its writes; a server answering a client that
//! sends one request at a time writes once per request whatever it does, and
//! the fix (pipelining) lies with the client. The evidence for TCP is the
//! kernel's own count of data segments in and out of the connection
//! (`tcpi_data_segs_in`/`_out`, read by the depth sampler's sock_diag dump):
//! a descriptor that receives at least one data segment for every two it
//! sends is request/response, one that receives fewer is a stream. Pipes,
//! files and character devices are one-way, so streams by nature. UNIX and
//! UDP sockets carry no such counters: their pattern stays unknown, and
//! they are judged as streams (see docs/report.md).

use serde::Serialize;

use crate::{attribution::fds::FdKind, depth::Exchange};

/// How a descriptor's writes relate to what comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Writes go out without waiting for anything to come back.
    Stream,
    /// About one message in for each one out: a round trip per write.
    RequestResponse,
}

impl Pattern {
    /// The pattern a kind of descriptor has by nature, if any.
    pub fn of_kind(kind: FdKind) -> Option<Pattern> {
        match kind {
            FdKind::File | FdKind::Pipe | FdKind::CharDevice | FdKind::Tty => Some(Pattern::Stream),
            _ => None,
        }
    }

    /// The pattern of an interval that carried `data_in` and `data_out`
    /// data segments; `None` when nothing went out.
    pub fn of_segments(data_in: u64, data_out: u64) -> Option<Pattern> {
        match data_out {
            0 => None,
            _ if data_in * 2 >= data_out => Some(Pattern::RequestResponse),
            _ => Some(Pattern::Stream),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Stream => "stream",
            Pattern::RequestResponse => "request_response",
        }
    }
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Peer {
    /// A process of this node, found by its socket.
    Local { pid: u32, comm: String, fd: i32 },
    /// Elsewhere, or in another network namespace: its address.
    Remote { address: String },
}

impl Peer {
    /// The peer in words: "pid 4242 (redis-benchmark) fd 5".
    pub fn describe(&self) -> String {
        match self {
            Peer::Local { pid, comm, fd } => format!("pid {pid} ({comm}) fd {fd}"),
            Peer::Remote { address } => address.clone(),
        }
    }
}

/// What a TCP descriptor exchanged, interval by interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The exchange read last, for the next reading's deltas.
    last: Option<Exchange>,
    /// Data segments in and out read since the last interval closed.
    pending: (u64, u64),
    /// Data segments in and out in the interval that closed last.
    pub data_in: u64,
    pub data_out: u64,
    /// The pattern seen last; kept through intervals that sent nothing.
    pub pattern: Option<Pattern>,
    /// The inode of the socket at the other end, when it is on this node.
    pub peer_inode: Option<u32>,
    pub peer: Option<Peer>,
}

impl Conversation {
    /// Adds what the connection carried since the last reading.
    pub fn observe(&mut self, exchange: Exchange) {
        let same = self.last.is_some_and(|last| (last.local, last.remote) == (exchange.local, exchange.remote));
        if let Some(last) = self.last.filter(|_| same) {
            // The kernel's counters are u32 and wrap.
            let data_in = exchange.data_segments_in.wrapping_sub(last.data_segments_in);
            let data_out = exchange.data_segments_out.wrapping_sub(last.data_segments_out);
            self.pending.0 += u64::from(data_in);
            self.pending.1 += u64::from(data_out);
        }
        if !same {
            self.peer = None;
        }
        self.peer_inode = exchange.peer_inode;
        if self.peer.is_none() {
            self.peer = Some(Peer::Remote { address: exchange.remote.to_string() });
        }
        self.last = Some(exchange);
    }

    /// Ends an interval: its segments, and the pattern they show.
    pub fn close_interval(&mut self) {
        (self.data_in, self.data_out) = std::mem::take(&mut self.pending);
        if let Some(pattern) = Pattern::of_segments(self.data_in, self.data_out) {
            self.pattern = Some(pattern);
        }
    }

    /// Both ends in words: "127.0.0.1:6379 ↔ 127.0.0.1:50122".
    pub fn ends(&self) -> Option<String> {
        self.last.map(|e| format!("{} ↔ {}", e.local, e.remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(data_in: u32, data_out: u32) -> Exchange {
        Exchange {
            local: "127.0.0.1:6379".parse().unwrap(),
            remote: "127.0.0.1:50122".parse().unwrap(),
            data_segments_in: data_in,
            data_segments_out: data_out,
            peer_inode: None,
        }
    }

    #[test]
    fn a_segment_in_for_every_two_out_is_request_response() {
        assert_eq!(Pattern::of_segments(9800, 9800), Some(Pattern::RequestResponse));
        assert_eq!(Pattern::of_segments(50, 100), Some(Pattern::RequestResponse));
        assert_eq!(Pattern::of_segments(49, 100), Some(Pattern::Stream));
        assert_eq!(Pattern::of_segments(0, 5000), Some(Pattern::Stream));
        assert_eq!(Pattern::of_segments(10, 0), None);
    }

    #[test]
    fn intervals_count_the_segments_between_readings() {
        let mut c = Conversation::default();
        c.observe(exchange(u32::MAX - 5, 100));
        c.close_interval();
        // The first reading only sets the base.
        assert_eq!((c.data_in, c.data_out, c.pattern), (0, 0, None));
        c.observe(exchange(4, 110));
        c.close_interval();
        assert_eq!((c.data_in, c.data_out, c.pattern), (10, 10, Some(Pattern::RequestResponse)));
        // Nothing went out: the pattern holds.
        c.close_interval();
        assert_eq!((c.data_in, c.data_out, c.pattern), (0, 0, Some(Pattern::RequestResponse)));
        assert_eq!(c.ends().as_deref(), Some("127.0.0.1:6379 ↔ 127.0.0.1:50122"));
        assert_eq!(c.peer, Some(Peer::Remote { address: "127.0.0.1:50122".into() }));
    }
}
