//! Power loss: the writer records, per block, the oldest generation that must survive
//! (the last write acknowledged as durable) and the newest that may (the last write
//! sent); after the guest's power is cut and it boots again, the verifier reads every
//! block and checks it against that record.
//!
//! Durable means: a WRITE(16) with FUA answered GOOD, or any write answered GOOD before
//! a SYNCHRONIZE CACHE that was answered GOOD. Plain writes (write-back, no flush) may
//! be lost, so such a block may hold any of its generations from the durable one to
//! the newest, never garbage and never an older one.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use test_support::iscsi_wire::bhs::task_attr;
use test_support::{scsi, Initiator, InitiatorError, ScsiResult};

use crate::record::{self, Content, XorShift};
use crate::{login, settle, write16_fua, Res};

/// The LUNs under test (powerloss.conf): a write-back file and a block device.
const LUNS: [u16; 2] = [0, 1];
/// Blocks under test at the start of each LUN (8 MiB of 512-byte blocks).
const REGION_BLOCKS: u64 = 16384;
/// Longest write of the test, in blocks.
const MAX_BLOCKS: u64 = 16;
/// The writer gives up (and fails) if its connection is not cut by then.
const WRITER_LIMIT: Duration = Duration::from_secs(120);
/// The persistent reservation key registered with APTPL on LUN 0.
const PR_KEY: u64 = 0x5c57_0000_0000_0a11;

/// Per block: the generation that must be there at least, and the newest sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Block {
    durable: u64,
    newest: u64,
}

/// What the writer and the verifier hand each other across power cuts (a text file).
#[derive(Debug, Default)]
struct State {
    next_gen: u64,
    /// The APTPL registration exists (made in the first round).
    pr_registered: bool,
    /// (LUN, LBA) -> block record; blocks never written are absent.
    blocks: BTreeMap<(u16, u64), Block>,
}

impl State {
    fn load(path: &Path) -> Result<State, Box<dyn std::error::Error>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    next_gen: 1,
                    ..State::default()
                })
            }
            Err(e) => return Err(format!("{}: {e}", path.display()).into()),
        };
        let mut st = State::default();
        for (n, line) in text.lines().enumerate() {
            let bad = || format!("{} line {}: cannot parse '{line}'", path.display(), n + 1);
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[..] {
                ["next_gen", g] => st.next_gen = g.parse().map_err(|_| bad())?,
                ["pr_registered", v] => st.pr_registered = v == "1",
                ["b", lun, lba, durable, newest] => {
                    let b = Block {
                        durable: durable.parse().map_err(|_| bad())?,
                        newest: newest.parse().map_err(|_| bad())?,
                    };
                    let key = (
                        lun.parse().map_err(|_| bad())?,
                        lba.parse().map_err(|_| bad())?,
                    );
                    st.blocks.insert(key, b);
                }
                [] => {}
                _ => return Err(bad().into()),
            }
        }
        Ok(st)
    }

    fn save(&self, path: &Path) -> Res {
        let mut out = String::new();
        let _ = writeln!(out, "next_gen {}", self.next_gen);
        let _ = writeln!(out, "pr_registered {}", u8::from(self.pr_registered));
        for ((lun, lba), b) in &self.blocks {
            let _ = writeln!(out, "b {lun} {lba} {} {}", b.durable, b.newest);
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn region(ini: &mut Initiator, lun: u16) -> Result<(u64, u32), Box<dyn std::error::Error>> {
    let (blocks, block_len) = ini.capacity(lun)?;
    if blocks < MAX_BLOCKS || block_len < 64 {
        return Err(format!("LUN {lun}: {blocks} blocks of {block_len} bytes is too small").into());
    }
    Ok((blocks.min(REGION_BLOCKS), block_len))
}

/// What a block read after a power cut says of the writes recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Generation `gen` (0: never written) is there, which the record allows.
    Kept {
        gen: u64,
    },
    Garbage,
    /// An acknowledged durable write was lost.
    OlderThanDurable {
        gen: u64,
        durable: u64,
    },
    /// A generation never sent to this block.
    NewerThanSent {
        gen: u64,
        newest: u64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Verdict::Kept { gen } => write!(f, "generation {gen}"),
            Verdict::Garbage => write!(f, "garbage (torn, misdirected or corrupt)"),
            Verdict::OlderThanDurable { gen, durable } => write!(
                f,
                "generation {gen} read, but {durable} was acknowledged as durable"
            ),
            Verdict::NewerThanSent { gen, newest } => {
                write!(f, "generation {gen} read, but the newest sent is {newest}")
            }
        }
    }
}

