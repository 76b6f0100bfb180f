//! A FUSE file system serving one memory-backed file whose I/O a test can stall.
//!
//! Tests of "the storage hangs" (a target deleted or a TMF sent while commands are stuck
//! in the backing file) need a backing file whose reads and writes do not finish until
//! the test says so. [`StallFs::mount`] mounts a FUSE file system (the mount syscall
//! directly, so no `fusermount` is needed; this needs root and `/dev/fuse`) holding one
//! file of a fixed size, zero-filled. [`StallFs::stall`] makes every later read, write
//! and fsync wait (its reply is held, not a thread) until [`StallFs::unstall`];
//! [`StallFs::blocked`] counts the requests held and [`StallFs::open_handles`] the
//! opens of the file not yet released (has the daemon let go of it?). Dropping the
//! handle releases whatever is held, then detaches the mount (lazily: a daemon still
//! holding the file open is served from memory until it closes it).
//!
//! The file is opened with `FOPEN_DIRECT_IO`, so that no read is served from the page
//! cache behind the test's back: every read and write reaches the file system. Opening
//! it with `O_DIRECT` works too. Flush (close) is never held. Hole punching is not
//! implemented (the kernel reports EOPNOTSUPP; vdisk then writes zeros, which are
//! held), nor is SEEK_DATA/SEEK_HOLE (the kernel treats the whole file as data).
//! The kernel serializes a write and an fsync of the same file, so a held write
//! keeps a later fsync from reaching the file system at all.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};

const FILE_INO: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);

/// A request whose reply waits for [`StallFs::unstall`].
type Held = Box<dyn FnOnce(&Shared) + Send>;

struct State {
    stalled: bool,
    held: Vec<Held>,
    /// Requests served (read, write, fsync), held ones included once released.
    served: u64,
}

