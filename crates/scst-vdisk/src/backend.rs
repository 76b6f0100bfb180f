//! How the bytes move: the backends behind the SBC emulation.
//!
//! - [`FileBackend`]: a file or block device through the page cache (vdisk_fileio), or
//!   with O_DIRECT through an aligned bounce buffer (vdisk_blockio, fileio `o_direct`).
//! - [`NullBackend`]: no I/O at all (vdisk_nullio).
//!
//! Every operation takes the [`ExecMode`]: in `Inline` mode it must not block and returns
//! `None` when it would, so that the core re-runs the command on an I/O thread.

use crate::fsalloc::{self, Extent};
use crate::uring::{self, Done, IoEngine, Ring};
use scst_core::ExecMode;
use std::alloc::{self, Layout};
use std::any::Any;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// `None`: would block, re-run in `Blocking` mode.
pub type IoOutcome = Option<io::Result<()>>;

/// The I/O a vdisk needs from its backend. Offsets and lengths are block aligned.
pub trait Backend: Send + Sync + 'static {
    /// Fill `buf` from byte offset `off`.
    fn read(&self, buf: &mut [u8], off: u64, mode: ExecMode) -> IoOutcome;
    /// Read `len` bytes at `off` into a new buffer. Backends that read straight into
    /// uninitialised memory override it: a buffer the read overwrites need not be
    /// zeroed first.
    fn read_vec(&self, len: usize, off: u64, mode: ExecMode) -> Option<io::Result<Vec<u8>>> {
        let mut v = vec![0u8; len];
        self.read(&mut v, off, mode).map(|r| r.map(|()| v))
    }
    /// Transfers can be started without waiting ([`Backend::read_async`],
    /// [`Backend::write_async`]).
    fn async_io(&self) -> bool {
        false
    }
    /// The device's `async` attribute: submit transfers that would block without a
    /// thread waiting, where the backend can.
    fn set_async(&self, _on: bool) {}
    /// Start reading `len` bytes at `off`; `done` gets the data. `Err(done)` when no
    /// transfer was started (the caller runs the command blocking instead).
    fn read_async(self: Arc<Self>, _len: usize, _off: u64, done: Done) -> Result<(), Done> {
        Err(done)
    }
    /// Start writing `data` at `off` (durably with `stable`); `done` gets the buffer
    /// back. `Err(done)` when no transfer was started.
    fn write_async(
        self: Arc<Self>,
        _data: Vec<u8>,
        _off: u64,
        _stable: bool,
        done: Done,
    ) -> Result<(), Done> {
        Err(done)
    }
    /// Write `buf` at `off`; with `stable` the data is on stable storage on return.
    fn write(&self, buf: &[u8], off: u64, stable: bool, mode: ExecMode) -> IoOutcome;
    /// Make every completed write stable (fdatasync).
    fn flush(&self, mode: ExecMode) -> IoOutcome;
    /// No medium behind it: reads are zeros and verification always succeeds.
    fn is_null(&self) -> bool {
        false
    }
    /// Deallocate `len` bytes at `off` (UNMAP, WRITE SAME with UNMAP): afterwards they
    /// read back as zeros. `stable`: the deallocation survives a crash on return.
    fn deallocate(&self, _off: u64, _len: u64, _stable: bool, _mode: ExecMode) -> IoOutcome {
        Some(Ok(()))
    }
    /// Allocation state of the bytes from `off` up to at most `limit` (GET LBA STATUS).
    /// By default everything is mapped.
    fn extent(&self, _off: u64, limit: u64, _mode: ExecMode) -> Option<io::Result<Extent>> {
        Some(Ok(Extent {
            mapped: true,
            end: limit,
        }))
    }
    /// Hint that `len` bytes at `off` will be read soon (PRE-FETCH).
    fn prefetch(&self, _off: u64, _len: u64, _mode: ExecMode) -> IoOutcome {
        Some(Ok(()))
    }
    /// The backend's current size in bytes, re-read (`resync_size`); `None` when the
    /// backend has no size of its own (nullio).
    fn current_size(&self) -> Option<io::Result<u64>> {
        None
    }
}

