//! The target's NOP-In pings (SCST's NopInInterval/NopInTimeout): a connection silent
//! for an interval is pinged, and one that leaves the ping unanswered for the timeout
//! is dead. Time comes in as `now`; the driver sleeps until [`Keepalive::poll_timeout`].

use std::time::{Duration, Instant};

/// What a wake-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Nothing,
    /// Send a ping now, then report it with [`Keepalive::pinged`].
    Ping,
    /// The ping went unanswered for the timeout.
    Dead,
}

#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Option<Duration>,
    timeout: Duration,
    /// The end of the current interval.
    next_tick: Instant,
    /// The ping outstanding: its TTT and when its answer is due.
    ping: Option<(u32, Instant)>,
    /// Nothing was received since the last tick.
    idle: bool,
}

impl Keepalive {
    pub fn new(interval: Option<Duration>, timeout: Duration, now: Instant) -> Keepalive {
        Keepalive {
            interval,
            timeout,
            next_tick: now + interval.unwrap_or_default(),
            ping: None,
            idle: true,
        }
    }

    #[inline]
    pub fn received(&mut self) {
        self.idle = false;
    }

    /// A NOP-Out echoed `ttt`: the ping with that tag is answered.
    pub fn answered(&mut self, ttt: u32) {
        if self.ping.is_some_and(|(t, _)| t == ttt) {
            self.ping = None;
        }
    }

    /// The ping is outstanding.
    pub fn outstanding(&self) -> Option<u32> {
        self.ping.map(|(t, _)| t)
    }

    pub fn pinged(&mut self, ttt: u32, now: Instant) {
        self.ping = Some((ttt, now + self.timeout));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = self.interval.map(|_| self.next_tick);
        match (tick, self.ping.map(|(_, due)| due)) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Wake {
        if self.ping.is_some_and(|(_, due)| now >= due) {
            return Wake::Dead;
        }
        let Some(interval) = self.interval else {
            return Wake::Nothing;
        };
        if now < self.next_tick {
            return Wake::Nothing;
        }
        // The next interval starts now, not at the missed tick: a late wake-up does
        // not fire a burst.
        self.next_tick = now + interval;
        let ping = self.ping.is_none() && self.idle;
        self.idle = true;
        if ping {
            Wake::Ping
        } else {
            Wake::Nothing
        }
    }
}
