//! Depth from real kernel queues: each test fills a queue it owns by a known
//! amount and checks the sampler against that amount and against what the
//! kernel says through the descriptor itself (`SIOCOUTQ`, `FIONREAD`,
//! `SO_SNDBUF`, `F_GETPIPE_SZ`). They need root (sock_diag works for anyone,
//! but reopening pipes and entering namespaces does not) and skip otherwise.
//! The netns tests run this test binary again, inside a new netns made by
//! `unshare --net`, as the process holding the sockets (`netns_child`).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::*;
use crate::attribution::fds::FdResolver;

fn is_root() -> bool {
    // SAFETY: no arguments, no failure.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// The request for our own `fd`, resolved the way the agent resolves it.
fn request(fd: RawFd) -> DepthRequest {
    let pid = std::process::id();
    let info = FdResolver::default().resolve(pid, fd).expect("our own fd").clone();
    DepthRequest::for_fd(pid, fd, &info).expect("a socket or a pipe")
}

fn sample_one(sampler: &mut DepthSampler, request: DepthRequest) -> Option<Depth> {
    let round = sampler.sample(&[request]);
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    round.depths.into_iter().find(|(key, _)| *key == request.key()).map(|(_, depth)| depth)
}

fn ioctl_int(fd: RawFd, request: libc::Ioctl) -> u64 {
    let mut value: libc::c_int = 0;
    // SAFETY: these ioctls write one int.
    assert_eq!(unsafe { libc::ioctl(fd, request, &raw mut value) }, 0, "{}", std::io::Error::last_os_error());
    value as u64
}

/// `SIOCOUTQ` (same number as `TIOCOUTQ`): TCP `write_seq - snd_una`,
/// UDP and UNIX `sk_wmem_alloc`.
fn outq(fd: RawFd) -> u64 {
    ioctl_int(fd, libc::TIOCOUTQ)
}

fn inq(fd: RawFd) -> u64 {
    ioctl_int(fd, libc::FIONREAD)
}

fn sndbuf(fd: RawFd) -> u64 {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int and its size.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&raw mut value).cast(), &mut len) };
    assert_eq!(rc, 0);
    value as u64
}

/// Writes `chunk` bytes at a time to non-blocking `fd` until `EAGAIN`;
/// returns the bytes accepted and the writes made.
fn fill(fd: RawFd, chunk: usize) -> (u64, u64) {
    let data = vec![0x5a_u8; chunk];
    let (mut total, mut writes) = (0, 0);
    loop {
        // SAFETY: a buffer of `chunk` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), chunk) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
            return (total, writes);
        }
        total += n as u64;
        writes += 1;
    }
}

