//! MMC-6 wire formats a vcdrom returns: READ TOC/PMA/ATIP, GET CONFIGURATION, GET
//! EVENT STATUS NOTIFICATION, READ DISC INFORMATION, MECHANISM STATUS and the MM
//! capabilities mode page. Pure functions of the CDB and the drive state, so that
//! every field check is unit-tested here.
//!
//! The emulated disc is one complete session holding one data track (mode 1,
//! recorded uninterrupted) that spans the whole ISO file.

use scsi_wire::cdb::{be16, u8_at};
use scsi_wire::{PageControl, Sense};

/// MMC-6 operation codes without a constant in scsi-wire.
pub mod opcode {
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
    pub const READ_DISC_INFORMATION: u8 = 0x51;
    pub const MECHANISM_STATUS: u8 = 0xBD;
}

/// MM capabilities and mechanical status mode page (MMC-3 5.5.10; MMC-6 keeps its
/// code reserved for it).
pub const MM_CAPABILITIES_PAGE: u8 = 0x2A;

/// Profiles (MMC-6 5.3.1).
pub const PROFILE_NONE: u16 = 0x0000;
pub const PROFILE_CD_ROM: u16 = 0x0008;
pub const PROFILE_DVD_ROM: u16 = 0x0010;

/// The largest CD: 80 minutes of 75 frames per second, 2048 bytes each. A bigger
/// image is presented as a DVD-ROM (QEMU and libvirt draw the same line).
pub const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;

/// ADR 1 (Q sub-channel encodes the current position) and CONTROL 4 (data track,
/// recorded uninterrupted).
const ADR_CONTROL_DATA: u8 = 0x14;
const LEAD_OUT_TRACK: u8 = 0xAA;
/// A disc's first block is at MSF 00:02:00 (150 frames of pre-gap).
const MSF_OFFSET: u64 = 150;

/// The medium as GET CONFIGURATION and READ TOC see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disc {
    /// Capacity in 2048-byte blocks.
    pub nblocks: u64,
}

impl Disc {
    pub fn profile(&self) -> u16 {
        if self.nblocks > CD_MAX_BLOCKS {
            PROFILE_DVD_ROM
        } else {
            PROFILE_CD_ROM
        }
    }
}

/// An LBA as MSF (minute, second, frame), saturating at 255:59:74 for images too big
/// for the format (DVD-sized ones).
fn msf(lba: u64) -> [u8; 4] {
    let f = lba.saturating_add(MSF_OFFSET);
    let m = f / (60 * 75);
    if m > 0xFF {
        return [0, 0xFF, 59, 74];
    }
    [0, m as u8, ((f / 75) % 60) as u8, (f % 75) as u8]
}

fn address(lba: u64, use_msf: bool) -> [u8; 4] {
    if use_msf {
        msf(lba)
    } else {
        (lba.min(u32::MAX as u64) as u32).to_be_bytes()
    }
}

fn truncated(mut d: Vec<u8>, alloc: u16) -> Vec<u8> {
    d.truncate(alloc as usize);
    d
}

/// READ TOC/PMA/ATIP (0x43, MMC-6 6.26), formats 0000b (TOC) and 0001b (session
/// information). The format is in byte 2; initiators that follow SFF-8020 put it in
/// the top bits of byte 9 instead, which is honoured when byte 2 says 0.
pub fn read_toc(cdb: &[u8], disc: Disc) -> Result<Vec<u8>, Sense> {
    let use_msf = u8_at(cdb, 1)? & 0x02 != 0;
    let alloc = be16(cdb, 7)?;
    let format = match (u8_at(cdb, 2)? & 0x0F, u8_at(cdb, 9)? >> 6) {
        (0, legacy @ 0..=1) => legacy,
        (0, _) => return Err(Sense::invalid_field_in_cdb(9, Some(7))),
        (f @ 1, _) => f,
        _ => return Err(Sense::invalid_field_in_cdb(2, Some(3))),
    };
    let mut d = vec![0, 0, 1, 1]; // length, first and last track (or session)
    if format == 0 {
        let track = u8_at(cdb, 6)?;
        if track > 1 && track != LEAD_OUT_TRACK {
            return Err(Sense::invalid_field_in_cdb(6, None));
        }
        if track <= 1 {
            d.extend_from_slice(&[0, ADR_CONTROL_DATA, 1, 0]);
            d.extend_from_slice(&address(0, use_msf));
        }
        d.extend_from_slice(&[0, ADR_CONTROL_DATA, LEAD_OUT_TRACK, 0]);
        d.extend_from_slice(&address(disc.nblocks, use_msf));
    } else {
        // The one (complete) session starts with track 1 at LBA 0.
        d.extend_from_slice(&[0, ADR_CONTROL_DATA, 1, 0]);
        d.extend_from_slice(&address(0, use_msf));
    }
    let len = (d.len() - 2) as u16;
    d[..2].copy_from_slice(&len.to_be_bytes());
    Ok(truncated(d, alloc))
}

