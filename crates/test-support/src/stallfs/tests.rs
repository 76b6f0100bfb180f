use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::mpsc;
use std::thread;

use super::*;

/// A mounted file system on a fresh directory. Never skipped: without root and
/// /dev/fuse the tests fail, saying so.
fn mounted(size: u64) -> Option<(tempfile::TempDir, StallFs)> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && Path::new("/dev/fuse").exists(),
        "mounting FUSE needs root and /dev/fuse"
    );
    let dir = tempfile::tempdir().expect("a scratch directory");
    let fs = match StallFs::mount(dir.path(), "disk.img", size) {
        Ok(fs) => fs,
        Err(e) => panic!("mount the stall file system: {e}"),
    };
    Some((dir, fs))
}

fn open(fs: &StallFs) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(fs.path())
        .expect("open the served file")
}

#[test]
fn serves_one_file_of_the_given_size() {
    let Some((dir, fs)) = mounted(1 << 20) else {
        return;
    };
    assert_eq!(std::fs::metadata(fs.path()).unwrap().len(), 1 << 20);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["disk.img"]);
    let f = open(&fs);
    f.write_all_at(b"hello", 4096).unwrap();
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 4096).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(fs.read_at(4096, 5), b"hello");
    // Fixed size, like a disk.
    assert!(f.write_all_at(b"x", 1 << 20).is_err());
    assert_eq!(fs.open_handles(), 1);
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs.open_handles() != 0 {
        assert!(
            Instant::now() < deadline,
            "the close reached the file system"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stalled_read_waits_until_unstalled() {
    let Some((_dir, fs)) = mounted(1 << 20) else {
        return;
    };
    fs.write_at(8192, b"stalled data");
    fs.stall();
    let f = open(&fs);
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 12];
        let r = f.read_exact_at(&mut buf, 8192).map(|()| buf);
        tx.send(r).unwrap();
    });
    assert!(
        fs.wait_blocked(1, Duration::from_secs(5)),
        "the read reached the file system"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the read stays blocked"
    );
    assert_eq!(fs.blocked(), 1);
    fs.unstall();
    let buf = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("released")
        .unwrap();
    assert_eq!(&buf, b"stalled data");
    assert_eq!(fs.blocked(), 0);
    reader.join().unwrap();
}

/// Run `op` on a thread while stalled; it must reach the file system and stay there
/// until unstalled. Returns its result.
fn held_until_unstalled<T: Send + 'static>(
    fs: &StallFs,
    op: impl FnOnce() -> T + Send + 'static,
) -> T {
    fs.stall();
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || tx.send(op()).unwrap());
    assert!(
        fs.wait_blocked(1, Duration::from_secs(5)),
        "it reached the file system"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "it stays blocked"
    );
    fs.unstall();
    let r = rx.recv_timeout(Duration::from_secs(5)).expect("released");
    t.join().unwrap();
    r
}

#[test]
fn writes_and_fsyncs_are_held_too() {
    let Some((_dir, fs)) = mounted(1 << 20) else {
        return;
    };
    let f = open(&fs);
    let g = f.try_clone().unwrap();
    let shared = Arc::clone(&fs.shared);
    let wrote = held_until_unstalled(&fs, move || {
        let r = f.write_all_at(&[7; 4096], 0);
        // Checked from inside: the bytes land only once the write is answered.
        (r.is_ok(), shared.data()[0])
    });
    assert_eq!(wrote, (true, 7));
    assert_eq!(fs.read_at(0, 4096), vec![7; 4096]);
    assert!(held_until_unstalled(&fs, move || g.sync_all().is_ok()));
}

#[test]
fn concurrent_reads_are_all_counted() {
    let Some((_dir, fs)) = mounted(1 << 20) else {
        return;
    };
    fs.stall();
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = (0..3u64)
        .map(|i| {
            let f = open(&fs);
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 512];
                tx.send(f.read_exact_at(&mut buf, i * 4096).is_ok())
                    .unwrap();
            })
        })
        .collect();
    assert!(
        fs.wait_blocked(3, Duration::from_secs(5)),
        "{} held",
        fs.blocked()
    );
    let served = fs.served();
    fs.unstall();
    for _ in 0..3 {
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }
    assert_eq!(fs.served(), served + 3);
    readers.into_iter().for_each(|r| r.join().unwrap());
}

#[test]
fn o_direct_opens_and_bypasses_the_page_cache() {
    let Some((_dir, fs)) = mounted(1 << 20) else {
        return;
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(fs.path())
        .expect("O_DIRECT open on the FUSE file");
    fs.write_at(0, &[5; 512]);
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    let mut buf = vec![0u8; 8192];
    let off = buf.as_ptr().align_offset(layout.align());
    f.read_exact_at(&mut buf[off..off + 4096], 0).unwrap();
    assert_eq!(buf[off..off + 512], [5; 512]);
    // A second read sees a change made behind the mount: nothing was cached.
    fs.write_at(0, &[6; 512]);
    f.read_exact_at(&mut buf[off..off + 4096], 0).unwrap();
    assert_eq!(buf[off..off + 512], [6; 512]);
}

#[test]
fn dropping_the_mount_releases_a_held_read() {
    let Some((_dir, fs)) = mounted(1 << 20) else {
        return;
    };
    fs.stall();
    let f = open(&fs);
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 16];
        tx.send(f.read_exact_at(&mut buf, 0).is_ok()).unwrap();
    });
    assert!(fs.wait_blocked(1, Duration::from_secs(5)));
    drop(fs);
    assert!(rx.recv_timeout(Duration::from_secs(5)).expect("released"));
    reader.join().unwrap();
}

#[test]
fn the_handle_can_be_shared_with_other_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<StallFs>();
}