fn socketpair(kind: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: two ints for the two descriptors.
    let rc = unsafe {
        libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(rc, 0);
    // SAFETY: both were just created and are ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn percent_is_charged_over_capacity() {
    let depth = |charged, capacity| Depth {
        queued_bytes: 1,
        charged_bytes: charged,
        capacity_bytes: capacity,
        protocol: None,
        exchange: None,
    };
    assert_eq!(depth(0, 65536).percent(), 0.0);
    assert_eq!(depth(16384, 65536).percent(), 25.0);
    assert_eq!(depth(212992, 212992).percent(), 100.0);
    assert_eq!(depth(10, 0).percent(), 0.0);
}

#[test]
fn figures_per_protocol() {
    let mem = |wmem_alloc, wmem_queued| Some(sock_diag::SkMemInfo { wmem_alloc, sndbuf: 1000, wmem_queued });
    let (local, remote) = ("127.0.0.1:6379".parse().unwrap(), "127.0.0.1:50122".parse().unwrap());
    let inet =
        |protocol, wqueue, mem| Record::Inet { inode: 1, protocol, wqueue, mem, local, remote, data_segments: None };
    let none = HashMap::new();
    let depth_of = |record: &Record, unix_inq: &HashMap<u32, u32>| depth_of(record, unix_inq, &HashMap::new());
    // TCP: payload not yet acked, against the memory of the write queue.
    let tcp = depth_of(&inet(SocketProtocol::Tcp, 300, mem(50, 600)), &none).unwrap();
    assert_eq!((tcp.queued_bytes, tcp.charged_bytes, tcp.capacity_bytes), (300, 600, 1000));
    // UDP: only sk_wmem_alloc exists.
    let udp = depth_of(&inet(SocketProtocol::Udp, 70, mem(70, 0)), &none).unwrap();
    assert_eq!((udp.queued_bytes, udp.charged_bytes, udp.protocol), (70, 70, Some(SocketProtocol::Udp)));
    assert_eq!(depth_of(&inet(SocketProtocol::Tcp, 1, None), &none), None);
    // UNIX stream: the payload is what the peer has not read.
    let unix = |sock_type, peer| Record::Unix { inode: 1, sock_type, rqlen: Some((0, 900)), sndbuf: Some(1000), peer };
    let peer_inq = HashMap::from([(2, 40)]);
    let stream = depth_of(&unix(libc::SOCK_STREAM as u8, Some(2)), &peer_inq).unwrap();
    assert_eq!((stream.queued_bytes, stream.charged_bytes, stream.capacity_bytes), (40, 900, 1000));
    let unknown_peer = depth_of(&unix(libc::SOCK_STREAM as u8, Some(3)), &peer_inq).unwrap();
    assert_eq!(unknown_peer.queued_bytes, 900);
    let dgram = depth_of(&unix(libc::SOCK_DGRAM as u8, Some(2)), &peer_inq).unwrap();
    assert_eq!(dgram.queued_bytes, 900);
}

#[test]
fn a_tcp_exchange_names_its_peer_when_the_other_end_is_in_the_dump() {
    let (local, remote) = ("127.0.0.1:6379".parse().unwrap(), "127.0.0.1:50122".parse().unwrap());
    let mem = Some(sock_diag::SkMemInfo { wmem_alloc: 0, sndbuf: 1000, wmem_queued: 0 });
    let record = Record::Inet {
        inode: 1,
        protocol: SocketProtocol::Tcp,
        wqueue: 0,
        mem,
        local,
        remote,
        data_segments: Some((980, 990)),
    };
    let ends = HashMap::from([((remote, local), 7), ((local, remote), 1)]);
    let exchange = depth_of(&record, &HashMap::new(), &ends).unwrap().exchange.unwrap();
    assert_eq!(
        exchange,
        Exchange { local, remote, data_segments_in: 980, data_segments_out: 990, peer_inode: Some(7) }
    );
    let alone = depth_of(&record, &HashMap::new(), &HashMap::new()).unwrap().exchange.unwrap();
    assert_eq!(alone.peer_inode, None);
}

/// A loopback request/response: 50 requests of 10 B, each answered with 5 B
/// before the next; the server's socket, asked with its exchange, shows at
/// least 50 data segments each way and its peer, the client's socket.
#[test]
fn tcp_exchange_of_a_loopback_round_trip() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    for socket in [&client, &server] {
        socket.set_nodelay(true).unwrap();
    }
    for _ in 0..50 {
        client.write_all(b"0123456789").unwrap();
        let mut request = [0; 10];
        server.read_exact(&mut request).unwrap();
        server.write_all(b"reply").unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).unwrap();
    }
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(server.as_raw_fd()).with_exchange(true)).expect("sampled");
    let exchange = depth.exchange.expect("the exchange, asked for");
    assert_eq!((exchange.data_segments_in, exchange.data_segments_out), (50, 50));
    assert_eq!(exchange.local, server.local_addr().unwrap());
    assert_eq!(exchange.remote, client.local_addr().unwrap());
    assert_eq!(exchange.peer_inode.map(u64::from), Some(request(client.as_raw_fd()).inode));
    // Not asked for: no exchange, and the dump stays small.
    let plain = sample_one(&mut DepthSampler::new().unwrap(), request(server.as_raw_fd())).expect("sampled");
    assert_eq!(plain.exchange, None);
}

