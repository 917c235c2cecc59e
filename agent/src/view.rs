//! The live view (placeholder until the ratatui view lands).
use crate::config::Config;
pub fn run(_config: &Config) -> anyhow::Result<()> {
    anyhow::bail!("the live view is not built yet; use `batchwatch record`")
}
