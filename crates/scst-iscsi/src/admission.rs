//! Admission of connections that have not logged in yet: bounded per source address
//! and overall, and when a bound is reached the OLDEST such connection gives way.
//!
//! An idle TCP connection costs an attacker nothing, and `login_timeout` only clears
//! it after seconds. Refusing the newest connection at a bound would let a flood of
//! idle ones lock real initiators out for as long as it is renewed; dropping the oldest
//! instead means a real initiator's connection, which logs in within milliseconds,
//! always gets its turn. The per-address bound keeps a flood from one address from
//! pushing out another address's pending login: at that bound the flooder's own
//! oldest connection goes.
//!
//! Descriptors (`FdBudget`): the connections are counted as they are accepted and
//! until their task has ended, everything else the process holds is counted from
//! /proc/self/fd when the listener starts, at most once a second while connections
//! arrive, and whenever accept runs out. When a new
//! connection brings the total within [`fd_reserve`] of the soft RLIMIT_NOFILE, a
//! pending connection gives way as well (with none pending, the new one is closed);
//! within half the reserve the new one is closed too. So the management socket, device
//! files added later and the logins of configured initiators find descriptors, and
//! accept does not fail in a loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Connections not yet logged in (or in a discovery session), overall.
pub const MAX_PENDING_LOGINS: usize = 128;
/// Connections not yet logged in from one source address.
pub const MAX_PENDING_LOGINS_PER_ADDR: usize = 16;

/// Descriptors kept free for management, device files and configured initiators'
/// logins: an eighth of the limit, at least 32 and at most 256.
pub fn fd_reserve(limit: u64) -> u64 {
    (limit / 8).clamp(32, 256)
}

/// The soft RLIMIT_NOFILE now (`u64::MAX` when unlimited or unknown).
pub fn open_file_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0
        || rl.rlim_cur == libc::RLIM_INFINITY
    {
        return u64::MAX;
    }
    rl.rlim_cur
}

/// How often [`FdBudget`] counts again what is not a connection.
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// Descriptors open in this process now, if /proc says.
fn open_fds() -> Option<u64> {
    // The directory's own descriptor is listed too.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// How close a new connection brings the process to its open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdPressure {
    Enough,
    /// Within the reserve: a pending connection gives way.
    Short,
    /// Within half the reserve: the new connection is closed as well.
    Exhausted,
}

/// The descriptor budget of one accept loop (see the module's comment).
pub(crate) struct FdBudget {
    limit: u64,
    reserve: u64,
    /// Descriptors held by anything but the connections, as last counted.
    others: u64,
    counted: Instant,
}

impl FdBudget {
    /// Counted now, with `conns` connections open.
    pub(crate) fn measure(conns: usize) -> FdBudget {
        let limit = open_file_limit();
        let mut b = FdBudget {
            limit,
            reserve: fd_reserve(limit),
            others: 0,
            counted: Instant::now(),
        };
        b.remeasure(conns);
        b
    }

    /// Count again what is not a connection (devices added, management clients).
    pub(crate) fn remeasure(&mut self, conns: usize) {
        if let Some(n) = open_fds() {
            self.others = n.saturating_sub(conns as u64);
        }
        self.counted = Instant::now();
    }

    /// The pressure with `conns` connections open, the new one included. What is not a
    /// connection is counted again at most once a second (devices are added at run
    /// time), so that a flood costs no directory scan per connection.
    pub(crate) fn pressure(&mut self, conns: usize) -> FdPressure {
        if self.counted.elapsed() >= RECOUNT_EVERY {
            self.remeasure(conns);
        }
        let in_use = (conns as u64).saturating_add(self.others);
        if in_use.saturating_add(self.reserve / 2) >= self.limit {
            FdPressure::Exhausted
        } else if in_use.saturating_add(self.reserve) >= self.limit {
            FdPressure::Short
        } else {
            FdPressure::Enough
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }
}

/// Why a pending connection was dropped, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Its address reached [`MAX_PENDING_LOGINS_PER_ADDR`].
    PerAddress,
    /// [`MAX_PENDING_LOGINS`] were pending.
    Overall,
    /// Descriptors ran short.
    Descriptors,
    /// `max_open_connections` connections were open.
    OpenConnections,
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Eviction::PerAddress => "too many connections from its address are logging in",
            Eviction::Overall => "too many connections are logging in",
            Eviction::Descriptors => "open files are running short",
            Eviction::OpenConnections => "max_open_connections connections are open",
        })
    }
}

