//! Whose writes the kernel counted: the process (`identity`), the file
//! behind each descriptor (`fds`) and the container it runs in
//! (`container`), each read from `/proc`. The pod a container belongs to
//! comes from the API server instead (`kubernetes`).

pub mod container;
pub mod fds;
pub mod identity;
