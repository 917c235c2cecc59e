//! Reading a whole BPF hash map in bulk, a few syscalls with `BPF_MAP_LOOKUP_BATCH`
//! (Linux 5.6 and later), where aya 0.14's iterator makes two per entry:
//! with 10,000 tracked processes that was 20,000 syscalls a tick, most of the
//! agent's CPU (measured by `cargo xtask bench`). aya 0.14 has no batch
//! operations, so this is the one raw `bpf()` call of the agent.

use std::{
    io,
    mem::{self, MaybeUninit},
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Pod, maps::MapData};

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries asked for per call; a hash bucket holding more makes the kernel
/// answer `ENOSPC`, and the buffers grow.
const FIRST_BATCH: usize = 1024;

/// Buffers reused from one reading to the next.
pub struct BulkReader<K, V> {
    keys: Vec<MaybeUninit<K>>,
    values: Vec<MaybeUninit<V>>,
}

// Not derived: that would ask `K: Default` and `V: Default`.
impl<K, V> Default for BulkReader<K, V> {
    fn default() -> Self {
        BulkReader { keys: Vec::new(), values: Vec::new() }
    }
}

impl<K: Pod, V: Pod> BulkReader<K, V> {
    /// Calls `each` with every key of `map` and its `copies` values (the
    /// number of possible CPUs for a per-CPU map, else 1). `V`'s size must be
    /// a multiple of 8, the kernel's stride between per-CPU copies.
    pub fn read(&mut self, map: &MapData, copies: usize, mut each: impl FnMut(K, &[V])) -> io::Result<()> {
        const { assert!(mem::size_of::<V>().is_multiple_of(8)) };
        let mut batch = FIRST_BATCH;
        // The kernel's cursor: a bucket index for hash maps.
        let (mut cursor, mut next) = (0u64, 0u64);
        let mut started = false;
        loop {
            self.keys.resize(batch, MaybeUninit::uninit());
            self.values.resize(batch * copies, MaybeUninit::uninit());
            let mut attr = BatchAttr {
                in_batch: if started { (&raw const cursor) as u64 } else { 0 },
                out_batch: (&raw mut next) as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: batch as u32,
                map_fd: map.fd().as_fd().as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: the buffers hold `count` keys and `count * copies`
            // values; the attribute outlives the call.
            let ret = unsafe {
                libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &raw mut attr, mem::size_of::<BatchAttr>())
            };
            let error = (ret < 0).then(io::Error::last_os_error);
            if error.as_ref().is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC)) {
                batch *= 2;
                continue;
            }
            for i in 0..attr.count as usize {
                // SAFETY: the kernel filled the first `count` entries.
                let key = unsafe { self.keys[i].assume_init() };
                let values = &self.values[i * copies..(i + 1) * copies];
                // SAFETY: as above; `MaybeUninit<V>` has the layout of `V`.
                each(key, unsafe { &*(values as *const [MaybeUninit<V>] as *const [V]) });
            }
            match error {
                None => {}
                // The end of the map.
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Some(e) => return Err(e),
            }
            cursor = next;
            started = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use aya::maps::{HashMap, IterableMap as _, PerCpuHashMap, PerCpuValues};

    use super::*;

    #[test]
    fn reads_every_entry_once_across_batches() {
        // Creating a BPF map needs root (CAP_BPF), as the agent does.
        let Ok(mut map) = HashMap::<MapData, u32, u64>::create(5000, 0) else {
            panic!("creating a BPF map (these tests run as root)");
        };
        for key in 0..5000 {
            map.insert(key, u64::from(key) * 3, 0).unwrap();
        }
        let mut seen = vec![0u32; 5000];
        BulkReader::<u32, u64>::default()
            .read(map.map(), 1, |key, values| {
                assert_eq!(values, [u64::from(key) * 3]);
                seen[key as usize] += 1;
            })
            .unwrap();
        assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn reads_every_cpus_copy() {
        let cpus = aya::util::nr_cpus().unwrap();
        let mut map = PerCpuHashMap::<MapData, u32, u64>::create(100, 0).expect("creating a BPF map (root)");
        for key in 0..100u32 {
            let values = (0..cpus as u64).map(|cpu| u64::from(key) * 10 + cpu).collect::<Vec<_>>();
            map.insert(key, PerCpuValues::try_from(values).unwrap(), 0).unwrap();
        }
        let mut count = 0;
        BulkReader::<u32, u64>::default()
            .read(map.map(), cpus, |key, values| {
                let expected: Vec<u64> = (0..cpus as u64).map(|cpu| u64::from(key) * 10 + cpu).collect();
                assert_eq!(values, expected);
                count += 1;
            })
            .unwrap();
        assert_eq!(count, 100);
    }
}
