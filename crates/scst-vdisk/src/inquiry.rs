//! INQUIRY, VPD pages and READ CAPACITY(16) data of a vdisk (docs/scst-reference.md 4.4).

use crate::backend::Backend;
use crate::config::{Handler, VdiskConfig};
use crate::sbc::Vdisk;
use scsi_wire::cdb::decode_inquiry;
use scsi_wire::inquiry::{
    self as wire, version, BlockLimits, Capacity16, ExtendedInquiry, PortIds, StdInquiry,
};
use scsi_wire::Sense;
use scst_core::CmdCtx;

/// VPD pages a disk reports, ascending (+ B2h when thin provisioned).
const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1];
/// Byte of the Block Device Characteristics page holding WABEREQ (bits 7-6) and
/// WACEREQ (bits 5-4) (SBC-4 6.6.2).
const VPD_B1_WABEREQ_BYTE: usize = 7;
/// Physical block size assumed for files (and block devices, until we ask them).
const PHYSICAL_BLOCK: u32 = 4096;

pub fn rotation_rate(cfg: &VdiskConfig) -> u16 {
    if cfg.rotational {
        15000
    } else {
        wire::NON_ROTATING
    }
}

/// Peripheral qualifier + type byte: a `dummy` nullio LUN reports "not connected,
/// unknown type" so that initiators skip it; through an ALUA port in the unavailable
/// or offline state the LU is "not connected" too, with its real type (scst-reference 4.4).
fn periph<B: Backend>(d: &Vdisk<B>, ctx: &CmdCtx<'_>) -> u8 {
    if d.cfg.dummy {
        (1 << 5) | wire::TYPE_UNKNOWN
    } else if ctx.alua.is_some_and(|a| a.state.lu_not_accessible()) {
        1 << 5
    } else {
        0
    }
}

/// TPGS 01b (implicit ALUA) for a device in a device group; explicit ALUA (SET TARGET
/// PORT GROUPS) is not implemented.
const TPGS_IMPLICIT: u8 = 0x01;

