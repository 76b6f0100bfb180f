//! Backing files that cannot serve: what is not a regular file or block device
//! (/dev/zero, /dev/null, a directory, a FIFO) or is smaller than one block is refused
//! when the device is created, with the device and the reason named, through every
//! way of creating one (scstd's start-up, the management tree, `scstadmin -config`),
//! and nothing is changed. A backing file that shrinks under a live LUN: reads past
//! its new end get ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (not data, not
//! a medium error), and `resync_size` reports the new capacity with CAPACITY DATA HAS
//! CHANGED.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{fileio_fixture, Daemon, INITIATOR, IQN};
use scsi_wire::asc::{self, Asc};
use scst_mgmt::Client;
use test_support::{Initiator, LoginOptions};

const BS: u32 = 512;
const REASON_TYPE: &str = "not a regular file or block device";

/// Unusable backing files in `dir`, each with the reason its refusal gives.
fn unusable(dir: &Path) -> Vec<(PathBuf, String)> {
    let fifo = dir.join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success(), "mkfifo");
    let empty = dir.join("empty.img");
    std::fs::File::create(&empty).expect("empty file");
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).expect("directory");
    vec![
        (
            "/dev/zero".into(),
            format!("is a character device, {REASON_TYPE}"),
        ),
        (
            "/dev/null".into(),
            format!("is a character device, {REASON_TYPE}"),
        ),
        (sub, format!("is a directory, {REASON_TYPE}")),
        (fifo, format!("is a FIFO, {REASON_TYPE}")),
        (empty, "holds 0 bytes, less than one block of 512".into()),
    ]
}

fn config(devices: &[(&str, &str, &Path)]) -> String {
    let mut text = String::new();
    for (handler, name, path) in devices {
        text += &format!(
            "HANDLER {handler} {{\n\tDEVICE {name} {{\n\t\tfilename {}\n\t}}\n}}\n",
            path.display()
        );
    }
    text += &format!(
        "TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 {}\n\
         \t\tenabled 1\n\t}}\n}}\n",
        devices[0].1
    );
    text
}

#[test]
fn start_up_refuses_a_backing_file_that_cannot_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    for handler in ["vdisk_fileio", "vdisk_blockio"] {
        for (path, why) in unusable(&tempfile::tempdir_in(dir.path()).unwrap().keep()) {
            let conf = dir.path().join("scst.conf");
            std::fs::write(&conf, config(&[(handler, "bad", &path)])).expect("config");
            let out = Command::new(env!("CARGO_BIN_EXE_scstd"))
                .arg("--config")
                .arg(&conf)
                .args(["--listen", "127.0.0.1:0", "--mgmt-socket"])
                .arg(dir.path().join("scstd.sock"))
                .output()
                .expect("run scstd");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{handler} {}: started",
                path.display()
            );
            let expected = format!("device bad: filename {}: {why}", path.display());
            assert!(err.contains(&expected), "{handler}: {err}");
            assert!(
                err.contains("DEVICE bad"),
                "names the config's object: {err}"
            );
            assert!(
                !err.contains("portal listening"),
                "nothing was served: {err}"
            );
        }
    }
}

#[test]
fn the_tree_and_scstadmin_refuse_a_backing_file_that_cannot_serve() {
    let f = fileio_fixture(4 << 20, "");
    let d = Daemon::start(&f.conf);
    let mut c = Client::connect(&d.mgmt_socket).expect("mgmt");
    let before = c.list("devices").expect("list");
    let scratch = tempfile::tempdir().expect("tempdir");
    for handler in ["vdisk_fileio", "vdisk_blockio"] {
        for (path, why) in unusable(&tempfile::tempdir_in(scratch.path()).unwrap().keep()) {
            let e = c
                .write(
                    &format!("handlers/{handler}/mgmt"),
                    &format!("add_device bad filename={}", path.display()),
                )
                .expect_err("refused");
            let msg = e.to_string();
            let expected = format!("device bad: filename {}: {why}", path.display());
            assert!(msg.contains(&expected), "{handler}: {msg}");
        }
    }
    assert_eq!(c.list("devices").expect("list"), before, "nothing changed");

    // scstadmin -config goes the same way: refused, named, nothing applied.
    let fifo = &unusable(&tempfile::tempdir_in(scratch.path()).unwrap().keep())[3].0;
    let conf = scratch.path().join("bad.conf");
    let text = format!(
        "HANDLER vdisk_fileio {{\n\tDEVICE disk1 {{\n\t\tfilename {}\n\t}}\n\
         \tDEVICE bad {{\n\t\tfilename {}\n\t}}\n}}\n\
         TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 disk1\n\
         \t\tenabled 1\n\t}}\n}}\n",
        f.disk.display(),
        fifo.display()
    );
    std::fs::write(&conf, text).expect("config");
    let out = common::admin(&d, &["-config", conf.to_str().unwrap(), "-noprompt"]);
    assert!(!out.status.success(), "scstadmin -config applied a FIFO");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "device bad: filename {}: is a FIFO, {REASON_TYPE}",
        fifo.display()
    );
    assert!(all.contains(&expected), "{all}");
    assert_eq!(c.list("devices").expect("list"), before, "nothing changed");

    // The LUN that was there serves on.
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    clear_ua(&mut i, 0);
    assert!(i.read16(0, 0, 1, BS).expect("read").is_good());
}

