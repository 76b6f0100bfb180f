//! Device creation parameters: SCST's attribute names, defaults and validation
//! (docs/scst-reference.md 2.4, 2.5), and identity generation (4.6).

use crate::VdiskError;
use scsi_wire::inquiry::InquiryIdentity;

/// The vdisk dev handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Fileio,
    Blockio,
    Nullio,
    /// A CD/DVD-ROM over an ISO file, media changed at runtime (cdrom.rs).
    Vcdrom,
}

impl Handler {
    pub fn from_name(name: &str) -> Option<Handler> {
        match name {
            "vdisk_fileio" => Some(Handler::Fileio),
            "vdisk_blockio" => Some(Handler::Blockio),
            "vdisk_nullio" => Some(Handler::Nullio),
            "vcdrom" => Some(Handler::Vcdrom),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Handler::Fileio => "vdisk_fileio",
            Handler::Blockio => "vdisk_blockio",
            Handler::Nullio => "vdisk_nullio",
            Handler::Vcdrom => "vcdrom",
        }
    }

    /// The creation parameters SCST's `mgmt` help lists (scst-reference 2.4).
    pub fn creation_params(self) -> &'static [&'static str] {
        match self {
            Handler::Fileio => FILEIO_PARAMS,
            Handler::Blockio => BLOCKIO_PARAMS,
            Handler::Nullio => NULLIO_PARAMS,
            Handler::Vcdrom => VCDROM_PARAMS,
        }
    }

    /// Everything `create_device` accepts: the creation parameters plus the identity
    /// attributes, which scst.conf may also give at creation.
    pub(crate) fn accepts(self, attr: &str) -> bool {
        self.creation_params().contains(&attr)
            || IDENTITY_ATTRS.contains(&attr)
            || match self {
                Handler::Fileio => matches!(attr, "opt_trans_len" | "lb_per_pb_exp"),
                // A size written before (SCST saves it as a key attribute then): the
                // part of the device exported, given right after add_device.
                Handler::Blockio => {
                    matches!(attr, "opt_trans_len" | "lb_per_pb_exp" | "size" | "size_mb")
                }
                Handler::Nullio => matches!(attr, "read_zero" | "opt_trans_len"),
                // Runtime attributes scst.conf sets right after add_device: the medium
                // (empty = none) and the RW t10_dev_id.
                Handler::Vcdrom => matches!(attr, "filename" | "t10_dev_id" | "numa_node_id"),
            }
    }

    fn default_vendor(self) -> &'static str {
        match self {
            Handler::Blockio => "SCST_BIO",
            Handler::Fileio | Handler::Nullio | Handler::Vcdrom => "SCST_FIO",
        }
    }
}

const FILEIO_PARAMS: &[&str] = &[
    "active",
    "async",
    "bind_alua_state",
    "blocksize",
    "cluster_mode",
    "dif_filename",
    "dif_mode",
    "dif_static_app_tag",
    "dif_type",
    "filename",
    "numa_node_id",
    "nv_cache",
    "o_direct",
    "read_only",
    "removable",
    "rotational",
    "thin_provisioned",
    "tst",
    "t10_dev_id",
    "write_through",
];

const BLOCKIO_PARAMS: &[&str] = &[
    "active",
    "bind_alua_state",
    "blocksize",
    "cluster_mode",
    "dif_filename",
    "dif_mode",
    "dif_static_app_tag",
    "dif_type",
    "filename",
    "numa_node_id",
    "nv_cache",
    "read_only",
    "removable",
    "rotational",
    "thin_provisioned",
    "tst",
    "t10_dev_id",
    "write_through",
];

const NULLIO_PARAMS: &[&str] = &[
    "blocksize",
    "cluster_mode",
    "dif_mode",
    "dif_static_app_tag",
    "dif_type",
    "dummy",
    "numa_node_id",
    "read_only",
    "removable",
    "rotational",
    "size",
    "size_mb",
    "tst",
    "t10_dev_id",
];

/// vcdrom takes only `tst` at creation; media is inserted through `filename`.
const VCDROM_PARAMS: &[&str] = &["tst"];

const IDENTITY_ATTRS: &[&str] = &[
    "t10_vend_id",
    "prod_id",
    "prod_rev_lvl",
    "vend_specific_id",
    "usn",
    "naa_id",
    "eui64_id",
    "scsi_device_name",
    "inq_vend_specific",
];