/// A UNIX stream socketpair filled with 4 KiB writes until `EAGAIN`: the
/// payload is every byte written (the peer reads nothing), and the charged
/// memory is at the send buffer, past it by less than one write's skb.
#[test]
fn unix_stream_full() {
    if !is_root() {
        return;
    }
    let (writer, reader) = socketpair(libc::SOCK_STREAM);
    let (written, _) = fill(writer.as_raw_fd(), 4096);
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).expect("the socket is in the dump");
    println!("unix stream, 4 KiB writes: written {written}, depth {depth:?}, {:.1}%", depth.percent());
    assert_eq!(depth.protocol, Some(SocketProtocol::Unix));
    assert_eq!(depth.queued_bytes, written);
    assert_eq!(inq(reader.as_raw_fd()), written);
    assert_eq!(depth.capacity_bytes, sndbuf(writer.as_raw_fd()));
    assert_eq!(depth.charged_bytes, outq(writer.as_raw_fd()));
    assert!(depth.charged_bytes >= depth.capacity_bytes, "the writer blocked, so the buffer is full");
    assert!(depth.charged_bytes < depth.capacity_bytes + 2 * 4096 + 1024, "past it by at most one write");
    assert!(depth.percent() >= 100.0 && depth.percent() < 105.0);

    // Half read: the payload and the charge drop together.
    let mut half = vec![0u8; (written / 2) as usize];
    let n = std::fs::File::from(reader.try_clone().unwrap()).read(&mut half).unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    assert_eq!(depth.queued_bytes, written - n as u64);
    assert_eq!(depth.charged_bytes, outq(writer.as_raw_fd()));
    assert!(depth.percent() < 60.0, "{}", depth.percent());
}

/// One-byte writes fill a UNIX send buffer with overhead: the writer blocks
/// with a few hundred bytes of payload, and the percentage says 100.
#[test]
fn unix_stream_small_writes() {
    if !is_root() {
        return;
    }
    let (writer, _reader) = socketpair(libc::SOCK_STREAM);
    let (written, writes) = fill(writer.as_raw_fd(), 1);
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    println!("unix stream, 1-byte writes: {writes} writes, depth {depth:?}, {:.1}%", depth.percent());
    assert_eq!(depth.queued_bytes, written);
    assert_eq!(written, writes);
    assert_eq!(depth.charged_bytes, outq(writer.as_raw_fd()));
    assert!(depth.percent() >= 100.0);
    assert!(depth.queued_bytes * 100 < depth.capacity_bytes, "payload is under 1% of the buffer");
}

/// A UNIX datagram pair: the charged memory of the unread datagrams.
#[test]
fn unix_datagram() {
    if !is_root() {
        return;
    }
    let (writer, _reader) = socketpair(libc::SOCK_DGRAM);
    for _ in 0..5 {
        // SAFETY: a 100-byte buffer.
        assert_eq!(unsafe { libc::write(writer.as_raw_fd(), [1u8; 100].as_ptr().cast(), 100) }, 100);
    }
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    assert_eq!(depth.protocol, Some(SocketProtocol::Unix));
    assert_eq!(depth.charged_bytes, outq(writer.as_raw_fd()));
    assert_eq!(depth.queued_bytes, depth.charged_bytes);
    assert!(depth.charged_bytes >= 500, "{depth:?}");
}