/// The rule: a block holds a whole write no older than its last durable one and no
/// newer than its last one sent; never garbage.
fn judge(rec: Block, content: Content) -> Verdict {
    let gen = match content {
        Content::Zeros => 0,
        Content::Write { gen } => gen,
        Content::Garbage => return Verdict::Garbage,
    };
    if gen < rec.durable {
        Verdict::OlderThanDurable {
            gen,
            durable: rec.durable,
        }
    } else if gen > rec.newest {
        Verdict::NewerThanSent {
            gen,
            newest: rec.newest,
        }
    } else {
        Verdict::Kept { gen }
    }
}

/// Read every block under test and check it against the record; then tighten the
/// record to what is on the medium now (after a reboot it is all that survived).
pub fn verify(addr: &str, target: &str, state_path: &Path) -> Res {
    let mut st = State::load(state_path)?;
    let mut ini = login(addr, target)?;
    let mut failures = Vec::new();
    let (mut read, mut durable, mut lost_plain, mut newer_than_durable) = (0u64, 0, 0, 0);
    for lun in LUNS {
        settle(&mut ini, lun)?;
        let (blocks, block_len) = region(&mut ini, lun)?;
        const CHUNK: u64 = 256;
        let mut lba = 0;
        while lba < blocks {
            let n = CHUNK.min(blocks - lba);
            let r = ini
                .read16(lun, lba, n as u32, block_len)?
                .good()
                .map_err(|e| format!("LUN {lun}: READ(16) at LBA {lba}: {e}"))?;
            if r.data.len() != (n * u64::from(block_len)) as usize {
                return Err(format!("LUN {lun}: short read at LBA {lba}").into());
            }
            for (i, data) in r.data.chunks(block_len as usize).enumerate() {
                let at = lba + i as u64;
                read += 1;
                let rec = st.blocks.get(&(lun, at)).copied().unwrap_or_default();
                let content = record::decode(data, lun, at);
                if rec.durable > 0 {
                    durable += 1;
                }
                match judge(rec, content) {
                    Verdict::Kept { gen } => {
                        if gen < rec.newest {
                            lost_plain += 1;
                        }
                        if gen > rec.durable {
                            newer_than_durable += 1;
                        }
                        // After the reboot this is on the medium: it is what must
                        // stay there.
                        if gen > 0 {
                            let now = Block {
                                durable: gen,
                                newest: gen,
                            };
                            st.blocks.insert((lun, at), now);
                        } else {
                            st.blocks.remove(&(lun, at));
                        }
                    }
                    bad => failures.push(format!("LUN {lun} LBA {at}: {bad}, record {rec:?}")),
                }
            }
            lba += n;
        }
    }
    let pr = check_or_register_pr(&mut ini, &mut st)?;
    println!(
        "verify: {read} blocks read, {durable} of them with a write acknowledged \
         as durable, {newer_than_durable} holding a later plain write, {lost_plain} whose \
         newest plain write was lost; persistent reservation: {pr}"
    );
    if !failures.is_empty() {
        for f in failures.iter().take(20) {
            eprintln!("FAIL {f}");
        }
        return Err(format!("{} blocks failed the durability check", failures.len()).into());
    }
    st.save(state_path)
}

/// PERSISTENT RESERVE OUT, REGISTER (or REGISTER AND IGNORE) with APTPL.
fn pr_register_aptpl(
    ini: &mut Initiator,
    lun: u16,
    key: u64,
) -> Result<ScsiResult, InitiatorError> {
    let mut params = [0u8; 24];
    params[8..16].copy_from_slice(&key.to_be_bytes());
    params[20] = 0x01; // APTPL
    let cdb = [0x5f, 0x00, 0, 0, 0, 0, 0, 0, params.len() as u8, 0];
    ini.scsi(lun, &cdb, &params, 0, task_attr::SIMPLE)
}