/// Default nullio size: 2.5 TiB (SCST's VDISK_NULLIO_SIZE).
pub const NULLIO_DEFAULT_SIZE: u64 = 5 << 39;
/// Default OPTIMAL TRANSFER LENGTH in bytes.
pub const DEFAULT_OPT_TRANS_LEN: u32 = 524_288;
/// Default PRODUCT REVISION LEVEL.
pub const DEFAULT_REVISION: &str = "3110";

/// A validated device configuration.
#[derive(Debug, Clone)]
pub struct VdiskConfig {
    pub handler: Handler,
    pub name: String,
    pub filename: Option<String>,
    pub block_size: u32,
    /// nullio: exported size in bytes.
    pub size: u64,
    pub read_only: bool,
    pub write_through: bool,
    pub nv_cache: bool,
    pub o_direct: bool,
    pub async_io: bool,
    pub thin_provisioned: bool,
    pub rotational: bool,
    pub removable: bool,
    pub tst: u8,
    pub dummy: bool,
    pub read_zero: bool,
    pub opt_trans_len: u32,
    pub lb_per_pb_exp: bool,
    pub identity: InquiryIdentity,
    /// Attribute names given at creation (reported as key attributes).
    pub given: Vec<String>,
}

/// SCST's device id: `(setup_id << 32) | crc32c(name + NUL)` where crc32c is the
/// kernel's raw CRC32C with seed 0 (no pre/post inversion), so that ids match an SCST
/// node's for the same name and setup_id.
pub fn gen_dev_id_num(name: &str, setup_id: u64) -> u64 {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    // crc32c_append(c, d) = !raw(!c, d), hence raw(0, d) = !crc32c_append(!0, d).
    let raw = !crc32c::crc32c_append(!0, &bytes);
    (setup_id << 32) | raw as u64
}

/// The NAA designator a device reports when `naa_id` is not set: NAA 3h (locally
/// assigned) carrying the low 60 bits of the device id. Hypervisors and multipath
/// stacks key LUN identity on NAA designators, so every LUN gets a stable, distinct one
/// without configuration (the id already mixes in `setup_id`).
pub fn default_naa(id_num: u64) -> [u8; 8] {
    ((3u64 << 60) | (id_num & ((1 << 60) - 1))).to_be_bytes()
}

fn parse_bool(dev: &str, attr: &str, v: &str) -> Result<bool, VdiskError> {
    match v.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(VdiskError::invalid(
            dev,
            attr,
            format!("'{v}' is not 0 or 1"),
        )),
    }
}

fn parse_u64(dev: &str, attr: &str, v: &str) -> Result<u64, VdiskError> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| VdiskError::invalid(dev, attr, format!("'{v}' is not a number")))
}

/// Hex designator body: optional `0x`, `allowed` byte lengths. Empty clears.
fn parse_hex_id(
    dev: &str,
    attr: &str,
    v: &str,
    allowed: &[usize],
) -> Result<Option<Vec<u8>>, VdiskError> {
    let s = v.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || VdiskError::invalid(dev, attr, format!("'{v}' is not hex of {allowed:?} bytes"));
    if !s.len().is_multiple_of(2) || !allowed.contains(&(s.len() / 2)) {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<u8>, _>>()
        .map(Some)
}

fn check_ascii(dev: &str, attr: &str, v: &str, max: usize) -> Result<String, VdiskError> {
    if v.len() > max {
        return Err(VdiskError::invalid(
            dev,
            attr,
            format!("longer than {max} characters"),
        ));
    }
    if !v.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(VdiskError::invalid(
            dev,
            attr,
            "not printable ASCII".to_string(),
        ));
    }
    Ok(v.to_string())
}

