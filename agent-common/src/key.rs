//! The key most maps share: one process and one of its descriptors.

/// One process (its tgid, the pid users see) and one of its descriptors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: i32,
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, and valid for any bit pattern.
unsafe impl aya::Pod for FdKey {}
