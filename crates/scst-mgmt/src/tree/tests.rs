//! Each node of the tree against an in-process core with a fake target driver and a
//! fake dev handler: what the tree shows comes from the registered traits, and every
//! failure carries the kind whose errno `last_sysfs_mgmt_res` reports.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use scst_core::cmd::{Cmd, ExecMode, Response};
use scst_core::{
    AttrError, AttrFile, CmdCtx, DevHandler, Device, DeviceEntry, MgmtError, Session,
    SessionEvents, TargetDriver, TransportId,
};

use super::*;

/// A disk whose only attribute is its size, given at creation.
struct FakeDisk {
    name: String,
    size: u64,
}

impl Device for FakeDisk {
    fn name(&self) -> &str {
        &self.name
    }
    fn handler_name(&self) -> &'static str {
        "fake_disk"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn execute(&self, _: &CmdCtx<'_>, _: &mut Cmd, _: ExecMode) -> Option<Response> {
        Some(Response::good())
    }
    fn attributes(&self) -> Vec<(String, String, bool)> {
        vec![("size".into(), self.size.to_string(), true)]
    }
}

struct FakeHandler;

impl DevHandler for FakeHandler {
    fn name(&self) -> &str {
        "fake_disk"
    }
    fn scsi_type(&self) -> u8 {
        0
    }
    fn creation_params(&self) -> &'static [&'static str] {
        &["size"]
    }
    fn create_device(
        &self,
        name: &str,
        params: &[(String, String)],
        _setup_id: u64,
    ) -> Result<Arc<dyn Device>, MgmtError> {
        let mut size = 1;
        for (k, v) in params {
            match k.as_str() {
                "size" => {
                    size = v
                        .parse()
                        .map_err(|_| MgmtError::Invalid(format!("size '{v}' is not a number")))?
                }
                _ => return Err(MgmtError::NotSupported(format!("{k} is not supported"))),
            }
        }
        Ok(Arc::new(FakeDisk {
            name: name.into(),
            size,
        }))
    }
}

/// A driver with one target parameter (`depth`), one dynamic target attribute
/// (`portal`), one computed file, and no driver attributes or driver-level enable.
#[derive(Default)]
struct FakeDriver {
    closes: AtomicUsize,
}

impl TargetDriver for FakeDriver {
    fn name(&self) -> &str {
        "fake"
    }
    fn target_dyn_attrs(&self) -> &'static [&'static str] {
        &["portal"]
    }
    fn target_params(&self) -> &'static [(&'static str, &'static str)] {
        &[("depth", "32")]
    }
    fn validate_target_attr(&self, name: &str, value: &str) -> Result<(), MgmtError> {
        match name {
            "depth" if value.parse::<u32>().is_ok() => Ok(()),
            "depth" => Err(MgmtError::Invalid(format!(
                "depth '{value}' is not a number"
            ))),
            "portal" => Ok(()),
            _ => Err(MgmtError::NotSupported(format!("{name} is not supported"))),
        }
    }
    fn driver_files(&self) -> Vec<AttrFile> {
        vec![AttrFile {
            name: "open_links".into(),
            value: "3".into(),
            key: false,
        }]
    }
}

struct Events(Arc<FakeDriver>, AtomicBool);

