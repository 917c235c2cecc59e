//! The programs, one module per syscall family.

mod io_uring;
mod write_family;
