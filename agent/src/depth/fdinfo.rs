//! An io_uring ring's state from `/proc/PID/fdinfo/FD`: how full its
//! submission and completion queues are, and whether an SQPOLL thread
//! serves it.

/// What the kernel prints about a ring (Linux 5.x and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFdinfo {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// SQEs the application queued and the kernel has not consumed yet.
    pub sq_pending: u32,
    /// CQEs the kernel posted and the application has not reaped yet.
    pub cq_pending: u32,
    /// Whether an SQPOLL thread serves the ring.
    pub sqpoll: bool,
}

impl RingFdinfo {
    /// Reads the fdinfo of ring `fd` of `pid`; `None` if it is not a ring
    /// (any more) or the process is gone.
    pub fn read(pid: u32, fd: i32) -> Option<RingFdinfo> {
        RingFdinfo::parse(&std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?)
    }

    /// Parses fdinfo text; `None` if it lacks the ring fields.
    pub fn parse(text: &str) -> Option<RingFdinfo> {
        let field =
            |name: &str| text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
        let number = |name: &str| -> Option<u32> {
            let value = field(name)?;
            match value.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => value.parse().ok(),
            }
        };
        Some(RingFdinfo {
            sq_entries: number("SqMask")?.checked_add(1)?,
            cq_entries: number("CqMask")?.checked_add(1)?,
            sq_pending: number("SQEs")?,
            cq_pending: number("CQEs")?,
            sqpoll: field("SqThread").is_some_and(|thread| thread != "-1"),
        })
    }

    /// Submission queue occupancy, in % of its entries.
    pub fn sq_percent(&self) -> f64 {
        percent(self.sq_pending, self.sq_entries)
    }

    /// Completion queue occupancy, in % of its entries.
    pub fn cq_percent(&self) -> f64 {
        percent(self.cq_pending, self.cq_entries)
    }
}

fn percent(used: u32, capacity: u32) -> f64 {
    if capacity == 0 { 0.0 } else { 100.0 * f64::from(used) / f64::from(capacity) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t38756\nSqMask:\t0x7\nSqHead:\t0\n\
        SqTail:\t3\nCachedSqHead:\t0\nCqMask:\t0xf\nCqHead:\t0\nCqTail:\t12\nCachedCqTail:\t0\nSQEs:\t3\n\
        CQEs:\t12\nSqThread:\t-1\nSqThreadCpu:\t-1\nUserFiles:\t0\n";

    #[test]
    fn parses_a_ring() {
        let ring = RingFdinfo::parse(SAMPLE).unwrap();
        assert_eq!(ring, RingFdinfo { sq_entries: 8, cq_entries: 16, sq_pending: 3, cq_pending: 12, sqpoll: false });
        assert_eq!(ring.sq_percent(), 37.5);
        assert_eq!(ring.cq_percent(), 75.0);
    }

    #[test]
    fn sqpoll_thread_is_seen() {
        let text = SAMPLE.replace("SqThread:\t-1", "SqThread:\t4242");
        assert!(RingFdinfo::parse(&text).unwrap().sqpoll);
    }

    #[test]
    fn other_files_are_not_rings() {
        assert_eq!(RingFdinfo::parse("pos:\t0\nflags:\t02\nmnt_id:\t1\n"), None);
        assert_eq!(RingFdinfo::parse("SqMask:\t0xffffffff\nCqMask:\t0x1\nSQEs:\t0\nCQEs:\t0\n"), None);
    }

    #[test]
    fn reads_a_live_ring() {
        let ring = io_uring::IoUring::new(8).expect("io_uring is allowed here");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&ring);
        let info = RingFdinfo::read(std::process::id(), fd).unwrap();
        assert_eq!((info.sq_entries, info.cq_entries, info.sqpoll), (8, 16, false));
    }
}
