//! Typed syntax tree of an scst.conf file (scst-reference section 3.2).
//!
//! Every node keeps the 1-based source line it came from so that the layer applying a
//! configuration can name the offending line in its own errors. Nodes built in code (not
//! parsed) use line 0. Object lists keep source order; [`ScstConf::canonical`] gives the
//! order `write_config` uses.

/// One `NAME VALUE` line. A multi-value attribute (e.g. `IncomingUser`) is several `Attr`s
/// with the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    /// The value with quotes and escapes removed. A bare `NAME` line gives an empty value.
    pub value: String,
    pub line: usize,
}

impl Attr {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attr {
            name: name.into(),
            value: value.into(),
            line: 0,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScstConf {
    /// Root attributes (`setup_id`, `threads`, ...).
    pub attrs: Vec<Attr>,
    pub handlers: Vec<HandlerConf>,
    pub drivers: Vec<DriverConf>,
    pub device_groups: Vec<DeviceGroupConf>,
    /// Attributes of the `ALUA { }` block (the `device_groups/` directory itself).
    pub alua: Vec<Attr>,
}

/// `HANDLER name { attrs; DEVICE ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub devices: Vec<DeviceConf>,
    pub line: usize,
}

/// `DEVICE name [{ attrs }]` inside a HANDLER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

/// `TARGET_DRIVER name { attrs; TARGET ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub targets: Vec<TargetConf>,
    pub line: usize,
}

/// `TARGET name { [HW_TARGET] attrs; LUN ...; GROUP ... }` inside a TARGET_DRIVER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConf {
    pub name: String,
    /// `HW_TARGET` marker: the target is hardware, configured but never created.
    pub hw_target: bool,
    pub attrs: Vec<Attr>,
    /// The target's default LUN set (initiators not matched by any group).
    pub luns: Vec<LunConf>,
    /// Security groups in source order: the first group matching an initiator wins, so the
    /// order is meaningful and is never changed.
    pub groups: Vec<GroupConf>,
    pub line: usize,
}

/// `LUN number device [{ attrs }]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConf {
    /// 0..=16383 (14-bit LUNs), checked by the parser.
    pub lun: u16,
    pub device: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

/// `GROUP name { attrs; LUN ...; INITIATOR ... }` (an ini_group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub luns: Vec<LunConf>,
    pub initiators: Vec<InitiatorConf>,
    pub line: usize,
}

/// `INITIATOR pattern` (`*`, `?` and `!` wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorConf {
    pub pattern: String,
    pub line: usize,
}

/// `DEVICE_GROUP name { DEVICE d; TARGET_GROUP ... }` (ALUA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroupConf {
    pub name: String,
    /// The grammar has no device-group attributes; kept so validation can name them.
    pub attrs: Vec<Attr>,
    pub devices: Vec<DeviceRefConf>,
    pub target_groups: Vec<TargetGroupConf>,
    pub line: usize,
}

/// `DEVICE name` inside a DEVICE_GROUP: a reference to a device defined under a HANDLER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRefConf {
    pub name: String,
    pub line: usize,
}

/// `TARGET_GROUP name { group_id/preferred/state; TARGET ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub targets: Vec<TargetRefConf>,
    pub line: usize,
}

/// `TARGET name [{ rel_tgt_id N }]` inside a TARGET_GROUP: a local or remote target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRefConf {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub line: usize,
}

impl ScstConf {
    /// Copy with every line number set to 0, for comparing trees regardless of layout.
    pub fn without_lines(&self) -> ScstConf {
        let mut c = self.clone();
        c.clear_lines();
        c
    }

    fn clear_lines(&mut self) {
        fn attrs(a: &mut [Attr]) {
            a.iter_mut().for_each(|a| a.line = 0);
        }
        fn luns(l: &mut [LunConf]) {
            for lun in l {
                lun.line = 0;
                attrs(&mut lun.attrs);
            }
        }
        attrs(&mut self.attrs);
        attrs(&mut self.alua);
        for h in &mut self.handlers {
            h.line = 0;
            attrs(&mut h.attrs);
            for d in &mut h.devices {
                d.line = 0;
                attrs(&mut d.attrs);
            }
        }
        for drv in &mut self.drivers {
            drv.line = 0;
            attrs(&mut drv.attrs);
            for t in &mut drv.targets {
                t.line = 0;
                attrs(&mut t.attrs);
                luns(&mut t.luns);
                for g in &mut t.groups {
                    g.line = 0;
                    attrs(&mut g.attrs);
                    luns(&mut g.luns);
                    g.initiators.iter_mut().for_each(|i| i.line = 0);
                }
            }
        }
        for dg in &mut self.device_groups {
            dg.line = 0;
            attrs(&mut dg.attrs);
            dg.devices.iter_mut().for_each(|d| d.line = 0);
            for tg in &mut dg.target_groups {
                tg.line = 0;
                attrs(&mut tg.attrs);
                for t in &mut tg.targets {
                    t.line = 0;
                    attrs(&mut t.attrs);
                }
            }
        }
    }

    /// Copy in SCST's write_config order: handlers, devices, drivers, targets, device groups,
    /// target groups and their member lists sorted by name, LUNs by number. Security groups,
    /// initiators and attributes keep their order (group order decides which group an
    /// initiator lands in; attribute order is the user's).
    pub fn canonical(&self) -> ScstConf {
        let mut c = self.clone();
        c.handlers.sort_by(|a, b| a.name.cmp(&b.name));
        for h in &mut c.handlers {
            h.devices.sort_by(|a, b| a.name.cmp(&b.name));
        }
        c.drivers.sort_by(|a, b| a.name.cmp(&b.name));
        for drv in &mut c.drivers {
            drv.targets.sort_by(|a, b| a.name.cmp(&b.name));
            for t in &mut drv.targets {
                t.luns.sort_by_key(|l| l.lun);
                for g in &mut t.groups {
                    g.luns.sort_by_key(|l| l.lun);
                }
            }
        }
        c.device_groups.sort_by(|a, b| a.name.cmp(&b.name));
        for dg in &mut c.device_groups {
            dg.devices.sort_by(|a, b| a.name.cmp(&b.name));
            dg.target_groups.sort_by(|a, b| a.name.cmp(&b.name));
            for tg in &mut dg.target_groups {
                tg.targets.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        c
    }

    /// Every device defined under a HANDLER, with its handler's name.
    pub fn devices(&self) -> impl Iterator<Item = (&HandlerConf, &DeviceConf)> {
        self.handlers
            .iter()
            .flat_map(|h| h.devices.iter().map(move |d| (h, d)))
    }
}
