//! The operating-system side of thin provisioning and prefetching on a file or block
//! device: punching holes, discarding, finding allocated extents, read-ahead hints.
//! Thin wrappers over the syscalls so that `backend` keeps to moving bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;

/// BLKDISCARD = _IO(0x12, 119): discard a byte range of a block device.
const BLKDISCARD: libc::c_ulong = 0x1277;

fn off_t(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn is_block_device(file: &File) -> bool {
    file.metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Deallocate `len` bytes at `off` keeping the size: the range reads back as zeros
/// afterwards. On a regular file this frees the filesystem blocks (partial blocks at
/// the edges are zeroed); on a block device (Linux >= 4.9) the kernel zeroes the range
/// and unmaps it where the device guarantees zeroed reads.
pub fn punch_hole(file: &File, off: u64, len: u64) -> io::Result<()> {
    let (off, len) = (off_t(off)?, off_t(len)?);
    loop {
        // SAFETY: plain syscall on an fd owned by `file`.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// BLKDISCARD on a block device. Unlike [`punch_hole`] the discarded range is not
/// guaranteed to read back as zeros.
pub fn discard(file: &File, off: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [off, len];
    // SAFETY: BLKDISCARD reads two u64s from the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKDISCARD as _, range.as_ptr()) };
    cvt(r)
}

/// The allocation state of the bytes starting at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Backed by storage (data), as opposed to a hole.
    pub mapped: bool,
    /// Byte offset where this state ends (exclusive), at most the `limit` asked for.
    pub end: u64,
}

fn lseek(file: &File, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall on an fd owned by `file`; every I/O path uses positional
    // reads and writes, so moving the file offset disturbs nothing.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off_t(off)?, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // ENXIO: no data (SEEK_DATA) at or after `off`.
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(r as u64))
}

/// Whether the bytes at `off` are allocated, and up to where (capped at `limit`),
/// from SEEK_DATA / SEEK_HOLE; `off` must be below `limit` and the file size, so
/// that the extent is never empty. Filesystems without hole reporting (and block devices)
/// report everything as data, which is the safe answer.
pub fn extent_at(file: &File, off: u64, limit: u64) -> io::Result<Extent> {
    let data = match lseek(file, off, libc::SEEK_DATA) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Ok(Extent {
                mapped: true,
                end: limit,
            })
        }
        Err(e) => return Err(e),
    };
    match data {
        // A hole runs from `off` to the next data, or to the end of the file.
        None => Ok(Extent {
            mapped: false,
            end: limit,
        }),
        Some(d) if d > off => Ok(Extent {
            mapped: false,
            end: d.min(limit),
        }),
        Some(_) => {
            let hole = lseek(file, off, libc::SEEK_HOLE)?.unwrap_or(limit);
            Ok(Extent {
                mapped: true,
                end: hole.min(limit),
            })
        }
    }
}

/// Ask the kernel to start reading `len` bytes at `off` into the page cache.
pub fn will_need(file: &File, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an fd owned by `file`.
    let r = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            off_t(off)?,
            off_t(len)?,
            libc::POSIX_FADV_WILLNEED,
        )
    };
    // posix_fadvise returns the error number instead of setting errno.
    if r != 0 {
        Err(io::Error::from_raw_os_error(r))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn punch_frees_blocks_and_extents_follow() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&vec![0xAB; 1 << 20], 0).unwrap();
        f.sync_all().unwrap();
        let before = f.metadata().unwrap().blocks();
        match punch_hole(&f, 64 << 10, 512 << 10) {
            Ok(()) => {}
            // A filesystem without hole punching (rare): nothing more to test here.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            Err(e) => panic!("punch: {e}"),
        }
        let after = f.metadata().unwrap().blocks();
        assert!(after < before, "st_blocks {before} -> {after}");
        let mut b = vec![1u8; 4096];
        f.read_exact_at(&mut b, 100 << 10).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        let size = 1 << 20;
        let e = extent_at(&f, 0, size).unwrap();
        assert!(e.mapped && e.end <= 64 << 10 && e.end > 0, "{e:?}");
        let e = extent_at(&f, 64 << 10, size).unwrap();
        assert_eq!(
            e,
            Extent {
                mapped: false,
                end: 576 << 10
            }
        );
        let e = extent_at(&f, 576 << 10, size).unwrap();
        assert_eq!(
            e,
            Extent {
                mapped: true,
                end: size
            }
        );
        will_need(&f, 0, 4096).unwrap();
    }
}