impl SessionEvents for Events {
    fn abort_device_tasks(&self, _: &Arc<DeviceEntry>) {}
    fn close(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0
            .closes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn p(s: &str) -> MgmtPath {
    MgmtPath::parse(s).unwrap()
}

/// The tree over a core with the fakes registered; the driver is returned since the
/// core holds drivers weakly.
fn tree() -> (ScstTree, Arc<FakeDriver>) {
    let scst = Scst::new(1);
    scst.register_dev_handler(Arc::new(FakeHandler)).unwrap();
    let driver = Arc::new(FakeDriver::default());
    scst.register_target_driver(&driver).unwrap();
    (ScstTree::new(scst, 0x12), driver)
}

fn read(t: &ScstTree, path: &str) -> String {
    t.read(&p(path)).unwrap_or_else(|e| panic!("{e}"))
}

fn write(t: &ScstTree, path: &str, value: &str) {
    t.write(&p(path), value).unwrap_or_else(|e| panic!("{e}"))
}

/// The failure of a write, with what `last_sysfs_mgmt_res` says of it.
fn refused(t: &ScstTree, path: &str, value: &str) -> (ErrorKind, String, i32) {
    let e = t.write(&p(path), value).unwrap_err();
    let res: i32 = read(t, "last_sysfs_mgmt_res").parse().unwrap();
    (e.kind, e.message, res)
}

#[test]
fn registered_drivers_and_handlers_are_the_tree() {
    let (t, driver) = tree();
    assert_eq!(t.list(&p("targets")).unwrap(), vec!["fake/"]);
    assert_eq!(t.list(&p("handlers")).unwrap(), vec!["fake_disk/"]);
    assert_eq!(
        t.list(&p("targets/fake")).unwrap(),
        vec!["mgmt", "open_links"]
    );
    assert_eq!(read(&t, "targets/fake/open_links"), "3");
    // No driver-level enable: no file, rather than one that refuses writes.
    assert_eq!(
        t.read(&p("targets/fake/enabled")).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(read(&t, "handlers/fake_disk/mgmt").contains("available: size."));
    assert_eq!(
        read(&t, "handlers/fake_disk/type"),
        "0 - Direct-access device (e.g., magnetic disk)"
    );
    // The help text follows what the driver declares: no driver attributes here.
    let help = read(&t, "targets/fake/mgmt");
    assert!(help.contains("add_target_attribute") && !help.contains("add_attribute <"));
    assert_eq!(read(&t, "setup_id"), "0x12\n[key]");
    // A driver that goes away leaves targets/.
    drop(driver);
    assert!(t.list(&p("targets")).unwrap().is_empty());
    assert_eq!(
        t.read(&p("targets/fake/mgmt")).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn device_node() {
    let (t, _driver) = tree();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1 size=8");
    assert_eq!(t.list(&p("devices")).unwrap(), vec!["d1/"]);
    assert_eq!(
        t.list(&p("devices/d1")).unwrap(),
        vec![
            "handler",
            "type",
            "size",
            "pr_file_name",
            "pr_state",
            "block",
            "threads_num",
            "threads_pool_type",
            "statistics/"
        ]
    );
    // SCST's core device attributes scst-rs fixes: shown, compared, never written.
    assert_eq!(read(&t, "devices/d1/block"), "0 0");
    assert_eq!(read(&t, "devices/d1/threads_pool_type"), "shared");
    assert_eq!(
        refused(&t, "devices/d1/threads_num", "4").0,
        ErrorKind::ReadOnly
    );
    // No state directory and no file given: no APTPL file, nothing to save.
    assert_eq!(read(&t, "devices/d1/pr_file_name"), "");
    assert_eq!(
        refused(&t, "devices/d1/pr_file_name", "/x").0,
        ErrorKind::ReadOnly
    );
    assert_eq!(read(&t, "devices/d1/size"), "8\n[key]");
    assert_eq!(read(&t, "handlers/fake_disk/d1/handler"), "fake_disk");
    assert_eq!(
        t.list(&p("handlers/fake_disk")).unwrap(),
        vec!["mgmt", "type", "d1/"]
    );
    assert_eq!(
        refused(&t, "devices/d1/handler", "x"),
        (
            ErrorKind::ReadOnly,
            "devices/d1/handler: no such writable attribute".into(),
            -13
        )
    );
    assert_eq!(refused(&t, "devices/d1/colour", "x").2, -2);
    assert_eq!(
        refused(&t, "handlers/fake_disk/mgmt", "add_device d1"),
        (
            ErrorKind::Exists,
            "handlers/fake_disk/mgmt: device 'd1' already exists".into(),
            -17
        )
    );
    let (kind, msg, res) = refused(&t, "handlers/fake_disk/mgmt", "add_device d2 size=big");
    assert_eq!((kind, res), (ErrorKind::Invalid, -22));
    assert_eq!(msg, "handlers/fake_disk/mgmt: size 'big' is not a number");
    // What the handler does not support is refused as such, never ignored.
    assert_eq!(
        refused(&t, "handlers/fake_disk/mgmt", "add_device d2 colour=red").2,
        -38
    );
    assert_eq!(
        refused(&t, "handlers/fake_disk/mgmt", "add_attribute a b").1,
        "handlers/fake_disk/mgmt: add_attribute: fake_disk declares no optional attributes"
    );
    assert_eq!(t.list(&p("devices")).unwrap(), vec!["d1/"]);
    // A device attribute the device refuses to change keeps the kind of its refusal.
    assert_eq!(
        refused(&t, "devices/d1/size", "16"),
        (
            ErrorKind::ReadOnly,
            "devices/d1/size: device d1: attribute size is unknown or read-only".into(),
            -13
        )
    );
    write(&t, "handlers/fake_disk/mgmt", "del_device d1");
    assert_eq!(read(&t, "last_sysfs_mgmt_res"), "0");
    assert!(t.list(&p("devices")).unwrap().is_empty());
}

#[test]
fn target_driver_and_target_nodes() {
    let (t, _driver) = tree();
    let mgmt = "targets/fake/mgmt";
    write(&t, mgmt, "add_target t1 depth=4; rel_tgt_id=9");
    assert_eq!(read(&t, "targets/fake/t1/depth"), "4\n[key]");
    assert_eq!(read(&t, "targets/fake/t1/rel_tgt_id"), "9\n[key]");
    assert_eq!(
        t.list(&p("targets/fake/t1")).unwrap(),
        vec![
            "enabled",
            "rel_tgt_id",
            "addr_method",
            "depth",
            "luns/",
            "ini_groups/",
            "sessions/",
            "statistics/"
        ]
    );
    // A parameter the driver does not support refuses the whole target.
    let (kind, msg, res) = refused(&t, mgmt, "add_target t2 colour=red");
    assert_eq!((kind, res), (ErrorKind::NotSupported, -38));
    assert_eq!(msg, "targets/fake/mgmt: target t2: colour is not supported");
    assert!(t.scst().target("fake", "t2").is_none());
    assert_eq!(refused(&t, mgmt, "add_target t1").2, -17);
    assert_eq!(refused(&t, mgmt, "del_target nope").2, -2);
    // Driver-level capabilities it lacks.
    assert_eq!(refused(&t, "targets/fake/enabled", "0").2, -2);
    assert_eq!(
        refused(&t, mgmt, "add_attribute IncomingUser a b").1,
        "targets/fake/mgmt: 'IncomingUser' is not a dynamic driver attribute ()"
    );
    assert_eq!(
        refused(&t, "targets/fake/open_links", "0").1,
        "targets/fake/open_links: not supported yet"
    );
    // Parameters: defaults, validated writes, :default:.
    let depth = "targets/fake/t1/depth";
    assert_eq!(refused(&t, depth, "deep").2, -22);
    write(&t, depth, ":default:");
    assert_eq!(read(&t, depth), "32");
    // Dynamic attributes.
    write(&t, mgmt, "add_target_attribute t1 portal 10.0.0.1");
    write(&t, mgmt, "add_target_attribute t1 portal 10.0.0.2");
    assert_eq!(read(&t, "targets/fake/t1/portal1"), "10.0.0.2\n[key]");
    assert_eq!(
        refused(&t, mgmt, "add_target_attribute t1 portal 10.0.0.2").2,
        -17
    );
    assert_eq!(
        refused(&t, mgmt, "del_target_attribute t1 portal 10.9.9.9").2,
        -2
    );
    assert!(refused(&t, "targets/fake/t1/portal", "x")
        .1
        .contains("add_target_attribute/del_target_attribute on targets/fake/mgmt"));
    write(&t, "targets/fake/t1/enabled", "1");
    assert_eq!(read(&t, "targets/fake/t1/enabled"), "1\n[key]");
    assert_eq!(refused(&t, "targets/fake/t1/rel_tgt_id", "x").2, -22);
    write(&t, mgmt, "del_target t1");
    assert_eq!(t.list(&p("targets/fake")).unwrap().len(), 2);
}

#[test]
fn luns_and_ini_group_nodes() {
    let (t, _driver) = tree();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1");
    write(&t, "targets/fake/mgmt", "add_target t");
    write(&t, "targets/fake/t/luns/mgmt", "add d1 0");
    assert_eq!(
        t.list(&p("targets/fake/t/luns")).unwrap(),
        vec!["mgmt", "0/"]
    );
    assert_eq!(read(&t, "targets/fake/t/luns/0/device"), "d1");
    assert_eq!(refused(&t, "targets/fake/t/luns/mgmt", "add d9 1").2, -2);
    write(&t, "targets/fake/t/ini_groups/mgmt", "create g");
    assert_eq!(
        refused(&t, "targets/fake/t/ini_groups/mgmt", "create g").2,
        -17
    );
    write(
        &t,
        "targets/fake/t/ini_groups/g/luns/mgmt",
        "add d1 3 read_only=1",
    );
    assert_eq!(
        read(&t, "targets/fake/t/ini_groups/g/luns/3/read_only"),
        "1"
    );
    write(
        &t,
        "targets/fake/t/ini_groups/g/initiators/mgmt",
        "add iqn.i:*",
    );
    assert_eq!(
        t.list(&p("targets/fake/t/ini_groups/g/initiators"))
            .unwrap(),
        vec!["mgmt", "iqn.i:*"]
    );
    write(&t, "targets/fake/t/ini_groups/g/addr_method", "lun");
    assert_eq!(
        read(&t, "targets/fake/t/ini_groups/g/addr_method"),
        "LUN\n[key]"
    );
    // A device a LUN uses is busy.
    let (kind, _, res) = refused(&t, "handlers/fake_disk/mgmt", "del_device d1");
    assert_eq!((kind, res), (ErrorKind::Busy, -16));
    assert_eq!(
        refused(&t, "targets/fake/t/ini_groups/g/luns/mgmt", "bogus").2,
        -22
    );
}

#[test]
fn session_node() {
    let (t, driver) = tree();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1");
    write(&t, "targets/fake/mgmt", "add_target t");
    write(&t, "targets/fake/t/luns/mgmt", "add d1 0");
    let target = t.scst().target("fake", "t").unwrap();
    let events = Arc::new(Events(driver.clone(), AtomicBool::new(false)));
    let tid = |isid| TransportId::Iscsi {
        name: "iqn.i".into(),
        isid: Some([0x40, 0, 0, 0, 0, isid]),
    };
    let s1: Arc<Session> = t.scst().register_session(&target, tid(1), events.clone());
    let _s2 = t.scst().register_session(&target, tid(2), events.clone());
    assert_eq!(
        t.list(&p("targets/fake/t/sessions")).unwrap(),
        vec!["iqn.i/", "iqn.i_1/"]
    );
    assert_eq!(
        read(&t, "targets/fake/t/sessions/iqn.i/initiator_name"),
        "iqn.i"
    );
    assert_eq!(read(&t, "targets/fake/t/sessions/iqn.i/luns"), "luns");
    assert!(t
        .list(&p("targets/fake/t/sessions/iqn.i"))
        .unwrap()
        .contains(&"lun0/".to_string()));
    assert_eq!(
        read(&t, "targets/fake/t/sessions/iqn.i/lun0/active_commands"),
        "0"
    );
    assert_eq!(
        t.read(&p("targets/fake/t/sessions/iqn.i/force_close"))
            .unwrap_err()
            .message,
        "targets/fake/t/sessions/iqn.i/force_close: write-only"
    );
    let counter = "targets/fake/t/sessions/iqn.i/read_cmd_count";
    assert_eq!(read(&t, counter), "0");
    assert_eq!(
        refused(&t, counter, "5").1,
        format!("{counter}: only 0 may be written (it resets the session's statistics)")
    );
    write(&t, counter, "0");
    write(&t, "targets/fake/t/sessions/iqn.i/force_close", "1");
    assert_eq!(driver.closes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        refused(&t, "targets/fake/t/sessions/nobody/force_close", "1").2,
        -2
    );
    drop(s1);
}

#[test]
fn device_group_node_sees_targets_of_any_driver() {
    let (t, _driver) = tree();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1");
    write(&t, "targets/fake/mgmt", "add_target t");
    write(&t, "device_groups/mgmt", "create dg");
    write(&t, "device_groups/dg/devices/mgmt", "add d1");
    write(&t, "device_groups/dg/target_groups/mgmt", "create tg");
    write(&t, "device_groups/dg/target_groups/tg/mgmt", "add t");
    write(
        &t,
        "device_groups/dg/target_groups/tg/mgmt",
        "add remote rel_tgt_id=40",
    );
    // A local target's id is its live one (not configuration); a remote one's is.
    assert_eq!(
        read(&t, "device_groups/dg/target_groups/tg/t/rel_tgt_id"),
        "1"
    );
    assert_eq!(
        read(&t, "device_groups/dg/target_groups/tg/remote/rel_tgt_id"),
        "40\n[key]"
    );
    assert_eq!(
        refused(&t, "device_groups/dg/target_groups/tg/state", "sleepy").2,
        -22
    );
    assert_eq!(refused(&t, "device_groups/mgmt", "create dg").2, -17);
    assert_eq!(
        refused(&t, "device_groups/dg/devices/d1", "x").1,
        "device_groups/dg/devices/d1: not supported yet"
    );
}

#[test]
fn root_node() {
    let (t, _driver) = tree();
    assert_eq!(
        t.list(&p("")).unwrap()[..3],
        ["version", "setup_id", "threads"]
    );
    assert_eq!(read(&t, "threads"), DEFAULT_IO_THREADS.to_string());
    let t = t.with_io_threads(4, true);
    assert_eq!(read(&t, "threads"), "4\n[key]");
    assert_eq!(refused(&t, "threads", "2").0, ErrorKind::ReadOnly);
    assert_eq!(refused(&t, "version", "2").2, -38);
    assert_eq!(refused(&t, "nope", "2").2, -2);
    assert_eq!(refused(&t, "async_lun_replace", "2").2, -22);
    write(&t, "async_lun_replace", "1");
    assert_eq!(read(&t, "async_lun_replace"), "1\n[key]");
}

#[test]
fn pr_file_name_is_given_at_creation_and_kept_as_a_key() {
    let (t, _driver) = tree();
    write(
        &t,
        "handlers/fake_disk/mgmt",
        "add_device d1 size=8; pr_file_name=/var/lib/x/d1.pr",
    );
    // Not the default place: -write_config must keep it.
    assert_eq!(
        read(&t, "devices/d1/pr_file_name"),
        "/var/lib/x/d1.pr\n[key]"
    );
    let (kind, msg, res) = refused(
        &t,
        "handlers/fake_disk/mgmt",
        "add_device d2 pr_file_name=rel.pr",
    );
    assert_eq!((kind, res), (ErrorKind::Invalid, -22));
    assert!(
        msg.contains("pr_file_name must be an absolute path"),
        "{msg}"
    );
    assert!(t.scst().device("d2").is_err());
}

#[test]
fn pr_dump_dir_exists_only_where_the_attribute_table_gives_it() {
    let (t, _driver) = tree();
    // fake_disk is not one of SCST's handlers: no pr_dump_dir file to read or write.
    assert!(!t
        .list(&p("handlers/fake_disk"))
        .unwrap()
        .contains(&"pr_dump_dir".to_string()));
    assert_eq!(
        t.read(&p("handlers/fake_disk/pr_dump_dir"))
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_eq!(refused(&t, "handlers/fake_disk/pr_dump_dir", "/d").2, -2);
}

#[test]
fn attribute_refusals_keep_their_kind() {
    let kind = |e: AttrError| kind_of(&MgmtError::Attribute(e));
    let (device, attr, reason) = (String::new, || "a".to_string(), String::new);
    assert_eq!(
        kind(AttrError::NotWritable {
            device: device(),
            attr: attr()
        }),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        kind(AttrError::CreationOnly {
            device: device(),
            attr: attr()
        }),
        ErrorKind::ReadOnly
    );
    let invalid = AttrError::Invalid {
        device: device(),
        attr: attr(),
        reason: reason(),
    };
    assert_eq!(kind(invalid), ErrorKind::Invalid);
    let busy = AttrError::Busy {
        device: device(),
        reason: reason(),
    };
    assert_eq!(kind(busy), ErrorKind::Busy);
    let backend = AttrError::Backend {
        device: device(),
        attr: attr(),
        reason: reason(),
    };
    assert_eq!(kind(backend), ErrorKind::Internal);
}

#[test]
fn attributes_scst_rs_lacks_are_refused_as_not_supported_before_any_node() {
    let (t, _driver) = tree();
    let (kind, msg, res) = refused(&t, "cluster_name", "c1");
    assert_eq!((kind, res), (ErrorKind::NotSupported, -38));
    assert!(
        msg.starts_with("cluster_name: attribute 'cluster_name' "),
        "{msg}"
    );
    assert!(msg.contains("not supported"), "{msg}");
    // The default of one scst-rs behaves as anyway is accepted and changes nothing.
    write(&t, "poll_us", "0");
    assert_eq!(read(&t, "last_sysfs_mgmt_res"), "0");
    assert_eq!(refused(&t, "poll_us", "1").0, ErrorKind::NotSupported);
}

struct NoCompletions;

impl scst_core::CompletionQueue for NoCompletions {
    fn push(&self, _: u64, _: Response) {}
}

#[test]
fn lun_counters_and_the_latency_tree() {
    let (t, driver) = tree();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1");
    write(&t, "targets/fake/mgmt", "add_target t");
    write(&t, "targets/fake/t/luns/mgmt", "add d1 0");
    let target = t.scst().target("fake", "t").unwrap();
    let events = Arc::new(Events(driver.clone(), AtomicBool::new(false)));
    let tid = TransportId::Iscsi {
        name: "iqn.i".into(),
        isid: Some([0x40, 0, 0, 0, 0, 1]),
    };
    let s = t.scst().register_session(&target, tid, events);
    let mut nexus: scst_core::Nexus<()> =
        scst_core::Nexus::new(t.scst().clone(), s.clone(), Arc::new(NoCompletions));
    write(&t, "measure_latency", "1");
    assert_eq!(read(&t, "measure_latency"), "1\n[key]");
    // A READ(10) of 8 blocks of 512 bytes, three times; the first meets the power-on UA.
    for tag in 0..3 {
        let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
        let cmd = Cmd {
            cdb: scst_core::Cdb::new(&cdb).unwrap(),
            lun: 0,
            tag,
            attr: scst_core::TaskAttr::Simple,
            data_out: Vec::new(),
            expected_in: 4096,
        };
        nexus.submit(tag, cmd, ());
        while nexus.poll_event().is_some() {}
        // The responses are "sent": their latency ends.
        nexus.end_turn();
    }
    let sess = "targets/fake/t/sessions/iqn.i";
    assert_eq!(read(&t, &format!("{sess}/lun0/read_cmd_count")), "3");
    assert_eq!(read(&t, &format!("{sess}/lun0/read_io_count_kb")), "12");
    assert_eq!(read(&t, &format!("{sess}/lun0/error_cmd_count")), "1");
    assert_eq!(read(&t, &format!("{sess}/lun0/none_cmd_count")), "0");
    let files = t.list(&p(&format!("{sess}/latency"))).unwrap();
    assert_eq!(files.len(), 44);
    assert_eq!(files[..4], ["n512", "r512", "w512", "b512"]);
    let r4096 = read(&t, &format!("{sess}/latency/r4096"));
    let lines: Vec<&str> = r4096.lines().collect();
    assert_eq!(lines[0], "state count min max avg stddev");
    assert!(lines[1].starts_with("RECEIVED_TO_DONE 3 "), "{r4096}");
    assert!(lines[2].starts_with("total 3 - - "), "{r4096}");
    assert_eq!(read(&t, &format!("{sess}/lun0/latency/r4096")), r4096);
    assert_eq!(
        read(&t, &format!("{sess}/latency/w4096")),
        "state count min max avg stddev\n"
    );
    // Writing to a latency file clears the session's table; counters stay.
    write(&t, &format!("{sess}/latency/r4096"), "0");
    assert_eq!(
        read(&t, &format!("{sess}/latency/r4096")),
        "state count min max avg stddev\n"
    );
    assert_eq!(read(&t, &format!("{sess}/lun0/read_cmd_count")), "3");
    assert_eq!(refused(&t, &format!("{sess}/latency/r4095"), "0").2, -2);
    write(&t, "measure_latency", "0");
    assert_eq!(read(&t, "measure_latency"), "0");
    // Device and target totals, which keep a gone session's counts.
    let dev_reads = "devices/d1/statistics/read_cmd_count";
    let tgt_kb = "targets/fake/t/statistics/read_io_count_kb";
    assert_eq!(read(&t, dev_reads), "3");
    assert_eq!(read(&t, tgt_kb), "12");
    assert!(t
        .list(&p("devices/d1"))
        .unwrap()
        .contains(&"statistics/".to_string()));
    assert_eq!(t.list(&p("targets/fake/t/statistics")).unwrap().len(), 8);
    assert_eq!(refused(&t, dev_reads, "0").0, ErrorKind::ReadOnly);
    assert_eq!(
        refused(&t, "targets/fake/t/statistics/read_cmd_count", "0").0,
        ErrorKind::ReadOnly
    );
    assert_eq!(
        refused(&t, &format!("{sess}/lun0/read_cmd_count"), "0").0,
        ErrorKind::ReadOnly
    );
    drop(nexus);
    drop(s);
    assert_eq!(read(&t, dev_reads), "3");
    assert_eq!(read(&t, tgt_kb), "12");
    assert_eq!(read(&t, "targets/fake/t/statistics/error_cmd_count"), "1");
}

#[test]
fn copy_manager_node() {
    let (t, _driver) = tree();
    scst_core::CopyManager::register(&t.scst).unwrap();
    write(&t, "handlers/fake_disk/mgmt", "add_device d1 size=8");
    write(&t, "handlers/fake_disk/mgmt", "add_device d2 size=8");
    let cm = "targets/copy_manager/copy_manager_tgt";
    let luns = |t: &ScstTree| -> Vec<(String, String)> {
        t.list(&p(&format!("{cm}/luns")))
            .unwrap()
            .iter()
            .filter_map(|n| n.strip_suffix('/'))
            .map(|n| (n.to_string(), read(t, &format!("{cm}/luns/{n}/device"))))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // New devices are registered at the lowest free LUN.
    assert_eq!(luns(&t), pairs(&[("0", "d1"), ("1", "d2")]));
    // Never enabled: no `enabled`, relative target port id 0, not a key.
    assert!(!t.list(&p(cm)).unwrap().iter().any(|n| n == "enabled"));
    assert_eq!(read(&t, &format!("{cm}/rel_tgt_id")), "0");
    // `add` moves a device; the one that held the LUN moves to the lowest free one.
    write(&t, &format!("{cm}/luns/mgmt"), "add d2 0");
    assert_eq!(luns(&t), pairs(&[("0", "d2"), ("1", "d1")]));
    write(&t, &format!("{cm}/luns/mgmt"), "add d2 0");
    assert_eq!(luns(&t), pairs(&[("0", "d2"), ("1", "d1")]));
    let (kind, msg, res) = refused(&t, &format!("{cm}/luns/mgmt"), "add d1 5 read_only=1");
    assert_eq!((kind, res), (ErrorKind::NotSupported, -38), "{msg}");
    assert!(msg.contains("read-only LUNs"), "{msg}");
    let (kind, msg, _) = refused(&t, &format!("{cm}/ini_groups/mgmt"), "create g");
    assert_eq!(kind, ErrorKind::NotSupported, "{msg}");
    assert!(msg.contains("security groups"), "{msg}");
    for cmd in ["add_target x", "del_target copy_manager_tgt"] {
        let (kind, msg, _) = refused(&t, "targets/copy_manager/mgmt", cmd);
        assert_eq!(kind, ErrorKind::NotSupported, "{cmd}: {msg}");
    }
    // allow_not_connected_copy: 0 by default, a key attribute when 1.
    let allow = "targets/copy_manager/allow_not_connected_copy";
    assert_eq!(read(&t, allow), "0");
    write(&t, allow, "1");
    assert_eq!(read(&t, allow), "1\n[key]");
    assert_eq!(refused(&t, allow, "yes").0, ErrorKind::Invalid);
    // A deleted device leaves the list; one still exported stays in it.
    write(&t, "targets/fake/mgmt", "add_target t1");
    write(&t, "targets/fake/t1/luns/mgmt", "add d2 0");
    assert_eq!(
        refused(&t, "handlers/fake_disk/mgmt", "del_device d2").0,
        ErrorKind::Busy
    );
    write(&t, "handlers/fake_disk/mgmt", "del_device d1");
    assert_eq!(luns(&t), pairs(&[("0", "d2")]));
}