/// A loopback TCP connection whose peer never reads, written until `EAGAIN`.
/// Every byte accepted is either in the receiver's queue or still unacked on
/// the sender: send queue + receiver's `FIONREAD` = bytes written.
fn tcp_full(listen: &str) {
    let listener = TcpListener::bind(listen).unwrap();
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (reader, _) = listener.accept().unwrap();
    writer.set_nonblocking(true).unwrap();
    let (written, _) = fill(writer.as_raw_fd(), 64 * 1024);
    // Let the last ACKs arrive: until then the receiver holds bytes that
    // snd_una does not cover yet.
    let deadline = Instant::now() + Duration::from_secs(2);
    while outq(writer.as_raw_fd()) + inq(reader.as_raw_fd()) != written && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).expect("the socket is in the dump");
    let received = inq(reader.as_raw_fd());
    println!("tcp {listen}: written {written}, receiver holds {received}, depth {depth:?}, {:.1}%", depth.percent());
    assert_eq!(depth.protocol, Some(SocketProtocol::Tcp));
    assert_eq!(depth.queued_bytes + received, written);
    assert_eq!(depth.queued_bytes, outq(writer.as_raw_fd()));
    assert!(depth.queued_bytes > 0);
    assert_eq!(depth.capacity_bytes, sndbuf(writer.as_raw_fd()));
    // The skbs holding the queued payload weigh more than the payload.
    assert!(depth.charged_bytes > depth.queued_bytes);
    // EAGAIN came at 100%; since then the last ACKs freed memory and grew
    // the send buffer (autotuning), hence ~92% here.
    assert!(depth.percent() > 80.0, "{:.1}%", depth.percent());

    // The sampler asked for TCP over IPv4 and IPv6, UDP and UNIX once; next
    // round it knows the table.
    let round = sampler.sample(&[request(writer.as_raw_fd())]);
    assert_eq!((round.stats.dumps, round.stats.sampled), (1, 1));
}

#[test]
fn tcp_ipv4_full() {
    if is_root() {
        tcp_full("127.0.0.1:0");
    }
}

#[test]
fn tcp_ipv6_full() {
    if is_root() {
        on_ipv6_loopback(tcp_full);
    }
}

/// Runs `test` on the IPv6 loopback, where this machine has one.
fn on_ipv6_loopback(test: fn(&str)) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    test("[::1]:0");
}

/// A corked UDP socket holds what it was given in `sk_wmem_alloc` until it
/// is uncorked; then, on loopback, the datagram leaves at once.
fn udp_corked(address: &str) {
    let receiver = UdpSocket::bind(address).unwrap();
    let sender = UdpSocket::bind(address).unwrap();
    sender.connect(receiver.local_addr().unwrap()).unwrap();
    let cork = |on: libc::c_int| {
        // SAFETY: an int and its size.
        let rc = unsafe {
            libc::setsockopt(
                sender.as_raw_fd(),
                libc::IPPROTO_UDP,
                libc::UDP_CORK,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    };
    cork(1);
    for _ in 0..3 {
        assert_eq!(sender.send(&[7u8; 1000]).unwrap(), 1000);
    }
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(sender.as_raw_fd())).expect("the socket is in the dump");
    println!("udp {address} corked with 3000 bytes: depth {depth:?}, {:.2}%", depth.percent());
    assert_eq!(depth.protocol, Some(SocketProtocol::Udp));
    assert_eq!(depth.charged_bytes, outq(sender.as_raw_fd()));
    assert!(depth.queued_bytes >= 3000, "{depth:?}");
    assert_eq!(depth.capacity_bytes, sndbuf(sender.as_raw_fd()));

    cork(0);
    let depth = sample_one(&mut sampler, request(sender.as_raw_fd())).unwrap();
    assert_eq!(depth.queued_bytes, 0);
    assert_eq!(receiver.recv(&mut [0u8; 4000]).unwrap(), 3000);
}

#[test]
fn udp_ipv4_corked() {
    if is_root() {
        udp_corked("127.0.0.1:0");
    }
}

#[test]
fn udp_ipv6_corked() {
    if is_root() {
        on_ipv6_loopback(udp_corked);
    }
}

fn pipe_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: two ints for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just created and are ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn pipe_size(fd: RawFd) -> u64 {
    // SAFETY: no argument.
    unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) as u64 }
}

