//! The programs, one module per syscall family.

mod write_family;
