//! How many data-out bytes a CDB transfers (`Device::data_out_len`): what the core
//! sizes a command's data-out buffer to and the transport computes residuals from
//! (SPC-4 4.2.5.4, RFC 7143 11.4.5).
//!
//! Only the CDB decides; a CDB too short for its length field gives `None` and the
//! command itself then fails with the field error.

use scsi_wire::cdb::{be16, be32, decode_rw, opcode, u8_at, RwKind};

/// Opcodes with data-out that the emulation does not name elsewhere.
mod op {
    pub const SEND_DIAGNOSTIC: u8 = 0x1D;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SANITIZE: u8 = crate::sanitize::SANITIZE;
}

/// `blocks` logical blocks of `block_size` bytes. A length that does not fit in 32
/// bits saturates: the core refuses such a buffer before the device sees it.
fn blocks_len(blocks: u64, block_size: u32) -> u32 {
    blocks
        .checked_mul(block_size as u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(u32::MAX)
}

/// Data-out bytes of `cdb` on a device with `block_size`-byte blocks, or `None` when
/// the command transfers no data-out (or the CDB cannot be decoded).
pub fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u32> {
    use opcode::*;
    let op = *cdb.first()?;
    let blocks = |n: u64| Some(blocks_len(n, block_size));
    match op {
        WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 | WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12
        | WRITE_AND_VERIFY_16 | VERIFY_10 | VERIFY_12 | VERIFY_16 => {
            let rw = decode_rw(cdb).ok()?;
            match (rw.kind, rw.bytchk) {
                // VERIFY with BYTCHK 0 checks the medium only: no data-out.
                (RwKind::Verify, 0) => None,
                // BYTCHK 11b: one block, compared against every block in the range.
                (RwKind::Verify, 3) => blocks(u64::from(rw.blocks.min(1))),
                // BYTCHK 10b is reserved: the command fails, nothing to transfer.
                (RwKind::Verify, 2) => None,
                _ => blocks(u64::from(rw.blocks)),
            }
        }
        WRITE_SAME_10 => blocks(1),
        // NDOB: no data-out buffer, the block is all zeros.
        WRITE_SAME_16 => {
            if u8_at(cdb, 1).ok()? & 0x01 != 0 {
                Some(0)
            } else {
                blocks(1)
            }
        }
        // Parameter lists with a 16-bit PARAMETER LIST LENGTH at bytes 7..9.
        UNMAP | MODE_SELECT_10 | LOG_SELECT | op::SANITIZE => be16(cdb, 7).ok().map(u32::from),
        MODE_SELECT_6 => u8_at(cdb, 4).ok().map(u32::from),
        op::SEND_DIAGNOSTIC => be16(cdb, 3).ok().map(u32::from),
        // Verify data followed by write data, NUMBER OF LOGICAL BLOCKS each.
        COMPARE_AND_WRITE => blocks(2 * u64::from(u8_at(cdb, 13).ok()?)),
        op::ORWRITE_16 => blocks(u64::from(be32(cdb, 10).ok()?)),
        op::WRITE_ATOMIC_16 => blocks(u64::from(be16(cdb, 12).ok()?)),
        PERSISTENT_RESERVE_OUT => be32(cdb, 5).ok(),
        EXTENDED_COPY => be32(cdb, 10).ok(),
        // SET TARGET PORT GROUPS and the other MAINTENANCE OUT service actions.
        MAINTENANCE_OUT => be32(cdb, 6).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb10(op: u8, flags: u8, blocks: u16) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = op;
        c[1] = flags;
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    fn cdb16(op: u8, flags: u8, blocks: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op;
        c[1] = flags;
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    #[test]
    fn writes_transfer_blocks() {
        assert_eq!(data_out_len(&[0x0A, 0, 0, 0, 2, 0], 512), Some(1024));
        // WRITE(6) length 0 means 256 blocks.
        assert_eq!(data_out_len(&[0x0A, 0, 0, 0, 0, 0], 512), Some(256 * 512));
        assert_eq!(data_out_len(&cdb10(0x2A, 0, 3), 4096), Some(3 * 4096));
        assert_eq!(data_out_len(&cdb10(0x2A, 0, 0), 512), Some(0));
        let mut w12 = [0u8; 12];
        w12[0] = 0xAA;
        w12[9] = 5;
        assert_eq!(data_out_len(&w12, 512), Some(2560));
        assert_eq!(data_out_len(&cdb16(0x8A, 0, 7), 512), Some(3584));
        // Overflow saturates instead of wrapping.
        assert_eq!(
            data_out_len(&cdb16(0x8A, 0, u32::MAX), 4096),
            Some(u32::MAX)
        );
        for op in [0x2E, 0xAE, 0x8E] {
            let c: Vec<u8> = match op {
                0x2E => cdb10(op, 0x02, 2).to_vec(),
                0xAE => {
                    let mut c = vec![0u8; 12];
                    c[0] = op;
                    c[9] = 2;
                    c
                }
                _ => cdb16(op, 0, 2).to_vec(),
            };
            assert_eq!(data_out_len(&c, 512), Some(1024), "{op:#x}");
        }
        // Short CDBs: no answer, the command reports the field error.
        assert_eq!(data_out_len(&[0x8A, 0, 0], 512), None);
        assert_eq!(data_out_len(&[], 512), None);
    }

    #[test]
    fn verify_depends_on_bytchk() {
        assert_eq!(data_out_len(&cdb10(0x2F, 0x00, 4), 512), None);
        assert_eq!(data_out_len(&cdb10(0x2F, 0x02, 4), 512), Some(2048));
        assert_eq!(data_out_len(&cdb10(0x2F, 0x04, 4), 512), None);
        assert_eq!(data_out_len(&cdb10(0x2F, 0x06, 4), 512), Some(512));
        assert_eq!(data_out_len(&cdb10(0x2F, 0x06, 0), 512), Some(0));
        assert_eq!(data_out_len(&cdb16(0x8F, 0x02, 3), 4096), Some(3 * 4096));
    }

    #[test]
    fn write_same_and_parameter_lists() {
        assert_eq!(data_out_len(&cdb10(0x41, 0x08, 100), 512), Some(512));
        assert_eq!(data_out_len(&cdb16(0x93, 0x00, 100), 4096), Some(4096));
        assert_eq!(data_out_len(&cdb16(0x93, 0x01, 100), 4096), Some(0));
        assert_eq!(data_out_len(&cdb10(0x42, 0, 24), 512), Some(24));
        assert_eq!(data_out_len(&cdb10(0x48, 0x01, 516), 512), Some(516));
        assert_eq!(data_out_len(&[0x15, 0x10, 0, 0, 28, 0], 512), Some(28));
        assert_eq!(data_out_len(&cdb10(0x55, 0x10, 300), 512), Some(300));
        assert_eq!(data_out_len(&[0x1D, 0x10, 0, 0, 8, 0], 512), Some(8));
        let mut caw = [0u8; 16];
        caw[0] = 0x89;
        caw[13] = 3;
        assert_eq!(data_out_len(&caw, 512), Some(3072));
        assert_eq!(data_out_len(&cdb16(0x8B, 0, 2), 512), Some(1024));
        let mut wa = [0u8; 16];
        wa[0] = 0x9C;
        wa[13] = 4;
        assert_eq!(data_out_len(&wa, 512), Some(2048));
        let mut pr = [0u8; 10];
        pr[0] = 0x5F;
        pr[8] = 24;
        assert_eq!(data_out_len(&pr, 512), Some(24));
        let mut xc = [0u8; 16];
        xc[0] = 0x83;
        xc[13] = 0x40;
        assert_eq!(data_out_len(&xc, 512), Some(0x40));
    }

    #[test]
    fn commands_without_data_out() {
        for cdb in [
            &[0x00u8, 0, 0, 0, 0, 0][..],
            &[0x12, 0, 0, 0, 36, 0],
            &cdb10(0x28, 0, 8),
            &cdb10(0x35, 0, 0),
            &cdb10(0x34, 0, 8),
            &cdb16(0x9E, 0x10, 32),
            &[0xC0, 1, 2],
        ] {
            assert_eq!(data_out_len(cdb, 512), None, "{cdb:02x?}");
        }
    }
}
