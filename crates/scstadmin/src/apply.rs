//! `-config`, `-check_config` and `-clear_config` (docs/scst-reference.md 3.4): reading and
//! checking the file here; planning and applying it is scst-mgmt's apply engine, the one scstd
//! runs its configuration through at start-up.

use anyhow::{anyhow, Result};
use scst_mgmt::conf::ScstConf;

/// Read and check a whole scst.conf; errors name the line.
pub fn load(file: &str) -> Result<ScstConf> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {file}: {e}"))?;
    // Every problem, of syntax or meaning, in one pass.
    scst_mgmt::conf::load(&text).map_err(|all| {
        let list: Vec<String> = all.0.iter().map(|p| format!("{file}: {p}")).collect();
        anyhow!("{}", list.join("\n"))
    })
}