/// One feature descriptor (MMC-6 5.2.2).
fn feature(out: &mut Vec<u8>, code: u16, version: u8, current: bool, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    // Every feature we report is persistent: it never comes and goes with the medium
    // (only its "current" bit does).
    out.push((version << 2) | 0x02 | current as u8);
    out.push(data.len() as u8);
    out.extend_from_slice(data);
}

/// The features of the drive, ascending, as (code, descriptor bytes, current).
fn features(disc: Option<Disc>) -> Vec<(u16, Vec<u8>, bool)> {
    let profile = disc.map(|d| d.profile()).unwrap_or(PROFILE_NONE);
    let mut list = Vec::new();
    let mut push = |code: u16, version: u8, current: bool, data: &[u8]| {
        let mut b = Vec::with_capacity(4 + data.len());
        feature(&mut b, code, version, current, data);
        list.push((code, b, current));
    };
    // 0000h Profile List: the profiles the drive can play, preferred first.
    let mut profiles = Vec::new();
    for p in [PROFILE_DVD_ROM, PROFILE_CD_ROM] {
        profiles.extend_from_slice(&p.to_be_bytes());
        profiles.extend_from_slice(&[(p == profile) as u8, 0]);
    }
    push(0x0000, 0, true, &profiles);
    // 0001h Core: physical interface "SCSI family" (MMC-6 table 91), no device busy
    // events, INQUIRY not INQ2-complete.
    push(0x0001, 2, true, &[0, 0, 0, 1, 0, 0, 0, 0]);
    // 0002h Morphing: events only by polling, no operational change events.
    push(0x0002, 1, true, &[0, 0, 0, 0]);
    // 0003h Removable Medium: tray (001b), Load, Eject, no prevent jumper, Lock.
    push(0x0003, 2, true, &[0x39, 0, 0, 0]);
    // 0010h Random Readable: 2048-byte blocks, blocking 1 (CD) or 16 (DVD ECC block).
    let blocking: u16 = if profile == PROFILE_DVD_ROM { 16 } else { 1 };
    let mut rr = vec![0, 0, 0x08, 0x00];
    rr.extend_from_slice(&blocking.to_be_bytes());
    rr.extend_from_slice(&[0, 0]);
    push(0x0010, 0, disc.is_some(), &rr);
    list
}

/// GET CONFIGURATION (0x46, MMC-6 6.6). RT 00b: every feature from the starting
/// feature number on; 01b: only the current ones; 10b: just the one named.
pub fn get_configuration(cdb: &[u8], disc: Option<Disc>) -> Result<Vec<u8>, Sense> {
    let rt = u8_at(cdb, 1)? & 0x03;
    let start = be16(cdb, 2)?;
    let alloc = be16(cdb, 7)?;
    if rt == 3 {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let profile = disc.map(|d| d.profile()).unwrap_or(PROFILE_NONE);
    let mut d = vec![0u8; 8];
    d[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, bytes, current) in features(disc) {
        let wanted = match rt {
            0 => code >= start,
            1 => code >= start && current,
            _ => code == start,
        };
        if wanted {
            d.extend_from_slice(&bytes);
        }
    }
    let len = (d.len() - 4) as u32;
    d[..4].copy_from_slice(&len.to_be_bytes());
    Ok(truncated(d, alloc))
}

/// Media event codes (MMC-6 table 178).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MediaEvent {
    NoChange = 0,
    NewMedia = 2,
    MediaRemoval = 3,
}