struct Shared {
    name: Vec<u8>,
    data: Mutex<Vec<u8>>,
    state: Mutex<State>,
    /// Signalled whenever `held` changes, for [`StallFs::wait_blocked`].
    changed: Condvar,
    /// Opens of the file not yet released.
    open: AtomicUsize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `op` now, or hold it until unstalled.
    fn serve(&self, op: Held) {
        let mut state = self.state();
        if state.stalled {
            state.held.push(op);
            self.changed.notify_all();
            return;
        }
        state.served += 1;
        drop(state);
        op(self);
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == FILE_INO {
            (FileType::RegularFile, 0o644, self.data().len() as u64, 1)
        } else {
            (FileType::Directory, 0o755, 0, 2)
        };
        let now = SystemTime::now();
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

struct Fs(Arc<Shared>);

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name.as_bytes() == self.0.name.as_slice() {
            reply.entry(&TTL, &self.0.attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == FILE_INO {
            reply.attr(&TTL, &self.0.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let (Some(size), true) = (size, ino == FILE_INO) {
            match usize::try_from(size) {
                Ok(size) => self.0.data().resize(size, 0),
                Err(_) => return reply.error(Errno::EFBIG),
            }
        }
        reply.attr(&TTL, &self.0.attr(ino));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE_INO {
            return reply.error(Errno::EISDIR);
        }
        self.0.open.fetch_add(1, Ordering::SeqCst);
        // Direct I/O: no page cache in between, every read and write comes here.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.0.serve(Box::new(move |shared: &Shared| {
            let data = shared.data();
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            reply.data(&data[start..end]);
        }));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let bytes = data.to_vec();
        self.0.serve(Box::new(move |shared: &Shared| {
            let mut data = shared.data();
            let Some(end) = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(bytes.len()))
            else {
                return reply.error(Errno::EFBIG);
            };
            // The file has a fixed size, like a disk.
            if end > data.len() {
                return reply.error(Errno::ENOSPC);
            }
            data[end - bytes.len()..end].copy_from_slice(&bytes);
            reply.written(bytes.len() as u32);
        }));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if ino == FILE_INO {
            self.0.open.fetch_sub(1, Ordering::SeqCst);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.0.serve(Box::new(move |_shared: &Shared| reply.ok()));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, OsStr::new(".")),
            (INodeNo::ROOT, FileType::Directory, OsStr::new("..")),
            (
                FILE_INO,
                FileType::RegularFile,
                OsStr::from_bytes(&self.0.name),
            ),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted stall file system; see the module documentation.
pub struct StallFs {
    shared: Arc<Shared>,
    dir: PathBuf,
    file: PathBuf,
    session: Option<BackgroundSession>,
}

impl StallFs {
    /// Mount at `dir` (an existing empty directory) a file system holding one file,
    /// `file_name`, of `size` zero bytes.
    pub fn mount(dir: &Path, file_name: &str, size: u64) -> io::Result<StallFs> {
        if file_name.is_empty() || file_name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file name is one path component",
            ));
        }
        let size =
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let shared = Arc::new(Shared {
            name: file_name.as_bytes().to_vec(),
            data: Mutex::new(vec![0; size]),
            state: Mutex::new(State {
                stalled: false,
                held: Vec::new(),
                served: 0,
            }),
            changed: Condvar::new(),
            open: AtomicUsize::new(0),
        });
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("stallfs".into()),
            MountOption::Subtype("stallfs".into()),
            MountOption::RW,
        ];
        config.n_threads = Some(2);
        let session = fuser::spawn_mount(Fs(Arc::clone(&shared)), dir, &config)?;
        Ok(StallFs {
            shared,
            dir: dir.to_path_buf(),
            file: dir.join(file_name),
            session: Some(session),
        })
    }

    /// The served file's path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Hold every later read, write and fsync until [`StallFs::unstall`].
    pub fn stall(&self) {
        self.shared.state().stalled = true;
    }

    /// Answer the held requests, in the order they came, and serve later ones at once.
    pub fn unstall(&self) {
        let mut state = self.shared.state();
        state.stalled = false;
        let held = std::mem::take(&mut state.held);
        state.served += held.len() as u64;
        // Answered under the state lock so that a request arriving now cannot overtake
        // one that was held.
        for op in held {
            op(&self.shared);
        }
        self.shared.changed.notify_all();
    }

    /// Whether requests are being held.
    pub fn is_stalled(&self) -> bool {
        self.shared.state().stalled
    }

    /// How many requests are held now.
    pub fn blocked(&self) -> usize {
        self.shared.state().held.len()
    }

    /// Read, write and fsync requests answered so far.
    pub fn served(&self) -> u64 {
        self.shared.state().served
    }

    /// Opens of the file not yet released: whether a daemon still holds it (the kernel
    /// releases a file shortly after its last close, not during it).
    pub fn open_handles(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` requests are held; false if `timeout` passed first.
    pub fn wait_blocked(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while state.held.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// A copy of the file's bytes at `offset` (without going through the mount, so it
    /// works while stalled).
    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let data = self.shared.data();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        data[start..start.saturating_add(len).min(data.len())].to_vec()
    }

    /// Overwrite the file's bytes at `offset` (without going through the mount).
    pub fn write_at(&self, offset: u64, bytes: &[u8]) {
        let mut data = self.shared.data();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(bytes.len()).min(data.len());
        data[start..end].copy_from_slice(&bytes[..end - start]);
    }
}

impl Drop for StallFs {
    fn drop(&mut self) {
        self.unstall();
        // Detach lazily: a daemon that still has the file open must not keep the test
        // from ending; the session thread goes on serving it until it closes the file.
        if let Ok(dir) = CString::new(self.dir.as_os_str().as_bytes()) {
            // SAFETY: `dir` is a valid NUL-terminated path that outlives the call.
            unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        }
        // The background session's own unmount finds nothing mounted any more.
        drop(self.session.take());
    }
}

#[cfg(test)]
mod tests;