/// INQUIRY: standard data or a VPD page, cut to the allocation length.
pub fn inquiry<B: Backend>(d: &Vdisk<B>, ctx: &CmdCtx<'_>, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    let c = decode_inquiry(cdb)?;
    if c.cmddt {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let pq = periph(d, ctx);
    let mut out = if !c.evpd {
        if c.page != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        let id = d.live.identity.load();
        let p = StdInquiry {
            qualifier: pq >> 5,
            device_type: pq & 0x1F,
            removable: d.cfg.removable,
            // Our LUN formats (peripheral / flat) are SAM hierarchical ones; the core's
            // answer for unknown LUNs sets HiSup too.
            hierarchical_luns: true,
            // The core's copy manager executes EXTENDED COPY (scst-reference 4.4: 3PC=1).
            third_party_copy: true,
            tpgs: if ctx.alua.is_some() { TPGS_IMPLICIT } else { 0 },
            versions: vec![
                version::SAM_4,
                version::ISCSI,
                version::SPC_4,
                version::SBC_3,
            ],
            vend_specific: id.vend_specific.clone(),
            ..Default::default()
        };
        wire::standard_inquiry(&id, &p)
    } else {
        match c.page {
            0x00 => {
                let mut pages = VPD_PAGES.to_vec();
                if d.thin() {
                    pages.push(0xB2);
                }
                wire::vpd_supported_pages(pq, &pages)
            }
            0x80 => wire::vpd_unit_serial(pq, &d.live.identity.load().usn),
            0x83 => {
                let ports = PortIds {
                    rel_tgt_id: ctx.rel_tgt_id,
                    tpg_id: ctx.alua.and_then(|a| a.tpg_id),
                };
                wire::vpd_device_id(pq, &d.live.identity.load(), ports)
            }
            0x86 => {
                // V_SUP: VERIFY reads back through a volatile cache only in write-back mode.
                let e = ExtendedInquiry {
                    v_sup: d.mode.wce(),
                    ..Default::default()
                };
                wire::vpd_extended_inquiry(pq, &e)
            }
            0xB0 => wire::vpd_block_limits(pq, &block_limits(d)),
            0xB1 => {
                let mut page = wire::vpd_block_characteristics(pq, rotation_rate(&d.cfg));
                // WABEREQ and WACEREQ 01b: after a SANITIZE BLOCK ERASE or CRYPTOGRAPHIC
                // ERASE reads succeed (they return zeros); 00b (not specified) where
                // neither is supported.
                if d.block_erase_supported() {
                    if let Some(b) = page.get_mut(VPD_B1_WABEREQ_BYTE) {
                        *b |= (0x01 << 6) | (0x01 << 4);
                    }
                }
                page
            }
            0xB2 if d.thin() => d.vpd_provisioning(pq),
            _ => return Err(Sense::invalid_field_in_cdb(2, None)),
        }
    };
    out.truncate(c.alloc_len as usize);
    Ok(out)
}

fn block_limits<B: Backend>(d: &Vdisk<B>) -> BlockLimits {
    let bs = d.block_size();
    let max = d.max_xfer_blocks();
    let mut l = BlockLimits {
        // A zero WRITE SAME count means "to the end of the medium" (provisioning.rs).
        wsnz: false,
        // At most 255: the NUMBER OF LOGICAL BLOCKS field is one byte.
        max_compare_and_write: d.max_compare_and_write().min(255) as u8,
        opt_xfer_granularity: (PHYSICAL_BLOCK / bs).max(1) as u16,
        max_xfer_len: max,
        opt_xfer_len: (d.live.opt_trans_len() / bs).min(max),
        atomic: d.atomic_limits(),
        ..Default::default()
    };
    d.provisioning_limits(&mut l, PHYSICAL_BLOCK);
    l
}

/// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY(16)); also the unit of
/// atomic writes.
pub(crate) fn lb_per_pb_exp<B: Backend>(d: &Vdisk<B>) -> u8 {
    let bs = d.block_size();
    if d.cfg.handler != Handler::Nullio && d.live.lb_per_pb_exp() && bs < PHYSICAL_BLOCK {
        (PHYSICAL_BLOCK / bs).trailing_zeros() as u8
    } else {
        0
    }
}

pub fn read_capacity_16<B: Backend>(d: &Vdisk<B>) -> [u8; 32] {
    let bs = d.block_size();
    let c = Capacity16 {
        lb_per_pb_exp: lb_per_pb_exp(d),
        // Deallocation punches holes, which read back as zeros.
        lbpme: d.thin(),
        lbprz: d.thin(),
        ..Default::default()
    };
    wire::read_capacity_16(d.nblocks(), bs, &c)
}

#[cfg(test)]
mod tests {
    use crate::test_util::{nullio, run_ctx, CTX};
    use scst_core::{AluaState, CmdCtx, PortView};

    const STD_INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 96, 0];
    const VPD_83: [u8; 6] = [0x12, 1, 0x83, 1, 0, 0];

    fn through(state: AluaState, tpg_id: Option<u16>) -> CmdCtx<'static> {
        CmdCtx {
            alua: Some(PortView { tpg_id, state }),
            ..CTX
        }
    }

    /// The target port group designator (association 01b, type 5) of VPD 0x83.
    fn tpg_designator(page: &[u8]) -> Option<u16> {
        let mut off = 4;
        while off + 4 <= page.len() {
            let len = page[off + 3] as usize;
            if page[off + 1] & 0x3F == 0x15 && len == 4 {
                return Some(u16::from_be_bytes([page[off + 6], page[off + 7]]));
            }
            off += 4 + len;
        }
        None
    }

    #[test]
    fn tpgs_and_tpg_designator_only_in_a_device_group() {
        let d = nullio(&[]);
        // No device group: TPGS 0, no designator.
        let std = run_ctx(&d, &CTX, &STD_INQUIRY, vec![]).data;
        assert_eq!((std[5] >> 4) & 3, 0);
        assert_eq!(
            tpg_designator(&run_ctx(&d, &CTX, &VPD_83, vec![]).data),
            None
        );
        // In a device group: TPGS implicit, and the port's group in VPD 0x83.
        let ctx = through(AluaState::Active, Some(0x1234));
        let std = run_ctx(&d, &ctx, &STD_INQUIRY, vec![]).data;
        assert_eq!((std[5] >> 4) & 3, 1);
        assert_eq!(std[0], 0x00);
        let vpd = run_ctx(&d, &ctx, &VPD_83, vec![]).data;
        assert_eq!(tpg_designator(&vpd), Some(0x1234));
        // A port outside the group's target groups: TPGS still set, no designator.
        let ctx = through(AluaState::Active, None);
        let std = run_ctx(&d, &ctx, &STD_INQUIRY, vec![]).data;
        assert_eq!((std[5] >> 4) & 3, 1);
        assert_eq!(
            tpg_designator(&run_ctx(&d, &ctx, &VPD_83, vec![]).data),
            None
        );
    }

    #[test]
    fn unavailable_and_offline_ports_report_pq_1() {
        let d = nullio(&[]);
        for (state, byte0) in [
            (AluaState::Standby, 0x00),
            (AluaState::Unavailable, 0x20),
            (AluaState::Offline, 0x20),
        ] {
            let std = run_ctx(&d, &through(state, Some(1)), &STD_INQUIRY, vec![]).data;
            assert_eq!(std[0], byte0, "{state:?}");
        }
    }
}