/// K bytes written, none read: exactly K queued, of the pipe's size.
#[test]
fn pipe_fill() {
    if !is_root() {
        return;
    }
    let (reader, writer) = pipe_pair();
    // SAFETY: a buffer of 10,000 bytes.
    assert_eq!(unsafe { libc::write(writer.as_raw_fd(), [3u8; 10_000].as_ptr().cast(), 10_000) }, 10_000);
    let mut sampler = DepthSampler::new().unwrap();
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    assert_eq!(
        depth,
        Depth { queued_bytes: 10_000, charged_bytes: 10_000, capacity_bytes: 65536, protocol: None, exchange: None }
    );
    assert_eq!(pipe_size(writer.as_raw_fd()), 65536);
    // The read end names the same pipe.
    assert_eq!(sample_one(&mut sampler, request(reader.as_raw_fd())).unwrap().queued_bytes, 10_000);

    // Grown to 1 MiB and filled with 4 KiB writes until EAGAIN.
    // SAFETY: F_SETPIPE_SZ takes an int.
    assert!(unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) } >= 0);
    let (more, _) = fill(writer.as_raw_fd(), 4096);
    let depth = sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    assert_eq!((depth.queued_bytes, depth.capacity_bytes), (10_000 + more, 1 << 20));
    // The pipe is full in slots, not quite in bytes: the first 10,000 bytes
    // left their last page part full (1,808 bytes with 4 KiB pages), and
    // page-sized writes do not merge into it.
    // SAFETY: no side effect.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    assert_eq!(depth.queued_bytes, (1 << 20) - (page - 10_000 % page));
    assert!(depth.percent() > 99.7);
}

/// Sampling leaves nothing behind: once our writer is closed the reader gets
/// EOF, and once our reader is closed the writer gets EPIPE.
#[test]
fn pipe_sampling_leaves_no_end_open() {
    if !is_root() {
        return;
    }
    let mut sampler = DepthSampler::new().unwrap();
    let (reader, writer) = pipe_pair();
    sample_one(&mut sampler, request(reader.as_raw_fd())).unwrap();
    drop(writer);
    let mut buf = [0u8; 8];
    // SAFETY: an 8-byte buffer.
    assert_eq!(unsafe { libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), 8) }, 0, "EOF, not EAGAIN");

    let (reader, writer) = pipe_pair();
    drop(reader);
    sample_one(&mut sampler, request(writer.as_raw_fd())).unwrap();
    // SAFETY: a one-byte buffer; SIGPIPE is ignored in Rust programs.
    assert_eq!(unsafe { libc::write(writer.as_raw_fd(), [1u8].as_ptr().cast(), 1) }, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPIPE));
}

/// Descriptors that share a pipe (a container's stdout, a supervisor's
/// workers) get its fill from one sample; one that no longer holds it does
/// not stand in for the others.
#[test]
fn a_shared_pipe_is_sampled_once_per_round() {
    if !is_root() {
        return;
    }
    let (reader, writer) = pipe_pair();
    // SAFETY: a buffer of 300 bytes.
    assert_eq!(unsafe { libc::write(writer.as_raw_fd(), [3u8; 300].as_ptr().cast(), 300) }, 300);
    let copies: Vec<OwnedFd> = (0..3).map(|_| writer.try_clone().unwrap()).collect();
    let (other_reader, _other_writer) = pipe_pair();
    // The first request's fd now names another pipe: it gets no depth, the
    // next one is sampled.
    let stale = DepthRequest { fd: other_reader.as_raw_fd(), ..request(writer.as_raw_fd()) };
    let mut requests = vec![stale, request(writer.as_raw_fd())];
    requests.extend(copies.iter().map(|fd| request(fd.as_raw_fd())));
    let round = DepthSampler::new().unwrap().sample(&requests);
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    assert_eq!(round.stats.pipes, 2, "the stale fd, then one sample for the four that hold the pipe");
    let mut keys: Vec<DepthKey> = round.depths.iter().map(|(key, _)| *key).collect();
    keys.sort();
    let mut expected: Vec<DepthKey> = requests[1..].iter().map(DepthRequest::key).collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(round.depths.iter().all(|(_, depth)| depth.queued_bytes == 300));
    drop(reader);
}