struct Entry {
    addr: IpAddr,
    evict: Arc<Notify>,
    why: Arc<Mutex<Option<Eviction>>>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Connections that gave way at a bound, since start.
    given_way: u64,
    /// By accept order: the first is the oldest.
    by_age: BTreeMap<u64, Entry>,
    per_addr: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.by_age.remove(&id)?;
        if let Some(ids) = self.per_addr.get_mut(&e.addr) {
            ids.remove(&id);
            if ids.is_empty() {
                self.per_addr.remove(&e.addr);
            }
        }
        Some(e)
    }

    fn evict(&mut self, id: u64, why: Eviction) {
        if let Some(e) = self.remove(id) {
            *e.why.lock() = Some(why);
            e.evict.notify_one();
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.by_age.keys().next().copied()
    }

    fn oldest_of(&self, addr: &IpAddr) -> Option<u64> {
        self.per_addr.get(addr)?.first().copied()
    }
}

/// What the per-address bound counts by: the address, IPv4-mapped ones as IPv4, and
/// an IPv6 address by its /64, which one host commonly has to itself.
fn source(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

/// The connections that have not logged in yet.
pub(crate) struct PendingLogins {
    inner: Mutex<Inner>,
    max: usize,
    max_per_addr: usize,
}

impl Default for PendingLogins {
    fn default() -> Self {
        PendingLogins::new(MAX_PENDING_LOGINS, MAX_PENDING_LOGINS_PER_ADDR)
    }
}

impl PendingLogins {
    pub(crate) fn new(max: usize, max_per_addr: usize) -> PendingLogins {
        PendingLogins {
            inner: Mutex::default(),
            max: max.max(1),
            max_per_addr: max_per_addr.max(1),
        }
    }

    /// Admit a new connection from `addr`, making room by dropping the oldest pending
    /// one where a bound is reached. `short_of_fds`: descriptors are running short, so
    /// one more pending connection gives way; `None` when none can (the new connection
    /// must be closed).
    pub(crate) fn admit(self: &Arc<Self>, addr: IpAddr, short_of_fds: bool) -> Option<Pending> {
        let addr = source(addr);
        let mut inner = self.inner.lock();
        if short_of_fds {
            let victim = inner.oldest()?;
            inner.evict(victim, Eviction::Descriptors);
        }
        let bound = if inner.per_addr.get(&addr).map_or(0, BTreeSet::len) >= self.max_per_addr {
            inner
                .oldest_of(&addr)
                .map(|victim| (victim, Eviction::PerAddress))
        } else if inner.by_age.len() >= self.max {
            inner.oldest().map(|victim| (victim, Eviction::Overall))
        } else {
            None
        };
        if let Some((victim, why)) = bound {
            inner.evict(victim, why);
            inner.given_way += 1;
            // Once per burst, not once per connection: a flood must not flood the log.
            if inner.given_way == 1 || inner.given_way.is_multiple_of(1000) {
                log::warn!(
                    "a connection from {addr} arrived while {why}: the oldest one gives \
                     way ({} so far)",
                    inner.given_way
                );
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = Arc::new(Notify::new());
        let why = Arc::new(Mutex::new(None));
        inner.by_age.insert(
            id,
            Entry {
                addr,
                evict: evict.clone(),
                why: why.clone(),
            },
        );
        inner.per_addr.entry(addr).or_default().insert(id);
        Some(Pending {
            owner: self.clone(),
            id,
            evict,
            why,
        })
    }

    /// The oldest pending connection gives way, if there is one (`false`: none).
    pub(crate) fn make_room(&self, why: Eviction) -> bool {
        let mut inner = self.inner.lock();
        let Some(victim) = inner.oldest() else {
            return false;
        };
        inner.evict(victim, why);
        true
    }

    /// Connections pending now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().by_age.len()
    }
}

/// One connection's place among the pending ones, until it logs in or ends.
pub(crate) struct Pending {
    owner: Arc<PendingLogins>,
    id: u64,
    evict: Arc<Notify>,
    why: Arc<Mutex<Option<Eviction>>>,
}

impl Pending {
    /// Resolves when the connection must give way to a newer one; says why.
    pub(crate) async fn evicted(&self) -> Eviction {
        self.evict.notified().await;
        self.why.lock().unwrap_or(Eviction::Overall)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.owner.inner.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    fn evicted(p: &Pending) -> Option<Eviction> {
        *p.why.lock()
    }

    #[test]
    fn the_oldest_gives_way_at_the_overall_bound() {
        let pl = Arc::new(PendingLogins::new(4, 2));
        let held: Vec<Pending> = (1..=4)
            .map(|i| pl.admit(ip(i), false).expect("admitted"))
            .collect();
        assert!(held.iter().all(|p| evicted(p).is_none()));
        let newest = pl.admit(ip(9), false).expect("admitted");
        assert_eq!(evicted(&held[0]), Some(Eviction::Overall));
        assert!(held[1..].iter().all(|p| evicted(p).is_none()));
        assert!(evicted(&newest).is_none());
        assert_eq!(pl.len(), 4);
        drop(held);
        assert_eq!(pl.len(), 1, "a dropped connection leaves");
    }

    #[test]
    fn a_flooding_address_pushes_out_only_its_own() {
        let pl = Arc::new(PendingLogins::new(8, 3));
        let other = pl.admit(ip(2), false).expect("admitted");
        let flood: Vec<Pending> = (0..10)
            .map(|_| pl.admit(ip(1), false).expect("admitted"))
            .collect();
        assert!(evicted(&other).is_none(), "another address's login stays");
        let alive = flood.iter().filter(|p| evicted(p).is_none()).count();
        assert_eq!(alive, 3, "the flood is held at its per-address bound");
        assert!(flood[..7]
            .iter()
            .all(|p| evicted(p) == Some(Eviction::PerAddress)));
        assert_eq!(pl.len(), 4);
    }

    #[test]
    fn short_of_descriptors_the_oldest_gives_way_or_the_new_one_is_refused() {
        let pl = Arc::new(PendingLogins::new(8, 8));
        assert!(pl.admit(ip(1), true).is_none(), "nothing to give way");
        let a = pl.admit(ip(1), false).expect("admitted");
        let b = pl.admit(ip(2), true).expect("admitted");
        assert_eq!(evicted(&a), Some(Eviction::Descriptors));
        assert!(evicted(&b).is_none());
        assert_eq!(pl.len(), 1);
    }

    #[test]
    fn making_room_takes_the_oldest_if_any() {
        let pl = Arc::new(PendingLogins::new(8, 8));
        assert!(!pl.make_room(Eviction::OpenConnections), "nothing pending");
        let a = pl.admit(ip(1), false).expect("admitted");
        let b = pl.admit(ip(2), false).expect("admitted");
        assert!(pl.make_room(Eviction::OpenConnections));
        assert_eq!(evicted(&a), Some(Eviction::OpenConnections));
        assert!(evicted(&b).is_none());
        assert_eq!(pl.len(), 1);
    }

    #[tokio::test]
    async fn an_evicted_connection_is_woken() {
        let pl = Arc::new(PendingLogins::new(1, 1));
        let a = pl.admit(ip(1), false).expect("admitted");
        let _b = pl.admit(ip(2), false).expect("admitted");
        assert_eq!(a.evicted().await, Eviction::Overall);
    }

    #[test]
    fn mapped_ipv4_counts_as_its_address() {
        let pl = Arc::new(PendingLogins::new(8, 1));
        let a = pl.admit(ip(1), false).expect("admitted");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let _b = pl.admit(mapped, false).expect("admitted");
        assert_eq!(evicted(&a), Some(Eviction::PerAddress));
    }

    #[test]
    fn an_ipv6_host_counts_by_its_prefix() {
        let pl = Arc::new(PendingLogins::new(8, 1));
        let a = pl
            .admit("2001:db8:1:2::10".parse().unwrap(), false)
            .unwrap();
        let _b = pl
            .admit("2001:db8:1:2:ffff::1".parse().unwrap(), false)
            .unwrap();
        assert_eq!(evicted(&a), Some(Eviction::PerAddress), "same /64");
        let _c = pl
            .admit("2001:db8:1:3::10".parse().unwrap(), false)
            .unwrap();
        assert_eq!(pl.len(), 2, "another /64 is another source");
    }

    #[test]
    fn descriptor_pressure_grows_towards_the_limit() {
        let mut b = FdBudget {
            limit: 128,
            reserve: 32,
            others: 20,
            counted: Instant::now(),
        };
        assert_eq!(b.pressure(75), FdPressure::Enough);
        assert_eq!(b.pressure(76), FdPressure::Short);
        assert_eq!(b.pressure(91), FdPressure::Short);
        assert_eq!(b.pressure(92), FdPressure::Exhausted);
        let mut measured = FdBudget::measure(0);
        assert!(measured.others >= 3, "stdio at least");
        // Descriptors opened since are seen at the next count (other tests open and
        // close theirs meanwhile: only what this one holds is certain).
        let held: Vec<std::fs::File> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        measured.remeasure(0);
        assert!(measured.others >= 50, "{}", measured.others);
        drop(held);
    }

    #[test]
    fn the_reserve_scales_with_the_limit() {
        assert_eq!(fd_reserve(64), 32);
        assert_eq!(fd_reserve(1024), 128);
        assert_eq!(fd_reserve(1 << 20), 256);
    }
}