/// The keys PERSISTENT RESERVE IN, READ KEYS lists.
fn pr_read_keys(ini: &mut Initiator, lun: u16) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let cdb = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x04, 0x00, 0];
    let r = ini.scsi(lun, &cdb, &[], 1024, task_attr::SIMPLE)?.good()?;
    let len = r
        .data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
    let keys = r.data.get(8..).unwrap_or_default();
    Ok(keys
        .chunks_exact(8)
        .take(len as usize / 8)
        .map(|k| u64::from_be_bytes(k.try_into().expect("8 bytes")))
        .collect())
}

/// First round: register the APTPL key; every later one: it must still be there.
fn check_or_register_pr(
    ini: &mut Initiator,
    st: &mut State,
) -> Result<&'static str, Box<dyn std::error::Error>> {
    let lun = LUNS[0];
    if st.pr_registered {
        let keys = pr_read_keys(ini, lun)?;
        if !keys.contains(&PR_KEY) {
            return Err(format!("LUN {lun}: the APTPL registration {PR_KEY:#x} is gone after the power cut (keys {keys:x?})").into());
        }
        return Ok("APTPL registration still present");
    }
    pr_register_aptpl(ini, lun, PR_KEY)?
        .good()
        .map_err(|e| format!("LUN {lun}: PR REGISTER with APTPL: {e}"))?;
    st.pr_registered = true;
    Ok("registered with APTPL")
}

/// A connection that ends (the guest's power cut) ends the writer's round.
fn cut(e: &InitiatorError) -> bool {
    matches!(
        e,
        InitiatorError::Io(_) | InitiatorError::ConnectionClosed | InitiatorError::Timeout
    )
}

/// The writer: FUA writes, batches of pipelined plain writes followed by SYNCHRONIZE
/// CACHE, and batches left unflushed, at random places, until the connection is cut.
/// The record is saved whatever ends it.
pub fn write(addr: &str, target: &str, state_path: &Path, seed: u64) -> Res {
    let mut st = State::load(state_path)?;
    let mut ini = login(addr, target)?;
    let mut geometry = Vec::new();
    for lun in LUNS {
        settle(&mut ini, lun)?;
        geometry.push((lun, region(&mut ini, lun)?));
    }
    let mut rng = XorShift::new(seed);
    let mut stats = [0u64; 3];
    println!("writing");
    let start = Instant::now();
    let outcome = loop {
        if start.elapsed() > WRITER_LIMIT {
            break Err(format!("the connection was not cut within {WRITER_LIMIT:?}").into());
        }
        let (lun, (blocks, block_len)) = geometry[rng.below(geometry.len() as u64) as usize];
        let kind = rng.below(3) as usize;
        let batch = if kind == 0 { 1 } else { 2 + rng.below(7) };
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        while (ranges.len() as u64) < batch {
            let n = 1 + rng.below(MAX_BLOCKS);
            let lba = rng.below(blocks - n + 1);
            // Writes in flight together never overlap: their order is not defined.
            if ranges.iter().all(|&(l, m)| lba + n <= l || l + m <= lba) {
                ranges.push((lba, n));
            }
        }
        match write_batch(&mut ini, &mut st, lun, block_len, &ranges, kind) {
            Ok(()) => stats[kind] += 1,
            Err(e) => match e.downcast_ref::<InitiatorError>() {
                Some(ie) if cut(ie) => break Ok(()),
                _ => break Err(e),
            },
        }
    };
    st.save(state_path)?;
    println!(
        "writer: {} FUA writes, {} flushed batches, {} unflushed batches before the cut",
        stats[0], stats[1], stats[2]
    );
    outcome
}