/// vdisk_nullio: nothing to do, never blocks.
pub struct NullBackend;

impl Backend for NullBackend {
    fn read(&self, _buf: &mut [u8], _off: u64, _mode: ExecMode) -> IoOutcome {
        // The buffer is zeroed by the caller: `read_zero` costs nothing more.
        Some(Ok(()))
    }
    fn write(&self, _buf: &[u8], _off: u64, _stable: bool, _mode: ExecMode) -> IoOutcome {
        Some(Ok(()))
    }
    fn flush(&self, _mode: ExecMode) -> IoOutcome {
        Some(Ok(()))
    }
    fn is_null(&self) -> bool {
        true
    }
}

/// O_DIRECT needs buffers, offsets and lengths aligned to the device's logical block
/// size; 4096 covers every block size we accept.
const DIRECT_ALIGN: usize = 4096;
/// Largest bounce buffer kept per I/O thread; bigger transfers go in chunks of this.
const BOUNCE_CHUNK: usize = 1 << 20;

/// A zeroed, `DIRECT_ALIGN`-aligned heap buffer of `BOUNCE_CHUNK` bytes.
struct AlignedBuf {
    ptr: *mut u8,
}

impl AlignedBuf {
    fn layout() -> Layout {
        // Constant, valid arguments (non-zero size, power-of-two alignment).
        Layout::from_size_align(BOUNCE_CHUNK, DIRECT_ALIGN).expect("valid bounce layout")
    }

    fn new() -> AlignedBuf {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(Self::layout()) };
        if ptr.is_null() {
            alloc::handle_alloc_error(Self::layout());
        }
        AlignedBuf { ptr }
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(BOUNCE_CHUNK);
        // SAFETY: ptr points to BOUNCE_CHUNK initialised (zeroed) bytes owned by self,
        // and the &mut self borrow makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with the same layout.
        unsafe { alloc::dealloc(self.ptr, Self::layout()) }
    }
}

thread_local! {
    /// One bounce buffer per I/O thread, allocated on first use.
    static BOUNCE: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

fn with_bounce<R>(f: impl FnOnce(&mut AlignedBuf) -> R) -> R {
    BOUNCE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => f(slot.get_or_insert_with(AlignedBuf::new)),
        // Re-entrant use cannot happen today; fall back to a private buffer.
        Err(_) => f(&mut AlignedBuf::new()),
    })
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS)
    )
}

/// A file or block device (vdisk_fileio, vdisk_blockio).
pub struct FileBackend {
    file: File,
    /// Opened with O_DIRECT: every transfer goes through an aligned bounce buffer.
    direct: bool,
    /// May try non-blocking I/O in Inline mode (page-cache backends only).
    inline_io: bool,
    /// RWF_NOWAIT reads / writes work on this file; cleared on the first EOPNOTSUPP so
    /// that a kernel or filesystem without support costs one failed syscall, not one
    /// per command.
    nowait_read: AtomicBool,
    nowait_write: AtomicBool,
    /// RWF_DSYNC works on this file (else write + fdatasync).
    dsync_flag: AtomicBool,
    /// A regular file on tmpfs or ramfs: its page cache is the medium, so a transfer
    /// is a memory copy that never waits for a device, and runs inline even where the
    /// filesystem lacks RWF_NOWAIT (tmpfs does).
    memory_backed: bool,
    /// The io_uring engine, once a transfer that would block may go to it.
    uring: OnceLock<&'static Arc<Ring>>,
    /// Transfers that would block go to the ring: the device's `async`, or the
    /// process-wide engine (`--io-engine io_uring`).
    use_ring: AtomicBool,
    /// The process-wide engine is io_uring.
    ring_by_default: bool,
    /// The ring can serve this file: O_DIRECT goes through the bounce buffers of the
    /// I/O threads, and a memory filesystem never waits.
    ring_eligible: bool,
    /// A regular file, which can shrink under the device (`truncate`): writes that
    /// leave the inline path check they still land inside it.
    regular: bool,
}