/// Named FIFOs, and fds that no longer hold the pipe asked for, are not opened.
#[test]
fn pipe_not_opened_unless_the_same_anonymous_pipe() {
    if !is_root() {
        return;
    }
    let mut sampler = DepthSampler::new().unwrap();
    let dir = std::env::temp_dir().join(format!("batchwatch-depth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fifo");
    let _ = std::fs::remove_file(&path);
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let fifo = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&fifo.metadata().unwrap());
    let named =
        DepthRequest { pid: std::process::id(), fd: fifo.as_raw_fd(), inode, kind: DepthKind::Pipe, exchange: false };
    assert_eq!(sample_one(&mut sampler, named), None);
    std::fs::remove_dir_all(&dir).unwrap();

    let (reader, _writer) = pipe_pair();
    let stale = DepthRequest { inode: request(reader.as_raw_fd()).inode + 1, ..request(reader.as_raw_fd()) };
    assert_eq!(sample_one(&mut sampler, stale), None);
}

/// Exited processes, closed fds and unknown inodes are left out, silently.
#[test]
fn missing_descriptors_are_left_out() {
    if !is_root() {
        return;
    }
    let mut sampler = DepthSampler::new().unwrap();
    let (writer, _reader) = socketpair(libc::SOCK_STREAM);
    let live = request(writer.as_raw_fd());
    let requests = [
        DepthRequest { pid: u32::MAX - 1, ..live },
        DepthRequest { inode: 1, ..live },
        DepthRequest { pid: u32::MAX - 1, kind: DepthKind::Pipe, ..live },
        live,
    ];
    let round = sampler.sample(&requests);
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    assert_eq!(round.depths.len(), 1);
    assert_eq!(round.depths[0].0, live.key());
}

/// A socket that no table holds (here a netlink socket) costs a full dump
/// once, then again only every `RETRY_ABSENT_ROUNDS` rounds.
#[test]
fn sockets_in_no_table_are_looked_for_rarely() {
    if !is_root() {
        return;
    }
    let (writer, _reader) = socketpair(libc::SOCK_STREAM);
    // SAFETY: plain socket creation.
    let netlink = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    assert!(netlink >= 0);
    // SAFETY: just created, ours.
    let netlink = unsafe { OwnedFd::from_raw_fd(netlink) };
    let requests = [request(writer.as_raw_fd()), request(netlink.as_raw_fd())];
    let mut sampler = DepthSampler::new().unwrap();
    let dumps: Vec<usize> = (0..=RETRY_ABSENT_ROUNDS)
        .map(|_| {
            let round = sampler.sample(&requests);
            assert_eq!(round.stats.sampled, 1);
            round.stats.dumps
        })
        .collect();
    let mut expected = vec![1; RETRY_ABSENT_ROUNDS as usize + 1];
    expected[0] = Table::ALL.len();
    expected[RETRY_ABSENT_ROUNDS as usize] = Table::ALL.len();
    assert_eq!(dumps, expected);
}

/// What sampling a pipe costs (7 syscalls); printed.
#[test]
fn pipe_cost() {
    if !is_root() {
        return;
    }
    let (_reader, writer) = pipe_pair();
    let requests = vec![request(writer.as_raw_fd()); 1000];
    let mut sampler = DepthSampler::new().unwrap();
    let round = sampler.sample(&requests);
    assert_eq!(round.stats.sampled, 1000);
    println!("pipe_cost: 1,000 pipe samples in {:?}, {} syscalls", round.stats.elapsed, round.stats.syscalls);
}

// --- Another network namespace --------------------------------------------

const CHILD_ENV: &str = "BATCHWATCH_DEPTH_NETNS_CHILD";

/// Runs `netns_child` in `mode` in a new network namespace; returns the
/// child and the words of its READY line.
fn spawn_in_netns(mode: &str) -> Option<(std::process::Child, Vec<String>)> {
    if Command::new("unshare").arg("--help").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: no unshare(1)");
        return None;
    }
    let mut child = Command::new("unshare")
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "depth::tests::netns_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // libtest prints "test ... " before the test's own output, on the same
    // line. Read on a thread, so that a child that never gets ready fails
    // the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let ready = lines.by_ref().find_map(|line| {
            let (_, rest) = line.split_once("READY ")?;
            Some(rest.split(' ').map(String::from).collect::<Vec<_>>())
        });
        let _ = tx.send(ready);
        // Drain the rest, or libtest in the child fails on EPIPE.
        lines.for_each(drop);
    });
    let ready = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
    let Some(ready) = ready else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the child in a new netns did not report READY");
    };
    Some((child, ready))
}