impl MediaEvent {
    pub fn from_u8(v: u8) -> MediaEvent {
        match v {
            2 => MediaEvent::NewMedia,
            3 => MediaEvent::MediaRemoval,
            _ => MediaEvent::NoChange,
        }
    }
}

/// The media event class (class 4, bit 4 of the request and support masks).
const MEDIA_CLASS: u8 = 4;
const SUPPORTED_CLASSES: u8 = 1 << MEDIA_CLASS;

/// Whether a GET EVENT STATUS NOTIFICATION CDB asks for media events (so that the
/// caller consumes the pending one only then).
pub fn gesn_wants_media(cdb: &[u8]) -> Result<bool, Sense> {
    Ok(u8_at(cdb, 4)? & SUPPORTED_CLASSES != 0)
}

/// GET EVENT STATUS NOTIFICATION (0x4A, MMC-6 6.7), polled only: the media class
/// with `event`, or NEA when no class we support is requested.
pub fn get_event_status(
    cdb: &[u8],
    event: MediaEvent,
    media_present: bool,
    tray_open: bool,
) -> Result<Vec<u8>, Sense> {
    if u8_at(cdb, 1)? & 0x01 == 0 {
        // Asynchronous notification is not supported (MMC-6 6.7.2.2).
        return Err(Sense::invalid_field_in_cdb(1, Some(0)));
    }
    let alloc = be16(cdb, 7)?;
    let d = if gesn_wants_media(cdb)? {
        let status = (media_present as u8) << 1 | tray_open as u8;
        vec![
            0,
            6,
            MEDIA_CLASS,
            SUPPORTED_CLASSES,
            event as u8,
            status,
            0,
            0,
        ]
    } else {
        // NEA: no event available in the requested classes.
        vec![0, 2, 0x80, SUPPORTED_CLASSES]
    };
    Ok(truncated(d, alloc))
}

/// READ DISC INFORMATION (0x51, MMC-6 6.22), standard disc information (data type
/// 000b) of a complete, non-erasable single-session disc.
pub fn read_disc_information(cdb: &[u8], disc: Disc) -> Result<Vec<u8>, Sense> {
    if u8_at(cdb, 1)? & 0x07 != 0 {
        return Err(Sense::invalid_field_in_cdb(1, Some(2)));
    }
    let alloc = be16(cdb, 7)?;
    let mut d = vec![0u8; 34];
    d[1] = 32; // disc information length
    d[2] = 0x0E; // last session complete (11b), disc complete (10b)
    d[3] = 1; // first track on disc
    d[4] = 1; // number of sessions (LSB)
    d[5] = 1; // first track in last session (LSB)
    d[6] = 1; // last track in last session (LSB)
    d[7] = 0x20; // URU: unrestricted use; no disc ID, bar code or application code
    d[8] = if disc.profile() == PROFILE_CD_ROM {
        0x00 // CD-DA or CD-ROM
    } else {
        0xFF // undefined (not a CD)
    };
    // Last session lead-in and last possible lead-out: FFFFFFFFh on a complete disc.
    d[16..24].fill(0xFF);
    Ok(truncated(d, alloc))
}

/// MECHANISM STATUS (0xBD, MMC-6 6.11): a single-slot drive, idle, no changer.
pub fn mechanism_status(cdb: &[u8], tray_open: bool) -> Result<Vec<u8>, Sense> {
    let alloc = be16(cdb, 8)?;
    let mut d = vec![0u8; 8];
    d[1] = (tray_open as u8) << 4; // DOOR OPEN
    Ok(truncated(d, alloc))
}