impl VdiskConfig {
    /// Validate `attrs` for a new device of `handler`.
    pub fn parse(
        handler: Handler,
        name: &str,
        attrs: &[(String, String)],
        setup_id: u64,
    ) -> Result<VdiskConfig, VdiskError> {
        if name.is_empty() || name.contains(['/', ' ', '\t', '\n']) {
            return Err(VdiskError::invalid(
                name,
                "name",
                "empty or contains '/' or whitespace".into(),
            ));
        }
        let id_num = gen_dev_id_num(name, setup_id);
        let t10_dev_id = format!("{id_num:x}-{name}");
        let cdrom = handler == Handler::Vcdrom;
        let mut c = VdiskConfig {
            handler,
            name: name.to_string(),
            filename: None,
            // CD/DVD media have 2048-byte blocks, are read-only and removable.
            block_size: if cdrom { 2048 } else { 512 },
            size: NULLIO_DEFAULT_SIZE,
            read_only: cdrom,
            write_through: false,
            nv_cache: false,
            o_direct: false,
            async_io: false,
            thin_provisioned: false,
            rotational: true,
            removable: cdrom,
            tst: 1,
            dummy: false,
            read_zero: false,
            opt_trans_len: DEFAULT_OPT_TRANS_LEN,
            lb_per_pb_exp: true,
            identity: InquiryIdentity {
                vendor: handler.default_vendor().to_string(),
                product: name.chars().take(16).collect(),
                revision: DEFAULT_REVISION.to_string(),
                vend_specific_id: t10_dev_id.clone(),
                t10_dev_id,
                usn: format!("{id_num:x}"),
                naa_id: Some(default_naa(id_num).to_vec()),
                eui64_id: None,
                scsi_device_name: None,
                vend_specific: Vec::new(),
            },
            given: Vec::new(),
        };
        for (attr, v) in attrs {
            let attr = attr.as_str();
            if !handler.accepts(attr) {
                return Err(VdiskError::UnknownAttribute {
                    dev: name.into(),
                    attr: attr.into(),
                });
            }
            c.apply(attr, v)?;
            c.given.push(attr.to_string());
        }
        // vend_specific_id follows a changed t10_dev_id unless given itself.
        if !c.was_given("vend_specific_id") {
            c.identity.vend_specific_id = c.identity.t10_dev_id.clone();
        }
        if matches!(handler, Handler::Fileio | Handler::Blockio) && c.filename.is_none() {
            return Err(VdiskError::invalid(name, "filename", "required".into()));
        }
        c.check()?;
        Ok(c)
    }