fn clear_ua(i: &mut Initiator, lun: u16) {
    let r = i.test_unit_ready(lun).expect("TUR");
    if !r.is_good() {
        assert!(i.test_unit_ready(lun).expect("TUR").is_good());
    }
}

fn sense(r: &test_support::ScsiResult) -> Option<(u8, Asc)> {
    r.sense_key_asc_ascq()
        .map(|(k, code, qualifier)| (k, Asc { code, qualifier }))
}

const ILLEGAL_REQUEST: u8 = 0x05;
const UNIT_ATTENTION: u8 = 0x06;

#[test]
fn a_backing_file_that_shrinks_under_a_lun() {
    // On a disk filesystem: writes that complete inline (tmpfs, RWF_NOWAIT buffered
    // writes) are not checked against the file's end, one fstat per write being as
    // dear as the write itself there.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let size = 8u64 << 20;
    let files: Vec<PathBuf> = ["f.img", "b.img"]
        .iter()
        .map(|n| {
            let p = dir.path().join(n);
            std::fs::write(&p, vec![0x5a; size as usize]).expect("backing file");
            p
        })
        .collect();
    let conf = dir.path().join("scst.conf");
    // LUN 0 through the page cache, LUN 1 with O_DIRECT.
    std::fs::write(
        &conf,
        format!(
            "HANDLER vdisk_fileio {{\n\tDEVICE f {{\n\t\tfilename {}\n\t}}\n}}\n\
             HANDLER vdisk_blockio {{\n\tDEVICE b {{\n\t\tfilename {}\n\t}}\n}}\n\
             TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {IQN} {{\n\t\tLUN 0 f\n\
             \t\tLUN 1 b\n\t\tenabled 1\n\t}}\n}}\n",
            files[0].display(),
            files[1].display()
        ),
    )
    .expect("config");
    let d = Daemon::start(&conf);
    let mut i = Initiator::connect(d.addr).expect("connect");
    i.set_timeout(Duration::from_secs(30));
    i.login(INITIATOR, IQN, &LoginOptions::default())
        .expect("login");
    let mut c = Client::connect(&d.mgmt_socket).expect("mgmt");
    let old_blocks = size / BS as u64;
    let new_size = 3u64 << 20;
    let new_blocks = new_size / BS as u64;
    for (lun, (name, file)) in [("f", &files[0]), ("b", &files[1])].into_iter().enumerate() {
        let lun = lun as u16;
        clear_ua(&mut i, lun);
        assert_eq!(i.capacity(lun).expect("capacity"), (old_blocks, BS));
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|f| f.set_len(new_size))
            .expect("truncate");
        // Past the new end: out of range, not zeros, not a medium error.
        for lba in [new_blocks, new_blocks + 7, old_blocks - 8] {
            let r = i.read16(lun, lba, 8, BS).expect("read");
            assert_eq!(
                sense(&r),
                Some((ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)),
                "{name}: read at {lba}: {r:?}"
            );
        }
        // Straddling the new end as well.
        let r = i.read16(lun, new_blocks - 4, 8, BS).expect("read");
        assert_eq!(
            sense(&r),
            Some((ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE))
        );
        // Writes past it too: the file does not grow back behind the device's back.
        let r = i
            .write16(lun, new_blocks + 16, &[0xa5; BS as usize * 8], BS)
            .expect("write");
        assert_eq!(
            sense(&r),
            Some((ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)),
            "{name}: write past the new end: {r:?}"
        );
        let len = std::fs::metadata(file).expect("stat").len();
        assert_eq!(len, new_size, "{name}: nothing was written past the end");
        // Before it, the data is there.
        let r = i.read16(lun, new_blocks - 8, 8, BS).expect("read");
        assert!(r.is_good(), "{name}: {r:?}");
        assert!(r.data.iter().all(|&b| b == 0x5a), "{name}: data intact");

        c.write(&format!("devices/{name}/resync_size"), "1")
            .expect("resync_size");
        let r = i.test_unit_ready(lun).expect("TUR");
        assert_eq!(
            sense(&r),
            Some((UNIT_ATTENTION, asc::CAPACITY_DATA_HAS_CHANGED)),
            "{name}: {r:?}"
        );
        assert_eq!(i.capacity(lun).expect("capacity"), (new_blocks, BS));
        let r = i.read16(lun, new_blocks, 1, BS).expect("read");
        assert_eq!(
            sense(&r),
            Some((ILLEGAL_REQUEST, asc::LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE))
        );
        let r = i.read16(lun, new_blocks - 1, 1, BS).expect("read");
        assert!(r.is_good(), "{name}: the last block reads");
    }
    assert!(
        d.log().contains("it shrank under the device"),
        "the log says what happened"
    );
}