/// Lets the child exit: it waits for its stdin to close.
fn finish(mut child: std::process::Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// The child's side: sockets in its own netns, kept until stdin closes.
#[test]
#[ignore = "run by the netns tests, inside a new network namespace"]
fn netns_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { return };
    loopback_up();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match mode.as_str() {
        "queues" => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (reader, _) = listener.accept().unwrap();
            writer.set_nonblocking(true).unwrap();
            let (written, _) = fill(writer.as_raw_fd(), 64 * 1024);
            let deadline = Instant::now() + Duration::from_secs(2);
            while outq(writer.as_raw_fd()) + inq(reader.as_raw_fd()) != written && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let (unix_writer, unix_reader) = socketpair(libc::SOCK_STREAM);
            // SAFETY: a 5,000-byte buffer.
            assert_eq!(unsafe { libc::write(unix_writer.as_raw_fd(), [9u8; 5000].as_ptr().cast(), 5000) }, 5000);
            println!("READY {} {} {}", writer.as_raw_fd(), outq(writer.as_raw_fd()), unix_writer.as_raw_fd());
            keep.extend([Box::new(listener) as Box<dyn std::any::Any>, Box::new(writer), Box::new(reader)]);
            keep.extend([Box::new(unix_writer) as Box<dyn std::any::Any>, Box::new(unix_reader)]);
        }
        "many" => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            for _ in 0..500 {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (server, _) = listener.accept().unwrap();
                keep.extend([Box::new(client) as Box<dyn std::any::Any>, Box::new(server)]);
            }
            println!("READY {}", listener.as_raw_fd());
            keep.push(Box::new(listener));
        }
        other => panic!("unknown mode {other}"),
    }
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    std::io::stdin().read_to_string(&mut rest).unwrap();
}

fn loopback_up() {
    // SAFETY: a plain socket for the interface ioctls; ifreq is plain data,
    // and the ioctls read and write one ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &raw mut ifr), 0);
    }
}

fn socket_requests(pid: u32) -> Vec<DepthRequest> {
    let mut resolver = FdResolver::default();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| {
            let info = resolver.resolve(pid, fd)?.clone();
            DepthRequest::for_fd(pid, fd, &info).filter(|request| request.kind == DepthKind::Socket)
        })
        .collect()
}

/// A process in another netns: its sockets are invisible to a sock_diag
/// socket of ours, and found through one opened inside its netns.
#[test]
fn other_netns() {
    if !is_root() {
        return;
    }
    let Some((child, ready)) = spawn_in_netns("queues") else { return };
    let pid = child.id();
    let (tcp_fd, tcp_outq, unix_fd): (i32, u64, i32) =
        (ready[0].parse().unwrap(), ready[1].parse().unwrap(), ready[2].parse().unwrap());
    assert_ne!(netns::of_process(pid).unwrap(), netns::of_process(std::process::id()).unwrap());

    let requests = socket_requests(pid);
    let tcp = *requests.iter().find(|r| r.fd == tcp_fd).unwrap();
    let unix = *requests.iter().find(|r| r.fd == unix_fd).unwrap();

    // Not in our own netns's dumps.
    let mut own = sock_diag::DiagSocket::open().unwrap();
    let mut seen = Vec::new();
    for table in Table::ALL {
        own.dump(table, false, &mut Vec::new(), |record| seen.push(record.inode())).unwrap();
    }
    assert!(!seen.iter().any(|&inode| u64::from(inode) == tcp.inode || u64::from(inode) == unix.inode));

    let mut sampler = DepthSampler::new().unwrap();
    let round = sampler.sample(&[tcp, unix]);
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    assert_eq!((round.stats.namespaces, round.stats.namespaces_opened), (1, 1));
    let depth = |fd| round.depths.iter().find(|(key, _)| key.fd == fd).map(|(_, depth)| *depth).unwrap();
    let tcp_depth = depth(tcp_fd);
    println!("tcp in {}: {tcp_depth:?}, {:.1}%", netns::of_process(pid).unwrap(), tcp_depth.percent());
    assert_eq!(tcp_depth.protocol, Some(SocketProtocol::Tcp));
    assert_eq!(tcp_depth.queued_bytes, tcp_outq);
    assert!(tcp_depth.percent() > 80.0);
    let unix_depth = depth(unix_fd);
    assert_eq!((unix_depth.protocol, unix_depth.queued_bytes), (Some(SocketProtocol::Unix), 5000));

    // The netns's socket is cached, then closed once the netns goes idle.
    assert_eq!(sampler.sample(&[tcp]).stats.namespaces_opened, 0);
    finish(child);
    for _ in 0..=NETNS_IDLE_ROUNDS {
        sampler.sample(&[]);
    }
    assert_eq!(sampler.open_namespaces(), 0);
}