/// What a RWF_NOWAIT transfer of `want` bytes came to: done, or `None` to redo it
/// blocking (it would block, was interrupted, or moved only part: partly cached or at
/// EOF, and the re-run redoes it whole), or an error. A filesystem that refuses the
/// flag is remembered in `supported` and not asked again.
fn nowait_outcome(r: io::Result<usize>, want: usize, supported: &AtomicBool) -> IoOutcome {
    match r {
        Ok(n) if n == want => Some(Ok(())),
        Ok(_) => None,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => None,
        Err(e) if is_unsupported(&e) => {
            supported.store(false, Ordering::Relaxed);
            None
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) => Some(Err(e)),
    }
}

/// Whether `file` is a regular file whose filesystem keeps its data in memory only.
/// A device node lives on devtmpfs, which reports tmpfs's magic: hence the regular
/// file check.
fn is_memory_backed(file: &File) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    // SAFETY: statfs is plain integers, for which all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs fills the struct it is given for an open fd; nothing else is touched.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures.
    let magic = st.f_type as i64;
    magic == TMPFS_MAGIC || magic == RAMFS_MAGIC
}

impl FileBackend {
    /// Open `path`; `direct` asks for O_DIRECT. Returns the backend and its size in
    /// bytes. Filesystems without O_DIRECT (tmpfs) fall back to buffered I/O with a
    /// warning; durability is unaffected since stable writes use RWF_DSYNC/fdatasync.
    pub fn open(
        path: &str,
        read_only: bool,
        direct: bool,
        inline_io: bool,
    ) -> io::Result<(FileBackend, u64)> {
        Self::open_with(path, read_only, direct, inline_io, uring::io_engine())
    }

