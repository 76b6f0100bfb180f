//! `-config`, `-check_config` and `-clear_config` (docs/scst-reference.md 3.4): reading and
//! checking the file here; planning and applying it is scst-mgmt's apply engine, the one scstd
//! runs its configuration through at start-up.

use anyhow::{anyhow, bail, Result};
use scst_mgmt::conf::ScstConf;

/// Read and check a whole scst.conf; errors name the line.
pub fn load(file: &str) -> Result<ScstConf> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {file}: {e}"))?;
    let conf = scst_mgmt::conf::parse(&text).map_err(|e| anyhow!("{file}: {e}"))?;
    let problems = scst_mgmt::conf::problems(&conf);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("{file}: {p}")).collect();
        bail!("{}", list.join("\n"));
    }
    Ok(conf)
}
