//! Start-up: the configuration file applied the way `scstadmin -config` applies it to a
//! running daemon, by scst-mgmt's apply engine, as mgmt writes through the management
//! tree, so that start-up, `-config` and tree writes accept and refuse the same things.
//! The plan runs from an empty daemon, in scstadmin's order (docs/scst-reference.md 3.4): devices,
//! then targets with their LUNs and groups, then ALUA device groups, then enabling
//! targets and the driver. Every error names the config line and the object, and a
//! file's problems are reported together, not one per start.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use scst_core::Scst;
use scst_iscsi::IscsiDriver;
use scst_mgmt::apply::{self, ApplyError, InProcess};
use scst_mgmt::attrs;
use scst_mgmt::conf::ScstConf;
use scst_mgmt::ScstTree;

pub use scst_mgmt::tree::DEFAULT_IO_THREADS;

/// Devices are registered with the copy manager when they are created; a file with a
/// `copy_manager_tgt` block says which stay (SCST's scstadmin writes the list it had).
fn unlist_from_copy_manager(scst: &Scst, conf: &ScstConf) -> Result<()> {
    let Some(cm) = conf
        .drivers
        .iter()
        .filter(|d| d.name == scst_core::COPY_MANAGER)
        .flat_map(|d| &d.targets)
        .find(|t| t.name == scst_core::COPY_MANAGER_TGT)
    else {
        return Ok(());
    };
    for (_, d) in conf.devices() {
        if !cm.luns.iter().any(|l| l.device == d.name) {
            scst.copy_manager_remove_device(&d.name)
                .with_context(|| format!("device {}: leaving the copy manager", d.name))?;
            log::info!("device {}: not in copy_manager_tgt's LUN list", d.name);
        }
    }
    Ok(())
}

/// The global I/O thread count the root `threads` attribute asks for, if any.
pub fn io_threads(conf: &ScstConf) -> Option<usize> {
    conf.attrs
        .iter()
        .rev()
        .find(|a| a.name == "threads")
        .and_then(|a| a.value.parse().ok())
        .filter(|n| *n > 0)
}

/// The root `setup_id` (scst-reference 2.3), 32 bits.
pub fn setup_id(conf: &ScstConf) -> u64 {
    conf.attrs
        .iter()
        .rev()
        .find(|a| a.name == "setup_id")
        .and_then(|a| attrs::parse_int(a.value.trim()))
        .map_or(0, |n| n as u64 & 0xffff_ffff)
}

/// What start-up built: the iSCSI target driver, configured but not yet listening, and
/// the management tree the socket serves. The core holds its target drivers weakly:
/// `iscsi` keeps the driver registered.
pub struct Started {
    pub iscsi: Arc<IscsiDriver>,
    pub vhost: Arc<scst_vhost::VhostDriver>,
    pub tree: Arc<ScstTree>,
}

/// Register the iSCSI driver with `scst`, build the management tree over it and apply
/// `conf` through the tree. The dev handlers must be registered already (the tree
/// creates devices through them). `io_threads` is `--io-threads`, which overrides the
/// configuration's `threads` (the caller sized the I/O pool with it).
pub fn apply_config(
    scst: &Arc<Scst>,
    conf: &ScstConf,
    io_threads: Option<usize>,
) -> Result<Started> {
    let problems = scst_mgmt::conf::problems(conf);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "{} problem(s), nothing was started:\n  {}",
            problems.len(),
            list.join("\n  ")
        );
    }
    let iscsi = IscsiDriver::new(scst.clone());
    scst.register_target_driver(&iscsi)
        .context("cannot register the iSCSI target driver")?;
    let vhost = scst_vhost::VhostDriver::new(scst.clone());
    scst.register_target_driver(&vhost)
        .context("cannot register the vhost target driver")?;
    scst_core::CopyManager::register(scst).context("cannot register the copy manager")?;
    let chosen = io_threads.or_else(|| self::io_threads(conf));
    let tree = Arc::new(
        ScstTree::new(scst.clone(), setup_id(conf))
            .with_io_threads(chosen.unwrap_or(DEFAULT_IO_THREADS), chosen.is_some()),
    );
    // The tree was made with them: they name the installation and size the I/O pool,
    // and cannot change while scstd runs.
    let mut rest = conf.clone();
    rest.attrs
        .retain(|a| a.name != "setup_id" && a.name != "threads");
    let mut access = InProcess(&*tree);
    let plan = apply::plan(&mut access, &rest, false)?;
    for w in &plan.warnings {
        log::warn!("config: {w}");
    }
    match apply::execute(&mut access, &plan.ops) {
        Ok(()) => {
            unlist_from_copy_manager(scst, conf)?;
            // The objects exist now: compare the file's read-only values with theirs
            // (a difference is a warning, as with -config).
            let check = apply::plan(&mut access, &rest, false)?;
            for w in check.warnings.iter().filter(|w| !plan.warnings.contains(w)) {
                log::warn!("config: {w}");
            }
            Ok(Started { iscsi, vhost, tree })
        }
        // The daemon does not start: what was undone does not matter, what failed does.
        Err(ApplyError::Write {
            what, error, also, ..
        }) => Err(anyhow!(
            "{}",
            std::iter::once(format!("{what}: {error}"))
                .chain(also)
                .collect::<Vec<_>>()
                .join("\n")
        )),
        Err(e) => Err(e.into()),
    }
}
