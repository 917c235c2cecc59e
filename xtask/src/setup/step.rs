//! What a setup step is: it first looks at the machine ([`Plan`]), and only
//! then acts. Each step module (`apt`, `toolchain`, `bpf_linker`, `pip`,
//! `kernel`) defines its steps with these; `setup` lists them in order.

/// What a step found when it looked.
pub enum Plan {
    /// Nothing to do; the text says what is already there.
    Done(String),
    /// Nothing this step can do, but the user should know (setup goes on).
    Warn(String),
    /// Work to do: what it is, and the work itself.
    Do(String, Box<dyn FnOnce() -> anyhow::Result<()>>),
}

/// One step of setup.
pub struct Step {
    /// Short name, shown at the start of the step's line and in failures.
    pub name: &'static str,
    /// Looks at the machine and says what the step must do.
    pub plan: fn() -> anyhow::Result<Plan>,
    /// How to do the step by hand, shown when it fails.
    pub by_hand: fn() -> String,
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // `Uid:  real  effective  saved  filesystem` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}