/// The cost of a round for 1,000 sockets of a process in another netns:
/// printed, and bounded loosely. Run with `--release --nocapture` for the
/// real figure.
/// `rounds` rounds of all `requests` (1,000 sockets, all found): their
/// times, sorted, and the last round's figures.
fn steady_rounds(sampler: &mut DepthSampler, requests: &[DepthRequest], rounds: usize) -> (Vec<Duration>, RoundStats) {
    let mut times = Vec::new();
    let mut last = RoundStats::default();
    for _ in 0..rounds {
        let round = sampler.sample(requests);
        assert_eq!(round.stats.sampled, 1000);
        times.push(round.stats.elapsed);
        last = round.stats;
    }
    times.sort();
    (times, last)
}

#[test]
fn depth_cost() {
    if !is_root() {
        return;
    }
    let Some((child, ready)) = spawn_in_netns("many") else { return };
    // The connected sockets, as the agent would ask for its hot fds; not the
    // listener, which nobody writes to.
    let listener: i32 = ready[0].parse().unwrap();
    let requests: Vec<_> = socket_requests(child.id()).into_iter().filter(|r| r.fd != listener).collect();
    assert_eq!(requests.len(), 1000);
    let mut sampler = DepthSampler::new().unwrap();

    let first = sampler.sample(&requests);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.stats.sampled, 1000);
    let rounds = 50;
    let (times, last) = steady_rounds(&mut sampler, &requests, rounds);
    println!(
        "depth_cost: first round (netns entered, all 5 tables): {:?}, {} dumps, {} syscalls, {} bytes",
        first.stats.elapsed, first.stats.dumps, first.stats.syscalls, first.stats.netlink_bytes
    );
    println!(
        "depth_cost: steady round for 1,000 TCP sockets: median {:?}, min {:?}, max {:?}; {} dumps, {} syscalls, \
         {} sockets in the dump, {} netlink bytes",
        times[rounds / 2],
        times[0],
        times[rounds - 1],
        last.dumps,
        last.syscalls,
        last.sockets_seen,
        last.netlink_bytes
    );
    assert_eq!(last.dumps, 1, "only the TCP/IPv4 table once the sockets are known");
    assert!(times[rounds / 2] < Duration::from_millis(500));

    // One hot TCP writer among them asks for its exchange: the dump carries
    // struct tcp_info for every socket of the table.
    let mut with_exchange = requests.clone();
    with_exchange[0] = with_exchange[0].with_exchange(true);
    let (times, exchanged) = steady_rounds(&mut sampler, &with_exchange, rounds);
    println!(
        "depth_cost: the same round with one exchange asked for: median {:?}; {} syscalls, {} netlink bytes",
        times[rounds / 2],
        exchanged.syscalls,
        exchanged.netlink_bytes
    );
    assert!(exchanged.netlink_bytes > last.netlink_bytes);
    finish(child);
}
