//! Mode page state of a vdisk and MODE SENSE / MODE SELECT (docs/scst-reference.md 4.3, 4.5).
//!
//! The changeable values (WCE, and the control page's D_SENSE, DPICZ, TMF_ONLY, QAM,
//! QErr, SWP, TAS) live in atomics: the write path reads WCE and SWP on every command
//! and must not take a lock for it. MODE SELECT serialises on a mutex so that two
//! concurrent selects do not interleave their validation and update.

use parking_lot::Mutex;
use scsi_wire::cdb::{decode_mode_select, decode_mode_sense, PageControl};
use scsi_wire::mode::{self, page, BlockDescriptor, CachingPage, ControlPage};
use scsi_wire::Sense;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Busy timeout reported in the control page (SCST's value).
const BUSY_TIMEOUT: u16 = 0x024B;

/// What MODE SENSE needs to know about the device besides the mode state.
#[derive(Debug, Clone, Copy)]
pub struct ModeGeometry {
    pub nblocks: u64,
    pub block_size: u32,
    pub rotation_rate: u16,
    /// WP bit: the LUN or the device is read-only (or SWP is set).
    pub write_protected: bool,
    /// PREVENT MEDIUM REMOVAL is in effect (vcdrom page 2Ah LOCK STATE).
    pub medium_locked: bool,
}

/// The mode pages a disk reports (scst-reference 4.5), in MODE SENSE "all pages" order.
const DISK_PAGES: [u8; 7] = [
    page::RW_ERROR_RECOVERY,
    page::DISCONNECT_RECONNECT,
    page::FORMAT_DEVICE,
    page::RIGID_GEOMETRY,
    page::CACHING,
    page::CONTROL,
    page::INFORMATIONAL_EXCEPTIONS,
];
/// A vcdrom's pages: SCST's 01h, 0Ah, 1Ch plus the MM capabilities page 2Ah that
/// initiators' CD drivers (Linux sr, Windows cdrom.sys) read for the drive's abilities.
const CDROM_PAGES: [u8; 4] = [
    page::RW_ERROR_RECOVERY,
    page::CONTROL,
    page::INFORMATIONAL_EXCEPTIONS,
    crate::mmc::MM_CAPABILITIES_PAGE,
];

pub struct ModeState {
    /// !(write_through || nv_cache); `write_through` is writable at run time.
    wce_default: AtomicBool,
    /// WCE is changeable unless nv_cache (the cache is declared non-volatile).
    wce_changeable: bool,
    wce: AtomicBool,
    control_default: ControlPage,
    /// Bytes 2..6 of the current control page, packed.
    control: AtomicU32,
    /// An MMC device (vcdrom): CD page set, no caching page, no DPOFUA.
    cdrom: bool,
    select_lock: Mutex<()>,
}

fn pack(c: &ControlPage) -> u32 {
    let b = c.encode();
    u32::from_be_bytes([b[2], b[3], b[4], b[5]])
}

/// The control page fields MODE SELECT may change (as a mask page).
const CONTROL_CHANGEABLE: ControlPage = ControlPage {
    tst: 0,
    tmf_only: true,
    dpicz: true,
    d_sense: true,
    qam: 0x0F,
    qerr: 0x03,
    swp: true,
    ato: false,
    tas: true,
    busy_timeout: 0,
};

impl ModeState {
    pub fn new(write_through: bool, nv_cache: bool, tst: u8) -> ModeState {
        let control_default = ControlPage {
            tst,
            qam: 1, // unrestricted reordering
            busy_timeout: BUSY_TIMEOUT,
            ..Default::default()
        };
        let wce_default = !(write_through || nv_cache);
        ModeState {
            wce_default: AtomicBool::new(wce_default),
            wce_changeable: !nv_cache,
            wce: AtomicBool::new(wce_default),
            control: AtomicU32::new(pack(&control_default)),
            control_default,
            cdrom: false,
            select_lock: Mutex::new(()),
        }
    }

    /// Mode state of a vcdrom: read-only media, so no write cache to report.
    pub fn new_cdrom(tst: u8) -> ModeState {
        ModeState {
            cdrom: true,
            ..ModeState::new(true, true, tst)
        }
    }

    fn pages(&self) -> &'static [u8] {
        if self.cdrom {
            &CDROM_PAGES
        } else {
            &DISK_PAGES
        }
    }

    /// Write cache enabled: writes may stay volatile until SYNCHRONIZE CACHE.
    pub fn wce(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }

    /// The `write_through` attribute changed at run time: WCE's default and current
    /// value become !(write_through || nv_cache) (scst-reference 4.5), as if the device had been
    /// created so. Serialised with MODE SELECT.
    pub fn set_write_through(&self, write_through: bool) {
        let _g = self.select_lock.lock();
        // nv_cache is exactly "WCE not changeable"; it pins WCE at 0.
        let wce = self.wce_changeable && !write_through;
        self.wce_default.store(wce, Ordering::Relaxed);
        self.wce.store(wce, Ordering::Relaxed);
    }

    pub fn control(&self) -> ControlPage {
        let [b2, b3, b4, b5] = self.control.load(Ordering::Relaxed).to_be_bytes();
        let mut c = ControlPage::decode(&[page::CONTROL, 0x0A, b2, b3, b4, b5]);
        c.busy_timeout = BUSY_TIMEOUT;
        c
    }

    pub fn d_sense(&self) -> bool {
        self.control().d_sense
    }

    pub fn swp(&self) -> bool {
        self.control().swp
    }

    /// LOGICAL UNIT RESET: back to the defaults (nothing is saved). PREVENT MEDIUM
    /// REMOVAL is the device's (removable.rs).
    pub fn reset(&self) {
        let _g = self.select_lock.lock();
        self.wce
            .store(self.wce_default.load(Ordering::Relaxed), Ordering::Relaxed);
        self.control
            .store(pack(&self.control_default), Ordering::Relaxed);
    }

    fn caching(&self, pc: PageControl) -> [u8; CachingPage::LEN] {
        let wce = match pc {
            PageControl::Changeable => self.wce_changeable,
            PageControl::Default | PageControl::Saved => self.wce_default.load(Ordering::Relaxed),
            PageControl::Current => self.wce(),
        };
        CachingPage { wce, rcd: false }.encode(pc)
    }

    fn control_page(&self, pc: PageControl) -> [u8; ControlPage::LEN] {
        match pc {
            PageControl::Changeable => CONTROL_CHANGEABLE.encode(),
            PageControl::Default | PageControl::Saved => self.control_default.encode(),
            PageControl::Current => self.control().encode(),
        }
    }

    /// Append page `code` for `pc`; false when the page is not supported.
    fn push_page(&self, out: &mut Vec<u8>, code: u8, pc: PageControl, g: &ModeGeometry) -> bool {
        if !self.pages().contains(&code) {
            return false;
        }
        match code {
            page::RW_ERROR_RECOVERY => out.extend_from_slice(&mode::rw_error_recovery_page(pc)),
            page::DISCONNECT_RECONNECT => {
                out.extend_from_slice(&mode::disconnect_reconnect_page(pc))
            }
            page::FORMAT_DEVICE => {
                out.extend_from_slice(&mode::format_device_page(pc, g.block_size))
            }
            page::RIGID_GEOMETRY => {
                out.extend_from_slice(&mode::rigid_geometry_page(pc, g.nblocks, g.rotation_rate))
            }
            page::CACHING => out.extend_from_slice(&self.caching(pc)),
            page::CONTROL => out.extend_from_slice(&self.control_page(pc)),
            page::INFORMATIONAL_EXCEPTIONS => {
                out.extend_from_slice(&mode::informational_exceptions_page(pc))
            }
            crate::mmc::MM_CAPABILITIES_PAGE => {
                out.extend_from_slice(&crate::mmc::capabilities_page(pc, g.medium_locked))
            }
            _ => return false,
        }
        true
    }

    /// MODE SENSE(6)/(10): the parameter data, already cut to the allocation length.
    pub fn mode_sense(&self, cdb: &[u8], g: &ModeGeometry) -> Result<Vec<u8>, Sense> {
        let c = decode_mode_sense(cdb)?;
        if c.pc == PageControl::Saved {
            return Err(Sense::SAVING_PARAMS_UNSUPPORTED);
        }
        if c.subpage != 0 {
            return Err(Sense::invalid_field_in_cdb(3, None));
        }
        let mut pages = Vec::with_capacity(128);
        if c.page == page::ALL {
            for &code in self.pages() {
                self.push_page(&mut pages, code, c.pc, g);
            }
        } else if !self.push_page(&mut pages, c.page, c.pc, g) {
            return Err(Sense::invalid_field_in_cdb(2, Some(5)));
        }
        let wp = g.write_protected || self.swp();
        // DPOFUA is SBC's; WP is reported on a vcdrom too, as SCST does (MMC-6 calls
        // the byte reserved, but hosts such as libiscsi read write protection there).
        let wp = if wp { mode::DSP_WP } else { 0 };
        let dsp = if self.cdrom {
            wp
        } else {
            mode::DSP_DPOFUA | wp
        };
        let bd = (!c.dbd).then_some(BlockDescriptor {
            nblocks: g.nblocks,
            block_size: g.block_size,
            long: c.llbaa,
        });
        let mut data = mode::mode_sense_data(c.ten, 0, dsp, bd, &pages);
        data.truncate(c.alloc_len as usize);
        Ok(data)
    }

    /// MODE SELECT(6)/(10): validate every page first, then apply them together.
    pub fn mode_select(&self, cdb: &[u8], data_out: &[u8], block_size: u32) -> Result<(), Sense> {
        let c = decode_mode_select(cdb)?;
        if !c.pf {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        if c.sp {
            return Err(Sense::SAVING_PARAMS_UNSUPPORTED);
        }
        if c.param_len == 0 {
            return Ok(());
        }
        let list = data_out
            .get(..c.param_len as usize)
            .ok_or(Sense::PARAM_LIST_LENGTH_ERROR)?;
        let parsed = mode::parse_select_list(c.ten, list)?;
        if let Some(bs) = parsed.block_size {
            // The block length cannot be changed (0 conventionally means "unchanged").
            if bs != 0 && bs != block_size {
                let hdr = if c.ten { 8 } else { 4 };
                let off = if list.get(4).is_some_and(|b| c.ten && b & 1 != 0) {
                    12
                } else {
                    5
                };
                return Err(Sense::invalid_field_in_param(hdr + off, None));
            }
        }
        let _g = self.select_lock.lock();
        let mut wce = self.wce();
        let mut control = self.control();
        for p in &parsed.pages {
            let at = |i: usize, bit: Option<u8>| {
                Sense::invalid_field_in_param((p.offset + i) as u16, bit)
            };
            let (current, changeable) = match (p.code, p.spf) {
                // A vcdrom has no caching page.
                (page::CACHING, _) if self.cdrom => return Err(at(0, Some(5))),
                (page::CACHING, false) if p.bytes.len() == CachingPage::LEN => (
                    self.caching(PageControl::Current).to_vec(),
                    self.caching(PageControl::Changeable).to_vec(),
                ),
                (page::CONTROL, false) if p.bytes.len() == ControlPage::LEN => (
                    self.control_page(PageControl::Current).to_vec(),
                    self.control_page(PageControl::Changeable).to_vec(),
                ),
                (page::CACHING | page::CONTROL, false) => return Err(at(1, None)),
                _ => return Err(at(0, Some(5))),
            };
            mode::check_changeable(&current, &changeable, p.bytes)
                .map_err(|(i, bit)| at(i, Some(bit)))?;
            if p.code == page::CACHING {
                wce = CachingPage::decode(p.bytes).wce;
            } else {
                let new = ControlPage::decode(p.bytes);
                // QErr 2 and QAM values other than 0/1 are reserved.
                if new.qerr == 2 {
                    return Err(at(3, Some(2)));
                }
                if new.qam > 1 {
                    return Err(at(3, Some(7)));
                }
                control = new;
            }
        }
        self.wce.store(wce, Ordering::Relaxed);
        self.control.store(pack(&control), Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEO: ModeGeometry = ModeGeometry {
        nblocks: 2048,
        block_size: 512,
        rotation_rate: 15000,
        write_protected: false,
        medium_locked: false,
    };

    fn sense6(page: u8, pc: u8) -> [u8; 6] {
        [0x1A, 0, (pc << 6) | page, 0, 255, 0]
    }

    /// MODE SELECT(6) with header, no block descriptor, one page.
    fn select6(pg: &[u8]) -> (Vec<u8>, [u8; 6]) {
        let mut d = vec![0, 0, 0, 0];
        d.extend_from_slice(pg);
        let cdb = [0x15, 0x10, 0, 0, d.len() as u8, 0];
        (d, cdb)
    }

    #[test]
    fn sense_all_pages_and_header() {
        let m = ModeState::new(false, false, 1);
        let d = m.mode_sense(&sense6(0x3F, 0), &GEO).unwrap();
        assert_eq!(d[0] as usize, d.len() - 1);
        assert_eq!((d[2], d[3]), (0x10, 8)); // DPOFUA, block descriptor
        assert_eq!(&d[4..12], &[0, 0, 8, 0, 0, 0, 2, 0]);
        let codes: Vec<u8> = {
            let mut v = Vec::new();
            let mut p = 12;
            while p < d.len() {
                v.push(d[p] & 0x3F);
                p += 2 + d[p + 1] as usize;
            }
            v
        };
        assert_eq!(codes, vec![1, 2, 3, 4, 8, 0x0A, 0x1C]);
        // WP and DBD.
        let wp = ModeGeometry {
            write_protected: true,
            ..GEO
        };
        let d = m.mode_sense(&[0x1A, 0x08, 0x08, 0, 255, 0], &wp).unwrap();
        assert_eq!((d[2], d[3], d.len()), (0x90, 0, 4 + 20));
        // Allocation length honoured.
        assert_eq!(
            m.mode_sense(&[0x1A, 0, 0x3F, 0, 10, 0], &GEO)
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn sense_field_errors() {
        let m = ModeState::new(false, false, 1);
        assert_eq!(
            m.mode_sense(&sense6(0x05, 0), &GEO),
            Err(Sense::invalid_field_in_cdb(2, Some(5)))
        );
        assert_eq!(
            m.mode_sense(&[0x1A, 0, 0x08, 1, 255, 0], &GEO),
            Err(Sense::invalid_field_in_cdb(3, None))
        );
        assert_eq!(
            m.mode_sense(&sense6(0x08, 3), &GEO),
            Err(Sense::SAVING_PARAMS_UNSUPPORTED)
        );
        assert!(m.mode_sense(&[0x1A, 0], &GEO).is_err());
    }

    #[test]
    fn caching_select_round_trip_and_reset() {
        let m = ModeState::new(false, false, 1);
        assert!(m.wce());
        let mut pg = CachingPage {
            wce: false,
            rcd: false,
        }
        .encode(PageControl::Current);
        pg[0] |= 0x80; // PS echoed back from MODE SENSE is ignored
        let (d, cdb) = select6(&pg);
        m.mode_select(&cdb, &d, 512).unwrap();
        assert!(!m.wce());
        let s = m.mode_sense(&[0x1A, 0x08, 0x08, 0, 255, 0], &GEO).unwrap();
        assert_eq!(s[4 + 2] & 0x04, 0);
        m.reset();
        assert!(m.wce());
    }

    #[test]
    fn nv_cache_wce_not_changeable() {
        let m = ModeState::new(false, true, 1);
        assert!(!m.wce());
        let ch = m.mode_sense(&[0x1A, 0x08, 0x48, 0, 255, 0], &GEO).unwrap();
        assert_eq!(ch[4 + 2], 0);
        let pg = CachingPage {
            wce: true,
            rcd: false,
        }
        .encode(PageControl::Current);
        let (d, cdb) = select6(&pg);
        assert_eq!(
            m.mode_select(&cdb, &d, 512),
            Err(Sense::invalid_field_in_param(6, Some(2)))
        );
    }

    #[test]
    fn control_select() {
        let m = ModeState::new(false, false, 1);
        let mut c = m.control();
        assert_eq!((c.tst, c.qam, c.d_sense), (1, 1, false));
        c.d_sense = true;
        c.swp = true;
        let (d, cdb) = select6(&c.encode());
        m.mode_select(&cdb, &d, 512).unwrap();
        assert!(m.d_sense() && m.swp());
        // TST is not changeable.
        c.tst = 0;
        let (d, cdb) = select6(&c.encode());
        assert_eq!(
            m.mode_select(&cdb, &d, 512),
            Err(Sense::invalid_field_in_param(6, Some(5)))
        );
        // QErr 2 is reserved.
        let mut q = m.control();
        q.qerr = 2;
        let (d, cdb) = select6(&q.encode());
        assert_eq!(
            m.mode_select(&cdb, &d, 512),
            Err(Sense::invalid_field_in_param(7, Some(2)))
        );
        m.reset();
        assert!(!m.d_sense() && !m.swp());
    }

    #[test]
    fn select_errors() {
        let m = ModeState::new(false, false, 1);
        let pg = CachingPage::default().encode(PageControl::Current);
        let (d, _) = select6(&pg);
        // PF=0
        assert_eq!(
            m.mode_select(&[0x15, 0, 0, 0, 24, 0], &d, 512),
            Err(Sense::invalid_field_in_cdb(1, Some(4)))
        );
        // SP=1
        assert_eq!(
            m.mode_select(&[0x15, 0x11, 0, 0, 24, 0], &d, 512),
            Err(Sense::SAVING_PARAMS_UNSUPPORTED)
        );
        // Data-out shorter than the parameter list length.
        assert_eq!(
            m.mode_select(&[0x15, 0x10, 0, 0, 30, 0], &d, 512),
            Err(Sense::PARAM_LIST_LENGTH_ERROR)
        );
        // Unsupported page.
        let (d, cdb) = select6(&mode::rw_error_recovery_page(PageControl::Current));
        assert_eq!(
            m.mode_select(&cdb, &d, 512),
            Err(Sense::invalid_field_in_param(4, Some(5)))
        );
        // Block descriptor with another block length.
        let mut d = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
        d.extend_from_slice(&pg);
        let cdb = [0x15, 0x10, 0, 0, d.len() as u8, 0];
        assert_eq!(
            m.mode_select(&cdb, &d, 512),
            Err(Sense::invalid_field_in_param(9, None))
        );
        // Zero-length list is a no-op.
        assert_eq!(m.mode_select(&[0x15, 0x10, 0, 0, 0, 0], &[], 512), Ok(()));
    }
}