/// MM capabilities and mechanical status page (2Ah), the 22-byte MMC-2 layout that
/// Linux's sr driver and QEMU use: reads CD-ROM and DVD-ROM, writes nothing, tray
/// loading, eject, lock (with the current LOCK STATE). Nothing is changeable.
pub fn capabilities_page(pc: PageControl, locked: bool) -> [u8; 22] {
    let mut b = [0u8; 22];
    b[0] = MM_CAPABILITIES_PAGE;
    b[1] = 0x14;
    if pc == PageControl::Changeable {
        return b;
    }
    b[2] = 0x08; // DVD-ROM read (CD-ROM read is implied)
    b[6] = 0x29 | (locked as u8) << 1; // tray, eject, lock; LOCK STATE
                                       // Maximum and current read speed in kB/s (obsolete, still read by some hosts).
    let speed: u16 = 50 * 176;
    b[8..10].copy_from_slice(&speed.to_be_bytes());
    b[14..16].copy_from_slice(&speed.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const CD: Disc = Disc { nblocks: 25600 }; // 50 MiB
    const DVD: Disc = Disc {
        nblocks: CD_MAX_BLOCKS + 1,
    };

    fn toc_cdb(msf: bool, format: u8, track: u8, alloc: u16) -> [u8; 10] {
        let a = alloc.to_be_bytes();
        [
            0x43,
            (msf as u8) << 1,
            format,
            0,
            0,
            0,
            track,
            a[0],
            a[1],
            0,
        ]
    }

    #[test]
    fn toc_format_0() {
        let d = read_toc(&toc_cdb(false, 0, 0, 100), CD).unwrap();
        assert_eq!(d.len(), 20);
        assert_eq!(&d[..4], &[0, 18, 1, 1]);
        assert_eq!(&d[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&d[12..20], &[0, 0x14, 0xAA, 0, 0, 0, 0x64, 0]);
        // Track 1 is the same as track 0; 0xAA gives the lead-out only.
        assert_eq!(read_toc(&toc_cdb(false, 0, 1, 100), CD).unwrap(), d);
        let lo = read_toc(&toc_cdb(false, 0, 0xAA, 100), CD).unwrap();
        assert_eq!(&lo[..4], &[0, 10, 1, 1]);
        assert_eq!(lo[6], 0xAA);
        // MSF: LBA 0 is 00:02:00; 25600 + 150 frames = 5:43:25.
        let m = read_toc(&toc_cdb(true, 0, 0, 100), CD).unwrap();
        assert_eq!(&m[8..12], &[0, 0, 2, 0]);
        assert_eq!(&m[16..20], &[0, 5, 43, 25]);
        // Allocation length.
        assert_eq!(read_toc(&toc_cdb(false, 0, 0, 4), CD).unwrap().len(), 4);
        // SFF-8020 format in byte 9.
        let mut legacy = toc_cdb(false, 0, 0, 100);
        legacy[9] = 0x40;
        assert_eq!(read_toc(&legacy, CD).unwrap().len(), 12);
    }

    #[test]
    fn toc_format_1_and_errors() {
        let d = read_toc(&toc_cdb(false, 1, 0, 100), CD).unwrap();
        assert_eq!(d, vec![0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
        assert_eq!(
            read_toc(&toc_cdb(false, 2, 0, 100), CD),
            Err(Sense::invalid_field_in_cdb(2, Some(3)))
        );
        assert_eq!(
            read_toc(&toc_cdb(false, 0, 2, 100), CD),
            Err(Sense::invalid_field_in_cdb(6, None))
        );
        let mut legacy = toc_cdb(false, 0, 0, 100);
        legacy[9] = 0x80;
        assert_eq!(
            read_toc(&legacy, CD),
            Err(Sense::invalid_field_in_cdb(9, Some(7)))
        );
        assert!(read_toc(&[0x43, 0, 0], CD).is_err());
        assert_eq!(msf(u64::MAX), [0, 0xFF, 59, 74]);
    }

    fn gc_cdb(rt: u8, start: u16, alloc: u16) -> [u8; 10] {
        let (s, a) = (start.to_be_bytes(), alloc.to_be_bytes());
        [0x46, rt, s[0], s[1], 0, 0, 0, a[0], a[1], 0]
    }

    /// Feature codes of a GET CONFIGURATION response.
    fn codes(d: &[u8]) -> Vec<u16> {
        let mut v = Vec::new();
        let mut p = 8;
        while p + 4 <= d.len() {
            v.push(u16::from_be_bytes([d[p], d[p + 1]]));
            p += 4 + d[p + 3] as usize;
        }
        v
    }

    #[test]
    fn get_configuration_rt() {
        let d = get_configuration(&gc_cdb(0, 0, 0xFFFF), Some(CD)).unwrap();
        assert_eq!(
            u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize,
            d.len() - 4
        );
        assert_eq!(&d[6..8], &[0, 8]); // CD-ROM
        assert_eq!(codes(&d), vec![0, 1, 2, 3, 0x10]);
        // Profile list: DVD-ROM not current, CD-ROM current.
        assert_eq!(&d[12..20], &[0, 0x10, 0, 0, 0, 0x08, 1, 0]);
        let dvd = get_configuration(&gc_cdb(0, 0, 0xFFFF), Some(DVD)).unwrap();
        assert_eq!(&dvd[6..8], &[0, 0x10]);
        // No medium: profile 0, Random Readable reported but not current.
        let none = get_configuration(&gc_cdb(0, 0, 0xFFFF), None).unwrap();
        assert_eq!(&none[6..8], &[0, 0]);
        assert_eq!(codes(&none), vec![0, 1, 2, 3, 0x10]);
        let cur = get_configuration(&gc_cdb(1, 0, 0xFFFF), None).unwrap();
        assert_eq!(codes(&cur), vec![0, 1, 2, 3]);
        // RT 01b from feature 2 on; RT 10b exactly one, or none.
        let from2 = get_configuration(&gc_cdb(1, 2, 0xFFFF), Some(CD)).unwrap();
        assert_eq!(codes(&from2), vec![2, 3, 0x10]);
        let one = get_configuration(&gc_cdb(2, 3, 0xFFFF), Some(CD)).unwrap();
        assert_eq!(codes(&one), vec![3]);
        assert_eq!(one[8 + 4], 0x39);
        let missing = get_configuration(&gc_cdb(2, 0x1E, 0xFFFF), Some(CD)).unwrap();
        assert_eq!(missing.len(), 8);
        assert_eq!(&missing[..4], &[0, 0, 0, 4]);
        assert_eq!(
            get_configuration(&gc_cdb(3, 0, 0xFFFF), Some(CD)),
            Err(Sense::invalid_field_in_cdb(1, Some(1)))
        );
        // The data length reports the full size even when truncated.
        let short = get_configuration(&gc_cdb(0, 0, 8), Some(CD)).unwrap();
        assert_eq!((short.len(), &short[..4]), (8, &d[..4]));
    }

    #[test]
    fn event_status() {
        let cdb = [0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
        let d = get_event_status(&cdb, MediaEvent::NewMedia, true, false).unwrap();
        assert_eq!(d, vec![0, 6, 4, 0x10, 2, 0x02, 0, 0]);
        let d = get_event_status(&cdb, MediaEvent::NoChange, false, true).unwrap();
        assert_eq!(&d[4..6], &[0, 0x01]);
        // Only unsupported classes requested: NEA.
        let other = [0x4A, 1, 0, 0, 0x42, 0, 0, 0, 8, 0];
        assert_eq!(
            get_event_status(&other, MediaEvent::NewMedia, true, false).unwrap(),
            vec![0, 2, 0x80, 0x10]
        );
        let not_polled = [0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8, 0];
        assert_eq!(
            get_event_status(&not_polled, MediaEvent::NoChange, true, false),
            Err(Sense::invalid_field_in_cdb(1, Some(0)))
        );
        assert_eq!(MediaEvent::from_u8(3), MediaEvent::MediaRemoval);
        assert_eq!(MediaEvent::from_u8(9), MediaEvent::NoChange);
    }

    #[test]
    fn disc_information_and_mechanism_status() {
        let d = read_disc_information(&[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], CD).unwrap();
        assert_eq!(d.len(), 34);
        assert_eq!(&d[..9], &[0, 32, 0x0E, 1, 1, 1, 1, 0x20, 0]);
        assert_eq!(
            read_disc_information(&[0x51, 1, 0, 0, 0, 0, 0, 0, 34, 0], CD),
            Err(Sense::invalid_field_in_cdb(1, Some(2)))
        );
        let dvd = read_disc_information(&[0x51, 0, 0, 0, 0, 0, 0, 0, 9, 0], DVD).unwrap();
        assert_eq!((dvd.len(), dvd[8]), (9, 0xFF));
        let m = mechanism_status(&[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], true).unwrap();
        assert_eq!(m, vec![0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert!(
            mechanism_status(&[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn capabilities() {
        let p = capabilities_page(PageControl::Current, true);
        assert_eq!((p[0], p[1] as usize + 2, p[6]), (0x2A, p.len(), 0x2B));
        let c = capabilities_page(PageControl::Changeable, true);
        assert!(c[2..].iter().all(|b| *b == 0));
    }
}
