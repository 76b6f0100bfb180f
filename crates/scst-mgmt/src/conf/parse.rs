//! Structure of scst.conf (scst-reference section 3.2): turns lexed lines into [`ScstConf`].
//!
//! Only syntax and structure are checked here (sections in the right places, names present,
//! LUN numbers, duplicates within a scope). Whether handlers, drivers and attributes exist is
//! the business of [`super::validate`].

use std::collections::HashMap;

use super::ast::*;
use super::lexer::{lex, Line, LineKind};
use super::{ConfError, ConfErrors};

/// Highest LUN number SCST accepts (14-bit flat/peripheral addressing).
pub const MAX_LUN: u16 = 16383;

/// Parse the text of an scst.conf file; the first problem, if any.
pub fn parse(text: &str) -> Result<ScstConf, ConfError> {
    parse_all(text).map_err(|mut all| all.0.swap_remove(0))
}

/// Parse the text of an scst.conf file, reporting every problem found in one pass, in
/// file order (a malformed item is skipped with its block; unbalanced braces end it).
pub fn parse_all(text: &str) -> Result<ScstConf, ConfErrors> {
    match parse_partial(text) {
        (Some(conf), errors) if errors.is_empty() => Ok(conf),
        (_, errors) => Err(ConfErrors(errors)),
    }
}

/// What parsed (None when the braces do not balance) and the problems found.
pub(super) fn parse_partial(text: &str) -> (Option<ScstConf>, Vec<ConfError>) {
    let lines = match lex(text) {
        Ok(lines) => lines,
        Err(e) => return (None, vec![e]),
    };
    let mut p = Parser {
        lines,
        pos: 0,
        device_lines: HashMap::new(),
        errors: Vec::new(),
        fatal: false,
    };
    let conf = p.top();
    let mut errors = p.errors;
    match conf {
        Ok(conf) => (Some(conf), errors),
        Err(e) => {
            errors.push(e);
            (None, errors)
        }
    }
}

/// Reserved section words. They are recognised wherever they appear, quoted or not, so an
/// attribute can never be called e.g. `LUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Handler,
    Device,
    TargetDriver,
    Target,
    HwTarget,
    Lun,
    Group,
    Initiator,
    DeviceGroup,
    TargetGroup,
    Alua,
}

fn keyword(word: &str) -> Option<Kw> {
    Some(match word {
        "HANDLER" => Kw::Handler,
        "DEVICE" => Kw::Device,
        "TARGET_DRIVER" => Kw::TargetDriver,
        "TARGET" => Kw::Target,
        "HW_TARGET" => Kw::HwTarget,
        "LUN" => Kw::Lun,
        "GROUP" => Kw::Group,
        "INITIATOR" => Kw::Initiator,
        "DEVICE_GROUP" => Kw::DeviceGroup,
        "TARGET_GROUP" => Kw::TargetGroup,
        "ALUA" => Kw::Alua,
        _ => return None,
    })
}

/// One line inside a section (or at top level).
struct Item {
    line: usize,
    words: Vec<String>,
    opens: bool,
}

impl Item {
    fn head(&self) -> &str {
        // The lexer never yields an empty word list.
        self.words.first().map(String::as_str).unwrap_or("")
    }

    fn keyword(&self) -> Option<Kw> {
        keyword(self.head())
    }
}

/// An open section, for "never closed" errors and for naming the context.
struct Section {
    line: usize,
    /// e.g. `HANDLER vdisk_fileio`
    what: String,
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
    /// Device names are global in SCST (`devices/<name>`), so duplicates are caught across
    /// handlers; value = line of the first definition.
    device_lines: HashMap<String, usize>,
    /// Problems of items skipped so far.
    errors: Vec<ConfError>,
    /// The braces do not balance: nothing after it can be placed.
    fatal: bool,
}

/// Tracks names already used in one scope.
#[derive(Default)]
struct Seen(HashMap<String, usize>);

impl Seen {
    fn add(&mut self, what: &str, name: &str, line: usize) -> Result<(), ConfError> {
        match self.0.get(name) {
            Some(first) => Err(ConfError::new(
                line,
                format!("duplicate {what} {name} (first defined at line {first})"),
            )),
            None => {
                self.0.insert(name.to_string(), line);
                Ok(())
            }
        }
    }
}