    /// [`FileBackend::open`] with an explicit I/O engine.
    pub fn open_with(
        path: &str,
        read_only: bool,
        direct: bool,
        inline_io: bool,
        engine: IoEngine,
    ) -> io::Result<(FileBackend, u64)> {
        let open = |flags: i32| {
            OpenOptions::new()
                .read(true)
                .write(!read_only)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = if direct {
            match open(libc::O_DIRECT) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    log::warn!("{path}: O_DIRECT not supported here, using buffered I/O");
                    (open(0)?, false)
                }
                Err(e) => return Err(e),
            }
        } else {
            (open(0)?, false)
        };
        // Seeking works for regular files and block devices alike.
        let size = (&file).seek(SeekFrom::End(0))?;
        let memory_backed = !direct && is_memory_backed(&file);
        let regular = file.metadata()?.is_file();
        let backend = FileBackend {
            uring: OnceLock::new(),
            use_ring: AtomicBool::new(false),
            ring_by_default: engine == IoEngine::Uring,
            ring_eligible: inline_io && !direct && !memory_backed,
            regular,
            file,
            direct,
            memory_backed,
            inline_io: inline_io && !direct,
            nowait_read: AtomicBool::new(true),
            nowait_write: AtomicBool::new(true),
            dsync_flag: AtomicBool::new(true),
        };
        backend.select_engine(false);
        Ok((backend, size))
    }

    /// Transfers that would block go to io_uring when the device asks (`async`) or the
    /// process-wide engine is io_uring, and the file can use it. Where io_uring cannot
    /// be set up they stay on the I/O threads (`uring_unavailable` says why, at start).
    pub fn select_engine(&self, async_io: bool) {
        let want = (async_io || self.ring_by_default) && self.ring_eligible;
        if want && self.uring.get().is_none() {
            if let Some(ring) = uring::ring() {
                let _ = self.uring.set(ring);
            }
        }
        self.use_ring
            .store(want && self.uring.get().is_some(), Ordering::Relaxed);
    }

    /// The ring, when transfers that would block go to it.
    #[inline]
    fn ring(&self) -> Option<&'static Arc<Ring>> {
        if self.use_ring.load(Ordering::Relaxed) {
            self.uring.get().copied()
        } else {
            None
        }
    }

    /// A write of `len` bytes at `off` must land inside the backing file: past the end
    /// of a regular file it would silently grow the file back after it shrank under
    /// the device. Checked where a write leaves the inline path (it waits for an I/O
    /// thread or the ring, so one fstat is noise); a block device refuses such a write
    /// itself.
    fn check_inside(&self, off: u64, len: usize) -> io::Result<()> {
        if !self.regular {
            return Ok(());
        }
        let size = self.file.metadata()?.len();
        if off.saturating_add(len as u64) > size {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "beyond the end of the backing file ({size} bytes): it shrank under \
                     the device (write resync_size to report the new capacity)"
                ),
            ));
        }
        Ok(())
    }

    /// One pwritev2/preadv2 call. Returns bytes transferred.
    fn rw2(
        &self,
        write: bool,
        buf: *const u8,
        len: usize,
        off: u64,
        flags: i32,
    ) -> io::Result<usize> {
        let iov = libc::iovec {
            iov_base: buf as *mut libc::c_void,
            iov_len: len,
        };
        let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: iov describes `len` valid bytes of a live buffer (mutable for reads,
        // as the callers guarantee) and the fd is open for the lifetime of self.
        let n = unsafe {
            if write {
                libc::pwritev2(self.file.as_raw_fd(), &iov, 1, off, flags)
            } else {
                libc::preadv2(self.file.as_raw_fd(), &iov, 1, off, flags)
            }
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// preadv2 into the spare capacity of `v`, at most `want` bytes; the length of `v`
    /// grows by what was read.
    fn pread_spare(&self, v: &mut Vec<u8>, want: usize, off: u64, flags: i32) -> io::Result<usize> {
        let spare = v.spare_capacity_mut();
        let want = want.min(spare.len());
        let n = self.rw2(false, spare.as_mut_ptr().cast::<u8>(), want, off, flags)?;
        // SAFETY: preadv2 initialised the first `n` (<= want <= spare.len()) bytes of
        // the spare capacity, which directly follows the initialised part.
        unsafe { v.set_len(v.len() + n) };
        Ok(n)
    }

    /// Blocking read of `len` bytes at `off` into a fresh, never zeroed buffer.
    fn read_vec_blocking(&self, len: usize, off: u64) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let (at, want) = (off + v.len() as u64, len - v.len());
            match self.pread_spare(&mut v, want, at, 0) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }

    /// [`FileBackend::read_nowait`] into a fresh, never zeroed buffer.
    fn read_vec_nowait(&self, len: usize, off: u64) -> Option<io::Result<Vec<u8>>> {
        if self.memory_backed {
            return Some(self.read_vec_blocking(len, off));
        }
        if !self.nowait_read.load(Ordering::Relaxed) {
            return None;
        }
        let mut v = Vec::with_capacity(len);
        let r = self.pread_spare(&mut v, len, off, libc::RWF_NOWAIT);
        nowait_outcome(r, len, &self.nowait_read).map(|r| r.map(|()| v))
    }

    /// Page-cache read that never blocks: None when the data is not all cached.
    fn read_nowait(&self, buf: &mut [u8], off: u64) -> IoOutcome {
        if self.memory_backed {
            return Some(self.file.read_exact_at(buf, off));
        }
        if !self.nowait_read.load(Ordering::Relaxed) {
            return None;
        }
        let r = self.rw2(false, buf.as_mut_ptr(), buf.len(), off, libc::RWF_NOWAIT);
        nowait_outcome(r, buf.len(), &self.nowait_read)
    }

    /// Page-cache write that never blocks. A partial write is finished by the blocking
    /// re-run, which rewrites the same bytes.
    fn write_nowait(&self, buf: &[u8], off: u64) -> IoOutcome {
        if self.memory_backed {
            return Some(self.file.write_all_at(buf, off));
        }
        if !self.nowait_write.load(Ordering::Relaxed) {
            return None;
        }
        let r = self.rw2(true, buf.as_ptr(), buf.len(), off, libc::RWF_NOWAIT);
        nowait_outcome(r, buf.len(), &self.nowait_write)
    }

    /// Write all of `buf` durably: RWF_DSYNC per call (O_DSYNC semantics for just this
    /// write), or write + fdatasync where the flag is not supported.
    fn write_stable(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.dsync_flag.load(Ordering::Relaxed) {
            let mut done = 0;
            while done < buf.len() {
                let rest = &buf[done..];
                match self.rw2(
                    true,
                    rest.as_ptr(),
                    rest.len(),
                    off + done as u64,
                    libc::RWF_DSYNC,
                ) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if done == 0 && is_unsupported(&e) => {
                        self.dsync_flag.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if done == buf.len() {
                return Ok(());
            }
        }
        self.file.write_all_at(buf, off)?;
        self.file.sync_data()
    }

    fn write_plain(&self, buf: &[u8], off: u64, stable: bool) -> io::Result<()> {
        if stable {
            self.write_stable(buf, off)
        } else {
            self.file.write_all_at(buf, off)
        }
    }
}

impl Backend for FileBackend {
    fn current_size(&self) -> Option<io::Result<u64>> {
        // Seeking to the end works for regular files and block devices alike.
        Some((&self.file).seek(SeekFrom::End(0)))
    }

    fn read_vec(&self, len: usize, off: u64, mode: ExecMode) -> Option<io::Result<Vec<u8>>> {
        if self.direct {
            // Through the bounce buffer, which does not fill uninitialised memory.
            let mut v = vec![0u8; len];
            return self.read(&mut v, off, mode).map(|r| r.map(|()| v));
        }
        match mode {
            ExecMode::Inline if self.inline_io => self.read_vec_nowait(len, off),
            ExecMode::Inline => None,
            ExecMode::Blocking => Some(self.read_vec_blocking(len, off)),
        }
    }

    fn async_io(&self) -> bool {
        self.ring().is_some()
    }

    fn set_async(&self, on: bool) {
        self.select_engine(on);
    }

    fn read_async(self: Arc<Self>, len: usize, off: u64, done: Done) -> Result<(), Done> {
        let Some(ring) = self.ring() else {
            return Err(done);
        };
        let fd = self.file.as_raw_fd();
        let keep: Arc<dyn Any + Send + Sync> = self;
        ring.submit(keep, fd, false, 0, Vec::with_capacity(len), len, off, done);
        Ok(())
    }

    fn write_async(
        self: Arc<Self>,
        data: Vec<u8>,
        off: u64,
        stable: bool,
        done: Done,
    ) -> Result<(), Done> {
        let Some(ring) = self.ring() else {
            return Err(done);
        };
        // Where RWF_DSYNC is missing a stable write needs write + fdatasync: blocking.
        // A write past the end of a file that shrank is refused by the blocking path.
        if stable && !self.dsync_flag.load(Ordering::Relaxed)
            || self.check_inside(off, data.len()).is_err()
        {
            return Err(done);
        }
        let flags = if stable { libc::RWF_DSYNC } else { 0 };
        let fd = self.file.as_raw_fd();
        let len = data.len();
        let keep: Arc<dyn Any + Send + Sync> = self;
        ring.submit(keep, fd, true, flags, data, len, off, done);
        Ok(())
    }

    fn read(&self, buf: &mut [u8], off: u64, mode: ExecMode) -> IoOutcome {
        if mode == ExecMode::Inline {
            return if self.inline_io {
                self.read_nowait(buf, off)
            } else {
                None
            };
        }
        if !self.direct {
            return Some(self.file.read_exact_at(buf, off));
        }
        Some(with_bounce(|bounce| {
            for (i, chunk) in buf.chunks_mut(BOUNCE_CHUNK).enumerate() {
                let b = bounce.slice(chunk.len());
                self.file
                    .read_exact_at(b, off + (i * BOUNCE_CHUNK) as u64)?;
                chunk.copy_from_slice(b);
            }
            Ok(())
        }))
    }

    fn write(&self, buf: &[u8], off: u64, stable: bool, mode: ExecMode) -> IoOutcome {
        if mode == ExecMode::Inline {
            // A stable write waits for the medium: never inline.
            return if self.inline_io && !stable {
                self.write_nowait(buf, off)
            } else {
                None
            };
        }
        if let Err(e) = self.check_inside(off, buf.len()) {
            return Some(Err(e));
        }
        if !self.direct {
            return Some(self.write_plain(buf, off, stable));
        }
        Some(with_bounce(|bounce| {
            for (i, chunk) in buf.chunks(BOUNCE_CHUNK).enumerate() {
                let b = bounce.slice(chunk.len());
                b.copy_from_slice(chunk);
                self.write_plain(b, off + (i * BOUNCE_CHUNK) as u64, stable)?;
            }
            Ok(())
        }))
    }

    fn flush(&self, mode: ExecMode) -> IoOutcome {
        match mode {
            ExecMode::Inline => None,
            ExecMode::Blocking => Some(self.file.sync_data()),
        }
    }

    fn deallocate(&self, off: u64, len: u64, stable: bool, mode: ExecMode) -> IoOutcome {
        if mode == ExecMode::Inline {
            return None;
        }
        Some(self.deallocate_blocking(off, len, stable))
    }

    fn extent(&self, off: u64, limit: u64, mode: ExecMode) -> Option<io::Result<Extent>> {
        // SEEK_DATA/SEEK_HOLE walk filesystem metadata, which may need I/O.
        match mode {
            ExecMode::Inline => None,
            ExecMode::Blocking => Some(fsalloc::extent_at(&self.file, off, limit)),
        }
    }

    fn prefetch(&self, off: u64, len: u64, mode: ExecMode) -> IoOutcome {
        // O_DIRECT reads bypass the page cache: filling it would be wasted work.
        if self.direct {
            return Some(Ok(()));
        }
        match mode {
            ExecMode::Inline => None,
            ExecMode::Blocking => Some(fsalloc::will_need(&self.file, off, len)),
        }
    }
}

impl FileBackend {
    /// Punch a hole (regular files; on block devices the kernel zeroes and unmaps).
    /// Where hole punching is unsupported, block devices fall back to BLKDISCARD and
    /// files to writing zeros, so that deallocated blocks still read back as zeros on
    /// files (LBPRZ).
    fn deallocate_blocking(&self, off: u64, len: u64, stable: bool) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match fsalloc::punch_hole(&self.file, off, len) {
            Ok(()) => {}
            Err(e) if is_unsupported(&e) => {
                if fsalloc::is_block_device(&self.file) {
                    fsalloc::discard(&self.file, off, len)?;
                } else {
                    self.write_zeros(off, len, stable)?;
                }
            }
            Err(e) => return Err(e),
        }
        if stable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Write `len` zero bytes at `off` through the normal write path, in chunks.
    fn write_zeros(&self, off: u64, len: u64, stable: bool) -> io::Result<()> {
        let zeros = vec![0u8; BOUNCE_CHUNK.min(usize::try_from(len).unwrap_or(BOUNCE_CHUNK))];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            match self.write(&zeros[..n], off + done, stable, ExecMode::Blocking) {
                Some(r) => r?,
                None => return Err(io::ErrorKind::WouldBlock.into()),
            }
            done += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_with(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        f.flush().unwrap();
        f
    }

    #[test]
    fn memory_filesystems_are_recognised() {
        let shm = tempfile::NamedTempFile::new_in("/dev/shm").unwrap();
        assert!(is_memory_backed(shm.as_file()));
        let disk = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        assert!(!is_memory_backed(disk.as_file()));
        // A device node sits on devtmpfs, which reports tmpfs's magic.
        assert!(!is_memory_backed(&File::open("/dev/null").unwrap()));
        // On tmpfs, reads and writes complete inline (no RWF_NOWAIT needed).
        let path = shm.path().to_str().unwrap();
        shm.as_file().set_len(8192).unwrap();
        let (b, _) = FileBackend::open(path, false, false, true).unwrap();
        assert!(b.write(&[7u8; 512], 512, false, ExecMode::Inline).is_some());
        let mut out = [0u8; 512];
        assert!(b.read(&mut out, 512, ExecMode::Inline).unwrap().is_ok());
        assert_eq!(out, [7u8; 512]);
    }

    #[test]
    fn buffered_round_trip() {
        let f = temp_with(&[0u8; 8192]);
        let path = f.path().to_str().unwrap();
        let (b, size) = FileBackend::open(path, false, false, true).unwrap();
        assert_eq!(size, 8192);
        let data = vec![0xA5u8; 1024];
        assert!(b
            .write(&data, 512, false, ExecMode::Blocking)
            .unwrap()
            .is_ok());
        assert!(b
            .write(&data, 2048, true, ExecMode::Blocking)
            .unwrap()
            .is_ok());
        // Stable writes never run inline.
        assert!(b.write(&data, 0, true, ExecMode::Inline).is_none());
        let mut out = vec![0u8; 1024];
        assert!(b.read(&mut out, 512, ExecMode::Blocking).unwrap().is_ok());
        assert_eq!(out, data);
        // Inline read: either served from the page cache or deferred, never wrong.
        let mut out2 = vec![0u8; 1024];
        if let Some(r) = b.read(&mut out2, 2048, ExecMode::Inline) {
            r.unwrap();
            assert_eq!(out2, data);
        }
        assert!(b.flush(ExecMode::Inline).is_none());
        assert!(b.flush(ExecMode::Blocking).unwrap().is_ok());
        // Reading past the end is an error, not a short success.
        assert!(b.read(&mut out, 8192, ExecMode::Blocking).unwrap().is_err());
    }

    #[test]
    fn direct_round_trip_through_bounce_buffer() {
        let f = temp_with(&vec![0u8; 3 << 20]);
        let path = f.path().to_str().unwrap();
        let (b, _) = FileBackend::open(path, false, true, true).unwrap();
        // Larger than one bounce chunk, at an offset, with a pattern.
        let data: Vec<u8> = (0..(BOUNCE_CHUNK + 4096))
            .map(|i| (i / 512) as u8)
            .collect();
        assert!(b.read(&mut vec![0; 512], 0, ExecMode::Inline).is_none());
        b.write(&data, 4096, true, ExecMode::Blocking)
            .unwrap()
            .unwrap();
        let mut out = vec![0u8; data.len()];
        b.read(&mut out, 4096, ExecMode::Blocking).unwrap().unwrap();
        assert!(out == data);
    }

    #[test]
    fn read_only_open_rejects_writes() {
        let f = temp_with(&[0u8; 4096]);
        let (b, _) = FileBackend::open(f.path().to_str().unwrap(), true, false, true).unwrap();
        assert!(b
            .write(&[1u8; 512], 0, false, ExecMode::Blocking)
            .unwrap()
            .is_err());
    }
}

#[cfg(test)]
mod uring_tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// A backend on a disk file (not tmpfs: the ring is for files whose I/O may wait),
    /// or None, printed, where io_uring cannot be set up.
    fn uring_backend(len: u64) -> Option<(tempfile::NamedTempFile, Arc<FileBackend>)> {
        if let Some(why) = uring::uring_unavailable() {
            eprintln!("io_uring test skipped: io_uring unavailable here: {why}");
            return None;
        }
        let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        f.as_file().set_len(len).unwrap();
        let path = f.path().to_str().unwrap();
        let (b, _) = FileBackend::open_with(path, false, false, true, IoEngine::Uring).unwrap();
        assert!(b.async_io(), "a disk file gets the ring");
        Some((f, Arc::new(b)))
    }

    #[test]
    fn the_async_attribute_selects_the_ring_per_device() {
        if uring::uring_unavailable().is_some() {
            eprintln!("io_uring test skipped: io_uring unavailable here");
            return;
        }
        let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        let path = f.path().to_str().unwrap();
        // The process-wide engine is the threads: only `async` brings the ring.
        let (b, _) = FileBackend::open_with(path, false, false, true, IoEngine::Threads).unwrap();
        assert!(!b.async_io());
        b.set_async(true);
        assert!(b.async_io(), "async 1 submits through io_uring");
        b.set_async(false);
        assert!(!b.async_io(), "async 0 goes back to the I/O threads");
        // With io_uring process-wide, async 0 keeps it.
        let (b, _) = FileBackend::open_with(path, false, false, true, IoEngine::Uring).unwrap();
        b.set_async(false);
        assert!(b.async_io());
        // O_DIRECT transfers never go to the ring.
        let (b, _) = FileBackend::open_with(path, false, true, true, IoEngine::Threads).unwrap();
        b.set_async(true);
        assert!(!b.async_io());
    }

    fn wait(start: impl FnOnce(Done) -> Result<(), Done>) -> io::Result<Vec<u8>> {
        let (tx, rx) = mpsc::channel();
        let done: Done = Box::new(move |r| tx.send(r).unwrap());
        assert!(start(done).is_ok(), "the transfer was started");
        rx.recv().unwrap()
    }

    #[test]
    fn uring_writes_read_back() {
        let Some((_f, b)) = uring_backend(4 << 20) else {
            return;
        };
        let pattern = |seed: u8, n: usize| -> Vec<u8> {
            (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
        };
        // Small and large, cached and durable writes, at several offsets.
        let cases = [
            (0u64, 4096usize, false),
            (8192, 512, true),
            (1 << 20, 1 << 20, false),
        ];
        for (i, &(off, len, stable)) in cases.iter().enumerate() {
            let data = pattern(i as u8, len);
            let back = wait(|d| b.clone().write_async(data.clone(), off, stable, d)).unwrap();
            assert_eq!(back.len(), len);
        }
        for (i, &(off, len, _)) in cases.iter().enumerate() {
            let got = wait(|d| b.clone().read_async(len, off, d)).unwrap();
            assert!(got == pattern(i as u8, len), "case {i} reads back");
            // The blocking path agrees.
            let mut plain = vec![0u8; len];
            b.read(&mut plain, off, ExecMode::Blocking)
                .unwrap()
                .unwrap();
            assert!(plain == got);
        }
        // Past the end: an error, not a short success.
        assert!(wait(|d| b.clone().read_async(8192, (4 << 20) - 4096, d)).is_err());
    }

    #[test]
    fn uninitialised_reads_fill_exactly() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        f.write_all(&data).unwrap();
        let path = f.path().to_str().unwrap();
        let (b, _) = FileBackend::open_with(path, false, false, true, IoEngine::Threads).unwrap();
        assert!(!b.async_io());
        let v = b.read_vec(8192, 4096, ExecMode::Blocking).unwrap().unwrap();
        assert!(v == data[4096..12288]);
        if let Some(r) = b.read_vec(4096, 0, ExecMode::Inline) {
            assert!(r.unwrap() == data[..4096]);
        }
        assert!(b
            .read_vec(8192, 16384, ExecMode::Blocking)
            .unwrap()
            .is_err());
    }
}