    /// Set one attribute from its text value, validated exactly as at creation; on
    /// error nothing changed. Creation and the run-time writes of sbc.rs share it.
    pub(crate) fn apply(&mut self, attr: &str, v: &str) -> Result<(), VdiskError> {
        let cdrom = self.handler == Handler::Vcdrom;
        let name_owned = self.name.clone();
        let name = name_owned.as_str();
        let c = self;

        let b = || parse_bool(name, attr, v);
        match attr {
            // vcdrom: an empty filename is an empty drive.
            "filename" if cdrom && v.trim().is_empty() => c.filename = None,
            "filename" => {
                let f = v.trim();
                if !f.starts_with('/') {
                    return Err(VdiskError::invalid(
                        name,
                        attr,
                        format!("'{f}' is not an absolute path"),
                    ));
                }
                c.filename = Some(f.to_string());
            }
            "blocksize" => {
                let bs = parse_u64(name, attr, v)?;
                if !matches!(bs, 512 | 1024 | 2048 | 4096) {
                    return Err(VdiskError::invalid(
                        name,
                        attr,
                        format!("{bs} is not 512, 1024, 2048 or 4096"),
                    ));
                }
                c.block_size = bs as u32;
            }
            "size" => c.size = parse_u64(name, attr, v)?,
            "size_mb" => {
                c.size = parse_u64(name, attr, v)?
                    .checked_mul(1 << 20)
                    .ok_or_else(|| VdiskError::invalid(name, attr, "too large".into()))?
            }
            "read_only" => c.read_only = b()?,
            "write_through" => c.write_through = b()?,
            "nv_cache" => c.nv_cache = b()?,
            "o_direct" => c.o_direct = b()?,
            "async" => c.async_io = b()?,
            "thin_provisioned" => c.thin_provisioned = b()?,
            "rotational" => c.rotational = b()?,
            "removable" => c.removable = b()?,
            "dummy" => c.dummy = b()?,
            "read_zero" => c.read_zero = b()?,
            "lb_per_pb_exp" => c.lb_per_pb_exp = b()?,
            "tst" => {
                c.tst = match v.trim() {
                    "0" => 0,
                    "1" => 1,
                    _ => {
                        return Err(VdiskError::invalid(
                            name,
                            attr,
                            format!("'{v}' is not 0 or 1"),
                        ))
                    }
                }
            }
            "opt_trans_len" => {
                let n = parse_u64(name, attr, v)?;
                c.opt_trans_len = u32::try_from(n)
                    .map_err(|_| VdiskError::invalid(name, attr, "too large".into()))?;
            }
            "t10_vend_id" => c.identity.vendor = check_ascii(name, attr, v.trim(), 8)?,
            "prod_id" => c.identity.product = check_ascii(name, attr, v.trim(), 16)?,
            "prod_rev_lvl" => c.identity.revision = check_ascii(name, attr, v.trim(), 4)?,
            "usn" => c.identity.usn = check_ascii(name, attr, v.trim(), 20)?,
            "t10_dev_id" => c.identity.t10_dev_id = check_ascii(name, attr, v.trim(), 63)?,
            "vend_specific_id" => {
                c.identity.vend_specific_id = check_ascii(name, attr, v.trim(), 63)?;
            }
            "naa_id" => c.identity.naa_id = parse_hex_id(name, attr, v, &[8, 16])?,
            "eui64_id" => c.identity.eui64_id = parse_hex_id(name, attr, v, &[8, 12, 16])?,
            // SCST puts longer data at byte 96 onwards; scst-rs has the 20 bytes of the
            // standard data only.
            "inq_vend_specific" => {
                c.identity.vend_specific = check_ascii(name, attr, v.trim(), 20)?.into_bytes();
            }
            "scsi_device_name" => {
                let s = check_ascii(name, attr, v.trim(), 255)?;
                c.identity.scsi_device_name = (!s.is_empty()).then_some(s);
            }
            // Accepted for scst.conf compatibility; only their default is implemented.
            "active" | "cluster_mode" if b()? != (attr == "active") => {
                return Err(VdiskError::invalid(
                    name,
                    attr,
                    format!("'{v}' is not supported"),
                ));
            }
            "dif_mode" if !matches!(v.trim(), "" | "none") => {
                return Err(VdiskError::invalid(
                    name,
                    attr,
                    "T10-PI is not supported".into(),
                ));
            }
            "dif_type" if parse_u64(name, attr, v)? != 0 => {
                return Err(VdiskError::invalid(
                    name,
                    attr,
                    "T10-PI is not supported".into(),
                ));
            }
            // Only the default: any NUMA node serves the device.
            "numa_node_id" if v.trim() != "-1" => {
                return Err(VdiskError::invalid(
                    name,
                    attr,
                    format!("'{}' is not supported (only -1)", v.trim()),
                ));
            }
            "bind_alua_state" | "dif_static_app_tag" | "dif_filename" => {
                return Err(VdiskError::invalid(name, attr, "not supported".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks across attributes, after all of them were set.
    pub(crate) fn check(&self) -> Result<(), VdiskError> {
        if self.async_io && self.o_direct {
            return Err(VdiskError::invalid(
                &self.name,
                "async",
                "async submission with o_direct is not supported: O_DIRECT transfers run \
                 on the I/O threads (drop one of the two)"
                    .into(),
            ));
        }
        if !self.opt_trans_len.is_multiple_of(self.block_size) {
            return Err(VdiskError::invalid(
                &self.name,
                "opt_trans_len",
                format!(
                    "{} is not a multiple of blocksize {}",
                    self.opt_trans_len, self.block_size
                ),
            ));
        }
        Ok(())
    }

    pub fn was_given(&self, attr: &str) -> bool {
        self.given.iter().any(|g| g == attr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Bitwise CRC32C (Castagnoli, reflected poly 0x82F63B78) with seed 0 and no
    /// inversion, as the kernel's crc32c(0, ...) computes it.
    fn raw_crc32c(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn identity_generation() {
        let c = VdiskConfig::parse(Handler::Nullio, "disk01", &[], 0x12).unwrap();
        let raw = raw_crc32c(b"disk01\0");
        let id = (0x12u64 << 32) | raw as u64;
        assert_eq!(gen_dev_id_num("disk01", 0x12), id);
        assert_eq!(c.identity.usn, format!("{id:x}"));
        assert_eq!(c.identity.t10_dev_id, format!("{id:x}-disk01"));
        assert_eq!(c.identity.vend_specific_id, c.identity.t10_dev_id);
        assert_eq!(c.identity.vendor, "SCST_FIO");
        assert_eq!(c.identity.product, "disk01");
        assert_eq!(c.identity.revision, "3110");
        assert_eq!(c.size, 5 << 39);
        let long = VdiskConfig::parse(Handler::Nullio, "a_very_long_device_name", &[], 0).unwrap();
        assert_eq!(long.identity.product, "a_very_long_devi");
    }

    #[test]
    fn attribute_errors_name_device_and_attribute() {
        let e =
            VdiskConfig::parse(Handler::Nullio, "d", &kv(&[("filename", "/x")]), 0).unwrap_err();
        assert_eq!(e.to_string(), "device d: unknown attribute filename");
        let e =
            VdiskConfig::parse(Handler::Nullio, "d", &kv(&[("blocksize", "1000")]), 0).unwrap_err();
        assert!(
            e.to_string().starts_with("device d: attribute blocksize:"),
            "{e}"
        );
        let e = VdiskConfig::parse(Handler::Fileio, "d", &[], 0).unwrap_err();
        assert_eq!(e.to_string(), "device d: attribute filename: required");
        let e =
            VdiskConfig::parse(Handler::Fileio, "d", &kv(&[("filename", "rel")]), 0).unwrap_err();
        assert!(e.to_string().contains("absolute"));
        let e =
            VdiskConfig::parse(Handler::Nullio, "d", &kv(&[("read_only", "yes")]), 0).unwrap_err();
        assert!(e.to_string().contains("read_only"));
        let e = VdiskConfig::parse(
            Handler::Nullio,
            "d",
            &kv(&[("prod_id", "x".repeat(17).as_str())]),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prod_id"));
        let e =
            VdiskConfig::parse(Handler::Blockio, "d", &kv(&[("o_direct", "1")]), 0).unwrap_err();
        assert!(e.to_string().contains("unknown attribute o_direct"));
        let e =
            VdiskConfig::parse(Handler::Nullio, "d", &kv(&[("naa_id", "0x1234")]), 0).unwrap_err();
        assert!(e.to_string().contains("naa_id"));
    }

    #[test]
    fn unsupported_values_of_accepted_attributes() {
        for (k, v) in [
            ("cluster_mode", "1"),
            ("dif_mode", "tgt"),
            ("dif_type", "1"),
        ] {
            let e = VdiskConfig::parse(Handler::Nullio, "d", &kv(&[(k, v)]), 0).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
        let f = kv(&[("filename", "/x"), ("active", "0")]);
        assert!(VdiskConfig::parse(Handler::Fileio, "d", &f, 0).is_err());
        let ok = kv(&[
            ("filename", "/x"),
            ("active", "1"),
            ("cluster_mode", "0"),
            ("async", "1"),
        ]);
        assert!(VdiskConfig::parse(Handler::Fileio, "d", &ok, 0).is_ok());
        let both = kv(&[("filename", "/x"), ("async", "1"), ("o_direct", "1")]);
        let e = VdiskConfig::parse(Handler::Fileio, "d", &both, 0).unwrap_err();
        assert!(e.to_string().contains("o_direct is not supported"), "{e}");
    }

    #[test]
    fn attribute_values() {
        let c = VdiskConfig::parse(
            Handler::Nullio,
            "d",
            &kv(&[
                ("size_mb", "16"),
                ("blocksize", "4096"),
                ("read_only", "1"),
                ("rotational", "0"),
                ("t10_dev_id", "abc"),
                ("naa_id", "0x6001405aabbccdde"),
                ("dummy", "1"),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(
            (c.size, c.block_size, c.read_only, c.rotational),
            (16 << 20, 4096, true, false)
        );
        assert_eq!(c.identity.vend_specific_id, "abc");
        assert_eq!(
            c.identity.naa_id.as_deref(),
            Some(&[0x60, 0x01, 0x40, 0x5a, 0xab, 0xbc, 0xcd, 0xde][..])
        );
        assert!(c.dummy && c.was_given("size_mb") && !c.was_given("size"));
        let b = VdiskConfig::parse(Handler::Blockio, "b", &kv(&[("filename", "/dev/null")]), 0)
            .unwrap();
        assert_eq!(b.identity.vendor, "SCST_BIO");
    }
}
