//! SIGHUP: read the configuration file again and apply it to the running daemon as one
//! transaction, the way `scstadmin -config FILE` does: the whole file is checked first,
//! scst-mgmt's apply engine plans the writes that take the running configuration to the
//! file's (additive: what the file lacks stays; removals take `scstadmin -config FILE
//! -force`), and executes them through the daemon's own tree, undoing them all if one
//! fails. Each change is logged; a file that cannot be applied is logged with every
//! reason and the running configuration stays as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use scst_mgmt::apply::{self, InProcess, Op, TreeAccess};
use scst_mgmt::attrs;
use scst_mgmt::protocol::MgmtTree;

/// Root attributes fixed at start-up (`setup_id` names the installation, `threads` sized
/// the I/O pool). A reload leaves them alone, as start-up's apply does, and says so when
/// the file asks for other values.
const START_ONLY: &[&str] = &["setup_id", "threads"];

/// What a reload needs: the file, the tree it applies to, and the lock that serializes
/// writes with the management socket's, so that a reload and a client's write never
/// interleave.
pub struct Reloader {
    pub config: PathBuf,
    pub tree: Arc<dyn MgmtTree>,
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Reloader {
    /// Reload once and log the outcome; never fails the daemon.
    pub async fn reload(&self) {
        let path = self.config.clone();
        log::info!("SIGHUP: reloading {}", path.display());
        let _writes = self.write_lock.lock().await;
        let tree = self.tree.clone();
        let outcome = tokio::task::spawn_blocking(move || reload(tree.as_ref(), &path)).await;
        match outcome {
            Ok(Ok(ops)) if ops.is_empty() => log::info!(
                "reload of {}: the running configuration matches it, nothing changed",
                self.config.display()
            ),
            Ok(Ok(ops)) => {
                for op in &ops {
                    log::info!("reload: {}: {op}", op.what);
                }
                log::info!(
                    "reload of {}: {} change(s) applied",
                    self.config.display(),
                    ops.len()
                );
            }
            Ok(Err(e)) => log::error!(
                "reload of {} refused, the running configuration is kept: {e:#}",
                self.config.display()
            ),
            Err(e) => log::error!(
                "reload of {} failed ({e}), the running configuration is kept",
                self.config.display()
            ),
        }
    }
}

/// Read, check, plan and apply `path` to `tree`; the changes made, in order. On an
/// error nothing was changed (the apply engine undid what it had applied; an undo that
/// failed too is in the error).
pub fn reload(tree: &dyn MgmtTree, path: &Path) -> Result<Vec<Op>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Every problem of the file, of syntax or meaning, in one pass.
    let mut conf = scst_mgmt::conf::load(&text).map_err(|all| {
        let list: Vec<String> = all.0.iter().map(ToString::to_string).collect();
        anyhow!("{}", list.join("\n"))
    })?;
    let mut access = InProcess(tree);
    for a in conf
        .attrs
        .iter()
        .filter(|a| START_ONLY.contains(&a.name.as_str()))
    {
        let running = access
            .read(&a.name)
            .map(|v| scst_mgmt::protocol::strip_key(&v).0.trim().to_string())
            .unwrap_or_default();
        let same = running == a.value.trim()
            || matches!(
                (attrs::parse_int(&running), attrs::parse_int(a.value.trim())),
                (Some(x), Some(y)) if x == y
            );
        if !same {
            log::warn!(
                "reload: line {}: {} {} takes effect at the next start (running: {running})",
                a.line,
                a.name,
                a.value
            );
        }
    }
    conf.attrs
        .retain(|a| !START_ONLY.contains(&a.name.as_str()));
    let plan = apply::plan(&mut access, &conf, false)?;
    for w in &plan.warnings {
        log::warn!("reload: {w}");
    }
    apply::execute(&mut access, &plan.ops)?;
    Ok(plan.ops)
}