impl Parser {
    /// Next line of the current section: `None` at its closing `}` (or at end of file on the
    /// top level, `section == None`).
    fn next_item(&mut self, section: Option<&Section>) -> Result<Option<Item>, ConfError> {
        let Some(l) = self.lines.get(self.pos) else {
            return match section {
                None => Ok(None),
                Some(s) => {
                    self.fatal = true;
                    Err(ConfError::new(
                        s.line,
                        format!("unbalanced braces: '{{' of {} is never closed", s.what),
                    ))
                }
            };
        };
        self.pos += 1;
        match &l.kind {
            LineKind::Close => match section {
                Some(_) => Ok(None),
                None => {
                    self.fatal = true;
                    Err(ConfError::new(
                        l.line,
                        "unbalanced braces: '}' without a matching '{'",
                    ))
                }
            },
            LineKind::Words { words, opens } => Ok(Some(Item {
                line: l.line,
                words: words.clone(),
                opens: *opens,
            })),
        }
    }

    /// Note the problem of `item` and skip it (with its block, not yet read), unless the
    /// braces no longer balance.
    fn recover(&mut self, item: &Item, e: ConfError) -> Result<(), ConfError> {
        if self.fatal {
            return Err(e);
        }
        self.errors.push(e);
        if item.opens {
            self.skip_block(item)?;
        }
        Ok(())
    }

    /// Read past the block `item` opens, nested blocks included.
    fn skip_block(&mut self, item: &Item) -> Result<(), ConfError> {
        let section = Section {
            line: item.line,
            what: item.words.join(" "),
        };
        while let Some(inner) = self.next_item(Some(&section))? {
            if inner.opens {
                self.skip_block(&inner)?;
            }
        }
        Ok(())
    }

