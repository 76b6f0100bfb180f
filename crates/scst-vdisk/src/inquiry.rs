//! INQUIRY, VPD pages and READ CAPACITY(16) data of a vdisk (spec/scst.md 4.4).

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
/// unknown type" so that initiators skip it.
fn periph<B: Backend>(d: &Vdisk<B>) -> u8 {
    if d.cfg.dummy {
        (1 << 5) | wire::TYPE_UNKNOWN
    } else {
        0
    }
}

/// INQUIRY: standard data or a VPD page, cut to the allocation length.
pub fn inquiry<B: Backend>(d: &Vdisk<B>, ctx: &CmdCtx<'_>, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    let c = decode_inquiry(cdb)?;
    if c.cmddt {
        return Err(Sense::invalid_field_in_cdb(1, Some(1)));
    }
    let pq = periph(d);
    let mut out = if !c.evpd {
        if c.page != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None));
        }
        let p = StdInquiry {
            qualifier: pq >> 5,
            device_type: pq & 0x1F,
            removable: d.cfg.removable,
            // Our LUN formats (peripheral / flat) are SAM hierarchical ones; the core's
            // answer for unknown LUNs sets HiSup too.
            hierarchical_luns: true,
            // The core's copy manager executes EXTENDED COPY (spec 4.4: 3PC=1).
            third_party_copy: true,
            versions: vec![
                version::SAM_4,
                version::ISCSI,
                version::SPC_4,
                version::SBC_3,
            ],
            ..Default::default()
        };
        wire::standard_inquiry(&d.cfg.identity, &p)
    } else {
        match c.page {
            0x00 => {
                let mut pages = VPD_PAGES.to_vec();
                if d.thin() {
                    pages.push(0xB2);
                }
                wire::vpd_supported_pages(pq, &pages)
            }
            0x80 => wire::vpd_unit_serial(pq, &d.cfg.identity.usn),
            0x83 => {
                let ports = PortIds {
                    rel_tgt_id: ctx.rel_tgt_id,
                    tpg_id: None,
                };
                wire::vpd_device_id(pq, &d.cfg.identity, ports)
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
                // WABEREQ 01b: after a SANITIZE BLOCK ERASE reads succeed (they return
                // zeros); 00b (not specified) where BLOCK ERASE is not supported.
                if d.block_erase_supported() {
                    if let Some(b) = page.get_mut(VPD_B1_WABEREQ_BYTE) {
                        *b |= 0x01 << 6;
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
        wsnz: true,
        // At most 255: the NUMBER OF LOGICAL BLOCKS field is one byte.
        max_compare_and_write: d.max_compare_and_write().min(255) as u8,
        opt_xfer_granularity: (PHYSICAL_BLOCK / bs).max(1) as u16,
        max_xfer_len: max,
        opt_xfer_len: (d.cfg.opt_trans_len / bs).min(max),
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
    if d.cfg.handler != Handler::Nullio && d.cfg.lb_per_pb_exp && bs < PHYSICAL_BLOCK {
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
    wire::read_capacity_16(d.nblocks, bs, &c)
}
