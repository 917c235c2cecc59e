//! The kernel side, seen from the agent: [`preflight`] checks what the
//! probes need from the node, [`probes`] loads the object and attaches the
//! programs [`programs`] finds in it, and [`collector`] reads their maps
//! into deltas at every tick.

pub mod collector;
pub mod preflight;
pub mod probes;
pub mod program_stats;
pub mod programs;