    fn top(&mut self) -> Result<ScstConf, ConfError> {
        let mut conf = ScstConf::default();
        let mut handlers = Seen::default();
        let mut drivers = Seen::default();
        let mut dgroups = Seen::default();
        let mut alua_line: Option<usize> = None;
        while let Some(item) = self.next_item(None)? {
            // A problem with one item is noted and the item skipped, so that one pass
            // reports every problem of the file; only unbalanced braces end it.
            let r = (|| -> Result<(), ConfError> {
                match item.keyword() {
                    Some(Kw::Handler) => {
                        let name = section_name(&item, "HANDLER")?;
                        handlers.add("HANDLER", &name, item.line)?;
                        conf.handlers.push(self.handler(&item, name)?);
                    }
                    Some(Kw::TargetDriver) => {
                        let name = section_name(&item, "TARGET_DRIVER")?;
                        drivers.add("TARGET_DRIVER", &name, item.line)?;
                        conf.drivers.push(self.driver(&item, name)?);
                    }
                    Some(Kw::DeviceGroup) => {
                        let name = section_name(&item, "DEVICE_GROUP")?;
                        dgroups.add("DEVICE_GROUP", &name, item.line)?;
                        conf.device_groups.push(self.device_group(&item, name)?);
                    }
                    Some(Kw::Alua) => {
                        if let Some(extra) = item.words.get(1) {
                            return Err(unexpected(item.line, extra, "ALUA"));
                        }
                        if let Some(first) = alua_line {
                            return Err(ConfError::new(
                                item.line,
                                format!("duplicate ALUA section (first at line {first})"),
                            ));
                        }
                        alua_line = Some(item.line);
                        let section = Section {
                            line: item.line,
                            what: "ALUA".into(),
                        };
                        conf.alua = self.attrs_only(&item, &section)?;
                    }
                    Some(kw) => return Err(not_allowed(&item, kw, "at top level")),
                    None => conf.attrs.push(attr(&item)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&item, e)?;
            }
        }
        Ok(conf)
    }

    fn handler(&mut self, item: &Item, name: String) -> Result<HandlerConf, ConfError> {
        let mut h = HandlerConf {
            name,
            attrs: Vec::new(),
            devices: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(h);
        }
        let section = Section {
            line: item.line,
            what: format!("HANDLER {}", h.name),
        };
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::Device) => {
                        let dname = section_name(&it, "DEVICE")?;
                        if let Some(first) = self.device_lines.get(&dname) {
                            return Err(ConfError::new(
                                it.line,
                                format!("duplicate DEVICE {dname} (first defined at line {first})"),
                            ));
                        }
                        self.device_lines.insert(dname.clone(), it.line);
                        let dev_section = Section {
                            line: it.line,
                            what: format!("DEVICE {dname}"),
                        };
                        let attrs = self.attrs_only(&it, &dev_section)?;
                        h.devices.push(DeviceConf {
                            name: dname,
                            attrs,
                            line: it.line,
                        });
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => h.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(h)
    }

    fn driver(&mut self, item: &Item, name: String) -> Result<DriverConf, ConfError> {
        let mut d = DriverConf {
            name,
            attrs: Vec::new(),
            targets: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(d);
        }
        let section = Section {
            line: item.line,
            what: format!("TARGET_DRIVER {}", d.name),
        };
        let mut targets = Seen::default();
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::Target) => {
                        let tname = section_name(&it, "TARGET")?;
                        targets.add("TARGET", &tname, it.line)?;
                        d.targets.push(self.target(&it, tname)?);
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => d.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(d)
    }

    fn target(&mut self, item: &Item, name: String) -> Result<TargetConf, ConfError> {
        let mut t = TargetConf {
            name,
            hw_target: false,
            attrs: Vec::new(),
            luns: Vec::new(),
            groups: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(t);
        }
        let section = Section {
            line: item.line,
            what: format!("TARGET {}", t.name),
        };
        let mut luns = Seen::default();
        let mut groups = Seen::default();
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::HwTarget) => {
                        if let Some(extra) = it.words.get(1) {
                            return Err(unexpected(it.line, extra, "HW_TARGET"));
                        }
                        if it.opens {
                            return Err(ConfError::new(it.line, "HW_TARGET takes no '{' block"));
                        }
                        t.hw_target = true;
                    }
                    Some(Kw::Lun) => t.luns.push(self.lun(&it, &mut luns)?),
                    Some(Kw::Group) => {
                        let gname = section_name(&it, "GROUP")?;
                        groups.add("GROUP", &gname, it.line)?;
                        t.groups.push(self.group(&it, gname)?);
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => t.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(t)
    }

    fn group(&mut self, item: &Item, name: String) -> Result<GroupConf, ConfError> {
        let mut g = GroupConf {
            name,
            attrs: Vec::new(),
            luns: Vec::new(),
            initiators: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(g);
        }
        let section = Section {
            line: item.line,
            what: format!("GROUP {}", g.name),
        };
        let mut luns = Seen::default();
        let mut initiators = Seen::default();
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::Lun) => g.luns.push(self.lun(&it, &mut luns)?),
                    Some(Kw::Initiator) => {
                        let pattern = leaf_name(&it, "INITIATOR")?;
                        initiators.add("INITIATOR", &pattern, it.line)?;
                        g.initiators.push(InitiatorConf {
                            pattern,
                            line: it.line,
                        });
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => g.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(g)
    }

    /// `LUN number device [{ attrs }]`
    fn lun(&mut self, item: &Item, seen: &mut Seen) -> Result<LunConf, ConfError> {
        let Some(num) = item.words.get(1) else {
            return Err(ConfError::new(item.line, "LUN without a number and device"));
        };
        let lun = lun_number(num, item.line)?;
        let Some(device) = item.words.get(2).filter(|d| !d.is_empty()) else {
            return Err(ConfError::new(
                item.line,
                format!("LUN {lun} has no device"),
            ));
        };
        if let Some(extra) = item.words.get(3) {
            return Err(unexpected(item.line, extra, &format!("LUN {lun} {device}")));
        }
        seen.add("LUN", &lun.to_string(), item.line)?;
        let section = Section {
            line: item.line,
            what: format!("LUN {lun}"),
        };
        Ok(LunConf {
            lun,
            device: device.clone(),
            attrs: self.attrs_only(item, &section)?,
            line: item.line,
        })
    }

    fn device_group(&mut self, item: &Item, name: String) -> Result<DeviceGroupConf, ConfError> {
        let mut dg = DeviceGroupConf {
            name,
            attrs: Vec::new(),
            devices: Vec::new(),
            target_groups: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(dg);
        }
        let section = Section {
            line: item.line,
            what: format!("DEVICE_GROUP {}", dg.name),
        };
        let mut devices = Seen::default();
        let mut tgroups = Seen::default();
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::Device) => {
                        let dname = leaf_name(&it, "DEVICE")?;
                        devices.add("DEVICE", &dname, it.line)?;
                        dg.devices.push(DeviceRefConf {
                            name: dname,
                            line: it.line,
                        });
                    }
                    Some(Kw::TargetGroup) => {
                        let tgname = section_name(&it, "TARGET_GROUP")?;
                        tgroups.add("TARGET_GROUP", &tgname, it.line)?;
                        dg.target_groups.push(self.target_group(&it, tgname)?);
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => dg.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(dg)
    }

    fn target_group(&mut self, item: &Item, name: String) -> Result<TargetGroupConf, ConfError> {
        let mut tg = TargetGroupConf {
            name,
            attrs: Vec::new(),
            targets: Vec::new(),
            line: item.line,
        };
        if !item.opens {
            return Ok(tg);
        }
        let section = Section {
            line: item.line,
            what: format!("TARGET_GROUP {}", tg.name),
        };
        let mut targets = Seen::default();
        while let Some(it) = self.next_item(Some(&section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(Kw::Target) => {
                        let tname = section_name(&it, "TARGET")?;
                        targets.add("TARGET", &tname, it.line)?;
                        let tsection = Section {
                            line: it.line,
                            what: format!("TARGET {tname}"),
                        };
                        let attrs = self.attrs_only(&it, &tsection)?;
                        tg.targets.push(TargetRefConf {
                            name: tname,
                            attrs,
                            line: it.line,
                        });
                    }
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => tg.attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(tg)
    }

    /// The optional `{ NAME VALUE ... }` block of a leaf section (DEVICE, LUN, ALUA, a
    /// target-group TARGET): attributes only.
    fn attrs_only(&mut self, item: &Item, section: &Section) -> Result<Vec<Attr>, ConfError> {
        let mut attrs = Vec::new();
        if !item.opens {
            return Ok(attrs);
        }
        while let Some(it) = self.next_item(Some(section))? {
            let r = (|| -> Result<(), ConfError> {
                match it.keyword() {
                    Some(kw) => {
                        return Err(not_allowed(&it, kw, &format!("inside {}", section.what)))
                    }
                    None => attrs.push(attr(&it)?),
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.recover(&it, e)?;
            }
        }
        Ok(attrs)
    }
}

/// `NAME VALUE` or a bare `NAME` (empty value).
fn attr(item: &Item) -> Result<Attr, ConfError> {
    let name = item.head();
    if item.opens {
        return Err(ConfError::new(
            item.line,
            format!("unknown section keyword '{name}'"),
        ));
    }
    if name.is_empty() {
        return Err(ConfError::new(item.line, "empty attribute name"));
    }
    if item.words.len() > 2 {
        return Err(ConfError::new(
            item.line,
            format!("too many values for '{name}' (values with blanks must be in double quotes)"),
        ));
    }
    Ok(Attr {
        name: name.to_string(),
        value: item.words.get(1).cloned().unwrap_or_default(),
        line: item.line,
    })
}

/// `KEYWORD name` optionally opening a block.
fn section_name(item: &Item, kw: &str) -> Result<String, ConfError> {
    let Some(name) = item.words.get(1).filter(|n| !n.is_empty()) else {
        return Err(ConfError::new(item.line, format!("{kw} without a name")));
    };
    if let Some(extra) = item.words.get(2) {
        return Err(unexpected(item.line, extra, &format!("{kw} {name}")));
    }
    Ok(name.clone())
}

/// `KEYWORD name` that may not open a block.
fn leaf_name(item: &Item, kw: &str) -> Result<String, ConfError> {
    let name = section_name(item, kw)?;
    if item.opens {
        return Err(ConfError::new(
            item.line,
            format!("{kw} {name} takes no '{{' block here"),
        ));
    }
    Ok(name)
}

fn lun_number(text: &str, line: usize) -> Result<u16, ConfError> {
    // Digits only: `str::parse` would also take a leading '+'.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfError::new(
            line,
            format!("LUN number '{text}' is not a number"),
        ));
    }
    match text.parse::<u32>() {
        Ok(n) if n <= u32::from(MAX_LUN) => Ok(n as u16),
        _ => Err(ConfError::new(
            line,
            format!("LUN {text} is out of range 0..{MAX_LUN}"),
        )),
    }
}

fn unexpected(line: usize, token: &str, after: &str) -> ConfError {
    ConfError::new(
        line,
        format!("unexpected '{token}' after {after} (values with blanks must be in double quotes)"),
    )
}

fn not_allowed(item: &Item, kw: Kw, place: &str) -> ConfError {
    let word = item.head();
    let hint = match kw {
        Kw::Handler | Kw::TargetDriver | Kw::DeviceGroup | Kw::Alua => {
            " (it belongs at top level; is a '}' missing above?)"
        }
        Kw::Device => " (DEVICE belongs inside HANDLER or DEVICE_GROUP)",
        Kw::Target => " (TARGET belongs inside TARGET_DRIVER or TARGET_GROUP)",
        Kw::HwTarget => " (HW_TARGET belongs inside TARGET)",
        Kw::Lun => " (LUN belongs inside TARGET or GROUP)",
        Kw::Group => " (GROUP belongs inside TARGET)",
        Kw::Initiator => " (INITIATOR belongs inside GROUP)",
        Kw::TargetGroup => " (TARGET_GROUP belongs inside DEVICE_GROUP)",
    };
    ConfError::new(item.line, format!("{word} is not allowed {place}{hint}"))
}