/// One step of the writer. kind 0: one FUA write; 1: plain writes then SYNCHRONIZE
/// CACHE; 2: plain writes only.
fn write_batch(
    ini: &mut Initiator,
    st: &mut State,
    lun: u16,
    block_len: u32,
    ranges: &[(u64, u64)],
    kind: usize,
) -> Res {
    let mut sent = Vec::with_capacity(ranges.len());
    for &(lba, n) in ranges {
        let gen = st.next_gen;
        st.next_gen += 1;
        let mut data = vec![0u8; (n * u64::from(block_len)) as usize];
        for (i, b) in data.chunks_mut(block_len as usize).enumerate() {
            record::encode(b, lun, lba + i as u64, gen);
        }
        // Recorded before it is sent: once sent it may reach the medium.
        for at in lba..lba + n {
            st.blocks.entry((lun, at)).or_default().newest = gen;
        }
        let cdb = if kind == 0 {
            write16_fua(lba, n as u32)
        } else {
            scsi::write16(lba, n as u32)
        };
        let itt = ini.submit(lun, &cdb, &data, 0, task_attr::SIMPLE)?;
        sent.push((itt, lba, n, gen));
    }
    let mut acked = Vec::with_capacity(sent.len());
    for (itt, lba, n, gen) in sent {
        ini.wait(itt)?
            .good()
            .map_err(|e| format!("LUN {lun}: WRITE(16) of {n} blocks at LBA {lba}: {e}"))?;
        acked.push((lba, n, gen));
    }
    match kind {
        0 => {}
        1 => {
            ini.sync_cache(lun)?
                .good()
                .map_err(|e| format!("LUN {lun}: SYNCHRONIZE CACHE: {e}"))?;
        }
        _ => return Ok(()),
    }
    for (lba, n, gen) in acked {
        for at in lba..lba + n {
            let b = st.blocks.entry((lun, at)).or_default();
            b.durable = b.durable.max(gen);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_durable_write_or_garbage_fails() {
        let rec = Block {
            durable: 5,
            newest: 7,
        };
        let w = |gen| Content::Write { gen };
        // Plain writes after the durable one may or may not have survived.
        for gen in 5..=7 {
            assert_eq!(judge(rec, w(gen)), Verdict::Kept { gen });
        }
        assert_eq!(
            judge(rec, w(4)),
            Verdict::OlderThanDurable { gen: 4, durable: 5 }
        );
        assert_eq!(
            judge(rec, Content::Zeros),
            Verdict::OlderThanDurable { gen: 0, durable: 5 }
        );
        assert_eq!(
            judge(rec, w(8)),
            Verdict::NewerThanSent { gen: 8, newest: 7 }
        );
        assert_eq!(judge(rec, Content::Garbage), Verdict::Garbage);
        // Never durable: zeros and any write sent are fine, garbage is not.
        let plain = Block {
            durable: 0,
            newest: 3,
        };
        assert_eq!(judge(plain, Content::Zeros), Verdict::Kept { gen: 0 });
        assert_eq!(judge(plain, w(3)), Verdict::Kept { gen: 3 });
        assert_eq!(judge(plain, Content::Garbage), Verdict::Garbage);
        assert_eq!(
            judge(Block::default(), w(1)),
            Verdict::NewerThanSent { gen: 1, newest: 0 }
        );
    }

    #[test]
    fn state_round_trips() {
        let dir = std::env::temp_dir().join(format!("guest-check-state-{}", std::process::id()));
        let mut st = State {
            next_gen: 9,
            pr_registered: true,
            ..State::default()
        };
        st.blocks.insert(
            (1, 5),
            Block {
                durable: 3,
                newest: 8,
            },
        );
        st.save(&dir).unwrap();
        let back = State::load(&dir).unwrap();
        assert_eq!(back.next_gen, 9);
        assert!(back.pr_registered);
        assert_eq!(
            back.blocks.get(&(1, 5)),
            Some(&Block {
                durable: 3,
                newest: 8
            })
        );
        std::fs::write(&dir, "b 1 x 2 3\n").unwrap();
        assert!(State::load(&dir).is_err());
        std::fs::remove_file(&dir).unwrap();
        let fresh = State::load(&dir).unwrap();
        assert_eq!((fresh.next_gen, fresh.blocks.len()), (1, 0));
    }
}
