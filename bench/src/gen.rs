//! The load generator's loop: one thread, busy-polling its [`Port`], simulating many DHCPv4
//! clients. Each iteration receives a batch of replies (matching them to exchanges by xid and
//! queueing the REQUEST that answers an OFFER), sends those follow-ups, starts new exchanges
//! (closed loop: up to the window of exchanges in flight; open loop: as many as the target rate
//! has made due), flushes the batch with one system call, and every millisecond expires the
//! exchanges that waited longer than the timeout.
//!
//! Only exchanges started after the warm-up are measured; after the run time no new exchange
//! starts and the loop waits (at most one timeout) for the ones in flight, so every measured
//! exchange ends as completed, NAKed or timed out. Everything is allocated before the loop.

use crate::frames::{
    client_mac, parse_reply, Fields, Kind, Templates, MSG_ACK, MSG_NAK, MSG_OFFER,
};
use crate::port::{idle_wait, mono_ns, next_due_ns, Port};
use crate::stats::{Counters, Latencies, Report, RunInfo};
use crate::track::{Mismatch, Slot, Stage, Table};
use std::sync::atomic::{AtomicBool, Ordering};

/// What each exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// DISCOVER → OFFER, REQUEST → ACK (plus renewals if asked for).
    Dora,
    /// One frame to an echo responder and back: the I/O floor of the lab.
    Echo,
}

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub mode: Mode,
    /// Distinct simulated clients; client numbers wrap around after this many.
    pub clients: u32,
    /// Second byte of every client MAC: keeps concurrent generators apart.
    pub mac_seed: u8,
    /// Percentage of exchanges that renew an already bound client (REQUEST with ciaddr).
    pub renew_pct: u32,
    /// Closed loop: exchanges in flight. Open loop: table size (in-flight bound).
    pub window: usize,
    /// Open loop target in exchanges/s; 0 = closed loop at the maximum rate.
    pub rate: u64,
    pub duration_ns: u64,
    pub warmup_ns: u64,
    pub timeout_ns: u64,
    /// Frames per receive and per transmit batch.
    pub batch: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            mode: Mode::Dora,
            clients: 1_000_000,
            mac_seed: 0,
            renew_pct: 0,
            window: 256,
            rate: 0,
            duration_ns: 5_000_000_000,
            warmup_ns: 500_000_000,
            timeout_ns: 1_000_000_000,
            batch: 64,
        }
    }
}

/// Receive batches taken per loop iteration at most (bounded so sending is never starved either).
pub(crate) const RX_ROUNDS: usize = 8;

/// Empty iterations before the loop sleeps or yields.
const IDLE_SPINS: u32 = 32;

/// A REQUEST due in answer to an OFFER.
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: u32,
    xid: u32,
    client: u32,
    addr: u32,
    server_id: u32,
}

/// xorshift64*: cheap and good enough to pick renewing clients.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The state of one run, kept apart from the port so the reply handling is testable alone.
pub struct Generator<'t> {
    cfg: GenConfig,
    templates: &'t Templates,
    table: Table,
    pending: Vec<Pending>,
    /// Address of each bound client (0 = none), for renewals.
    addr_of: Vec<u32>,
    bound: Vec<u32>,
    next_client: u32,
    rng: Rng,
    pub counters: Counters,
    pub latency: Latencies,
    server_id_fallback: u32,
}

impl std::fmt::Debug for Generator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("table", &self.table)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'t> Generator<'t> {
    pub fn new(cfg: GenConfig, templates: &'t Templates) -> Generator<'t> {
        let renew = cfg.renew_pct > 0 && cfg.mode == Mode::Dora;
        let clients = cfg.clients.max(1) as usize;
        let server_id_fallback = match templates.addressing() {
            crate::frames::Addressing::Relay { server_ip, .. }
            | crate::frames::Addressing::Direct { server_ip, .. } => u32::from(server_ip),
        };
        Generator {
            table: Table::new(cfg.window),
            pending: Vec::with_capacity(cfg.batch.max(1) * 2),
            addr_of: if renew { vec![0; clients] } else { Vec::new() },
            bound: if renew {
                Vec::with_capacity(clients)
            } else {
                Vec::new()
            },
            next_client: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(cfg.mac_seed)),
            counters: Counters::default(),
            latency: Latencies::new(),
            templates,
            server_id_fallback,
            cfg,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.table.busy()
    }

    /// Handles one received frame at time `now`.
    pub fn on_frame(&mut self, frame: &[u8], now: u64) {
        self.counters.received += 1;
        let port = self.templates.addressing().reply_port();
        let Some(r) = parse_reply(frame, port) else {
            self.counters.unparsed += 1;
            return;
        };
        let (expected, echo): (&[Stage], bool) = match (self.cfg.mode, r.op, r.msg_type) {
            (Mode::Echo, _, _) => (&[Stage::Echo], true),
            (Mode::Dora, 2, MSG_OFFER) => (&[Stage::Discover], false),
            (Mode::Dora, 2, MSG_ACK | MSG_NAK) => (&[Stage::Request, Stage::Renew], false),
            _ => {
                self.counters.unparsed += 1;
                return;
            }
        };
        let Some((slot, s)) = self.match_reply(r.xid, expected, now) else {
            return;
        };
        if echo || r.msg_type == MSG_ACK {
            self.table.finish(slot);
            if s.measured {
                self.counters.completed += 1;
                if s.stage == Stage::Renew {
                    self.counters.renewals += 1;
                }
                self.latency.exchange.record(now.saturating_sub(s.start_ns));
            }
            if !echo && !self.addr_of.is_empty() && r.yiaddr != 0 {
                let c = s.client as usize;
                if self.addr_of[c] == 0 && self.bound.len() < self.bound.capacity() {
                    self.bound.push(s.client);
                }
                self.addr_of[c] = r.yiaddr;
            }
        } else if r.msg_type == MSG_NAK {
            self.table.finish(slot);
            if s.measured {
                self.counters.naks += 1;
            }
        } else {
            // OFFER: answer with a REQUEST (selecting) on the next send.
            let server_id = if r.server_id != 0 {
                r.server_id
            } else {
                self.server_id_fallback
            };
            // Bounded: at most one pending REQUEST per exchange in flight.
            if self.pending.len() < self.table.capacity() {
                self.pending.push(Pending {
                    slot,
                    xid: r.xid,
                    client: s.client,
                    addr: r.yiaddr,
                    server_id,
                });
            }
        }
    }

    /// Sends queued REQUESTs; keeps what the port could not take.
    fn send_pending<P: Port>(&mut self, port: &mut P, now: u64) {
        let mut done = 0;
        let seed = self.cfg.mac_seed;
        for i in 0..self.pending.len() {
            let p = self.pending[i];
            let s = self.table.get(p.slot);
            if s.xid != p.xid || s.stage != Stage::Discover {
                done += 1; // expired meanwhile
                continue;
            }
            let f = Fields {
                xid: p.xid,
                mac: client_mac(seed, p.client),
                addr: p.addr,
                server_id: p.server_id,
            };
            let t = self.templates;
            if !port.send(&mut |buf| t.write(Kind::Select, &f, buf)) {
                break;
            }
            self.counters.sent += 1;
            self.table.advance(p.slot, Stage::Request, now);
            done += 1;
        }
        self.pending.drain(..done);
    }

    /// Starts up to `n` new exchanges; returns how many were started (or skipped because the
    /// window was full, in open loop, which also counts as handled).
    fn start_new<P: Port>(&mut self, port: &mut P, n: u64, now: u64, measured: bool) -> u64 {
        let mut handled = 0;
        let t = self.templates;
        while handled < n {
            let (client, kind, stage, addr) = if self.cfg.mode == Mode::Echo {
                (self.next_new_client(), Kind::Discover, Stage::Echo, 0)
            } else if !self.bound.is_empty()
                && (self.rng.next() % 100) < u64::from(self.cfg.renew_pct)
            {
                let c = self.bound[(self.rng.next() % self.bound.len() as u64) as usize];
                (c, Kind::Renew, Stage::Renew, self.addr_of[c as usize])
            } else {
                (self.next_new_client(), Kind::Discover, Stage::Discover, 0)
            };
            let Some((slot, xid)) = self.table.start(client, stage, now, measured) else {
                if self.cfg.rate > 0 {
                    self.counters.window_full += 1;
                    handled += 1;
                    continue;
                }
                break;
            };
            let f = Fields {
                xid,
                mac: client_mac(self.cfg.mac_seed, client),
                addr,
                server_id: 0,
            };
            if !port.send(&mut |buf| t.write(kind, &f, buf)) {
                // Back-pressure from the ring: undo and try again next iteration.
                self.table.finish(slot);
                if self.cfg.mode != Mode::Echo && kind == Kind::Discover {
                    self.next_client = self
                        .next_client
                        .checked_sub(1)
                        .unwrap_or(self.cfg.clients.max(1) - 1);
                }
                self.counters.tx_dropped += 1;
                break;
            }
            self.counters.sent += 1;
            if measured {
                self.counters.started += 1;
            }
            handled += 1;
        }
        handled
    }

    fn next_new_client(&mut self) -> u32 {
        let c = self.next_client;
        self.next_client = if c + 1 >= self.cfg.clients.max(1) {
            0
        } else {
            c + 1
        };
        c
    }

    /// Runs the whole measurement on `port` and returns the report.
    pub fn run<P: Port>(&mut self, port: &mut P, stop: &AtomicBool) -> Report {
        run_loop(self, port, stop)
    }
}

impl Exchanges for Generator<'_> {
    fn cfg(&self) -> &GenConfig {
        &self.cfg
    }
    fn window(&self) -> usize {
        self.cfg.window
    }
    fn on_frame(&mut self, frame: &[u8], now: u64) {
        Generator::on_frame(self, frame, now)
    }
    fn send_pending<P: Port>(&mut self, port: &mut P, now: u64) {
        Generator::send_pending(self, port, now)
    }
    fn start_new<P: Port>(&mut self, port: &mut P, n: u64, now: u64, measured: bool) -> u64 {
        Generator::start_new(self, port, n, now, measured)
    }
    fn state(&mut self) -> (&mut Table, &mut Counters, &mut Latencies) {
        (&mut self.table, &mut self.counters, &mut self.latency)
    }
    fn mode_name(&self) -> String {
        match self.cfg.mode {
            Mode::Dora if self.cfg.renew_pct > 0 => "dora+renew",
            Mode::Dora => "dora",
            Mode::Echo => "echo",
        }
        .to_string()
    }
}

/// One protocol's exchanges, as [`run_loop`] drives them: DHCPv4 (DORA, renewals, echo) in
/// [`Generator`], DHCPv6 (SOLICIT/ADVERTISE/REQUEST/REPLY) in [`crate::gen6::Generator6`].
pub(crate) trait Exchanges {
    fn cfg(&self) -> &GenConfig;
    /// Exchanges in flight at most in closed loop.
    fn window(&self) -> usize;
    /// Handles one received frame at time `now`.
    fn on_frame(&mut self, frame: &[u8], now: u64);
    /// Sends the follow-up requests queued by `on_frame`; keeps what the port could not take.
    fn send_pending<P: Port>(&mut self, port: &mut P, now: u64);
    /// Starts up to `n` new exchanges; returns how many were started (or skipped because the
    /// window was full, in open loop, which also counts as handled).
    fn start_new<P: Port>(&mut self, port: &mut P, n: u64, now: u64, measured: bool) -> u64;
    /// The exchange table, the counters and the latency histograms.
    fn state(&mut self) -> (&mut Table, &mut Counters, &mut Latencies);
    /// The run's mode as the report names it.
    fn mode_name(&self) -> String;

    /// The exchange in flight that a reply with `xid` answers, if it waits for a reply at one of
    /// the `expected` stages, with the slot's state. A reply that matches nothing or comes at the
    /// wrong stage is counted and gives `None`; a matched reply to a measured exchange counts as a
    /// reply and records its round trip.
    fn match_reply(&mut self, xid: u32, expected: &[Stage], now: u64) -> Option<(u32, Slot)> {
        let (table, counters, latency) = self.state();
        let slot = match table.find(xid, expected) {
            Ok(s) => s,
            Err(Mismatch::Unknown) => {
                counters.unknown_xid += 1;
                return None;
            }
            Err(Mismatch::WrongStage) => {
                counters.wrong_stage += 1;
                return None;
            }
        };
        let s = *table.get(slot);
        if s.measured {
            counters.replies += 1;
            latency.round_trip.record(now.saturating_sub(s.sent_ns));
        }
        Some((slot, s))
    }
}

/// The measurement loop both families share; see the module documentation.
pub(crate) fn run_loop<G: Exchanges, P: Port>(
    g: &mut G,
    port: &mut P,
    stop: &AtomicBool,
) -> Report {
    let cfg = g.cfg().clone();
    let cpu0 = crate::port::thread_cpu_ns();
    let t0 = mono_ns();
    let measure_start = t0 + cfg.warmup_ns;
    let end = measure_start + cfg.duration_ns;
    let mut launched: u64 = 0; // open loop pacing, counted from measure start back to t0
    let mut last_expire = t0;
    let mut stopped_at = None;
    let mut idle = 0u32;
    let batch = cfg.batch.max(1);
    let timeout = cfg.timeout_ns;
    let mut stalls = xdhcp_dataplane::backend::StallMeter::default();
    loop {
        let now = mono_ns();
        stalls.observe(now);
        // Drain replies before sending more: a generator that falls behind must not starve its
        // own RX ring (open loop would otherwise send ever more while replies overflow).
        let sent_before = g.state().1.sent;
        let mut got = 0;
        for _ in 0..RX_ROUNDS {
            let n = port.recv(batch, &mut |f: &[u8]| g.on_frame(f, now));
            got += n;
            if n < batch {
                break;
            }
        }
        g.send_pending(port, now);
        let running = now < end && !stop.load(Ordering::Relaxed);
        if running {
            let measured = now >= measure_start;
            let want = if cfg.rate == 0 {
                (g.window().saturating_sub(g.state().0.busy())) as u64
            } else {
                let due = (u128::from(now - t0) * u128::from(cfg.rate) / 1_000_000_000) as u64;
                due.saturating_sub(launched)
            };
            let n = want.min(batch as u64);
            if n > 0 {
                launched += g.start_new(port, n, now, measured);
            }
        } else if stopped_at.is_none() {
            stopped_at = Some(now);
        }
        port.flush();
        let (table, c, _) = g.state();
        if got == 0 && c.sent == sent_before {
            idle += 1;
            if idle >= IDLE_SPINS {
                idle = 0;
                // Closed loop (or draining) waits for a reply; open loop sleeps until its
                // next exchange is due, or a reply arrives.
                let due = (cfg.rate > 0 && running).then(|| next_due_ns(t0, launched, cfg.rate));
                stalls.sleeping();
                idle_wait(port, mono_ns(), due);
            }
        } else {
            idle = 0;
        }
        if now - last_expire >= 1_000_000 {
            last_expire = now;
            // A slice per millisecond: every slot is looked at within ~32 ms.
            let slice = (table.capacity() / 32).max(64);
            table.expire_some(now, timeout, slice, &mut |s| {
                if s.measured {
                    c.timeouts += 1;
                }
            });
        }
        if let Some(at) = stopped_at {
            if table.busy() == 0 {
                break;
            }
            if now - at > timeout + 10_000_000 {
                table.expire(u64::MAX, 0, &mut |s| {
                    if s.measured {
                        c.timeouts += 1;
                    }
                });
                break;
            }
        }
    }
    let stop_ns = stopped_at.unwrap_or_else(mono_ns);
    let measured_s = stop_ns.saturating_sub(measure_start).min(cfg.duration_ns) as f64 / 1e9;
    let total_s = stop_ns.saturating_sub(t0) as f64 / 1e9;
    let mode = g.mode_name();
    let (table, c, latency) = g.state();
    let run = RunInfo {
        mode,
        io: port.describe(),
        duration_s: measured_s,
        target_rate: cfg.rate,
        window: table.capacity() as u64,
        total_s,
        gen_cpu_s: crate::port::thread_cpu_ns().saturating_sub(cpu0) as f64 / 1e9,
        stalls: stalls.stalls,
        stalled_us: stalls.stalled_ns / 1000,
    };
    Report::new(&run, *c, latency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Addressing, FRAME_LEN};
    use crate::port::MemoryPort;
    use std::net::Ipv4Addr;

    const SRV: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

    fn templates() -> Templates {
        Templates::new(Addressing::Relay {
            relay_ip: Ipv4Addr::new(10, 64, 0, 2),
            relay_mac: [2; 6],
            server_ip: SRV,
            server_mac: [4; 6],
        })
    }

    /// A toy DHCP server: OFFER/ACK with yiaddr derived from the chaddr, NAK for client 13.
    fn toy_server(f: &[u8]) -> Option<Vec<u8>> {
        let mut r = f.to_vec();
        let m = crate::frames::BOOTP_OFF;
        r[m] = 2;
        let mt = r[m + 242];
        let client = u32::from_be_bytes([r[m + 30], r[m + 31], r[m + 32], r[m + 33]]);
        r[m + 242] = match mt {
            1 => MSG_OFFER,
            3 if client == 13 => MSG_NAK,
            3 => MSG_ACK,
            _ => return None,
        };
        r[m + 16..m + 20].copy_from_slice(&(0x0a40_0100 + client).to_be_bytes());
        Some(r)
    }

    fn run(cfg: GenConfig, server: fn(&[u8]) -> Option<Vec<u8>>) -> Report {
        let t = templates();
        let mut g = Generator::new(cfg, &t);
        let mut server = server;
        let mut p = MemoryPort::new(&mut server, 16);
        g.run(&mut p, &AtomicBool::new(false))
    }

    #[test]
    fn closed_loop_completes_dora_and_counts_naks() {
        let cfg = GenConfig {
            clients: 50,
            window: 8,
            duration_ns: 30_000_000,
            warmup_ns: 0,
            ..GenConfig::default()
        };
        let r = run(cfg, toy_server);
        let c = r.counters;
        assert!(c.completed > 100, "{c:?}");
        assert!(c.naks > 0, "client 13 is NAKed");
        assert_eq!(c.timeouts, 0);
        assert_eq!(
            c.started,
            c.completed + c.naks,
            "every measured exchange accounted for"
        );
        assert_eq!(c.unknown_xid + c.wrong_stage + c.unparsed, 0);
        // Two round trips per completed exchange (NAKed ones have two replies too).
        assert_eq!(c.replies, 2 * (c.completed + c.naks));
        assert_eq!(r.latency.samples, c.completed);
        // Every reply is a round trip, and none takes longer than its whole exchange.
        assert_eq!(r.round_trip.samples, c.replies);
        assert!(r.round_trip.max_us <= r.latency.max_us, "{r:?}");
    }

    #[test]
    fn unanswered_requests_time_out_as_drops() {
        fn offers_only(f: &[u8]) -> Option<Vec<u8>> {
            let r = toy_server(f)?;
            (r[crate::frames::BOOTP_OFF + 242] == MSG_OFFER).then_some(r)
        }
        let cfg = GenConfig {
            window: 4,
            duration_ns: 5_000_000,
            warmup_ns: 0,
            timeout_ns: 2_000_000,
            ..GenConfig::default()
        };
        let r = run(cfg, offers_only);
        assert_eq!(r.counters.completed, 0);
        assert!(r.counters.timeouts >= 4);
        assert_eq!(r.counters.started, r.counters.timeouts);
        assert!((r.drop_pct - 100.0).abs() < 1e-9);
    }

    #[test]
    fn renewals_reuse_the_bound_address() {
        fn check_renew(f: &[u8]) -> Option<Vec<u8>> {
            let m = crate::frames::BOOTP_OFF;
            let ciaddr = u32::from_be_bytes([f[m + 12], f[m + 13], f[m + 14], f[m + 15]]);
            let client = u32::from_be_bytes([f[m + 30], f[m + 31], f[m + 32], f[m + 33]]);
            if ciaddr != 0 && ciaddr != 0x0a40_0100 + client {
                return None; // a renewal with the wrong address is never answered
            }
            toy_server(f)
        }
        let cfg = GenConfig {
            clients: 20,
            renew_pct: 50,
            window: 4,
            duration_ns: 20_000_000,
            warmup_ns: 0,
            ..GenConfig::default()
        };
        let r = run(cfg, check_renew);
        assert!(r.counters.renewals > 10, "{:?}", r.counters);
        assert_eq!(r.counters.timeouts, 0);
        assert_eq!(r.mode, "dora+renew");
    }

    #[test]
    fn echo_mode_counts_one_round_trip_per_exchange() {
        let cfg = GenConfig {
            mode: Mode::Echo,
            window: 8,
            duration_ns: 10_000_000,
            warmup_ns: 0,
            ..GenConfig::default()
        };
        let r = run(cfg, |f| Some(f.to_vec()));
        assert!(r.counters.completed > 0);
        assert_eq!(r.counters.replies, r.counters.completed);
        assert_eq!(r.exchanges_per_s, r.packets_per_s);
        let _ = FRAME_LEN;
    }

    #[test]
    fn open_loop_keeps_the_target_rate() {
        let cfg = GenConfig {
            rate: 20_000,
            window: 64,
            duration_ns: 100_000_000,
            warmup_ns: 0,
            ..GenConfig::default()
        };
        let r = run(cfg, toy_server);
        // 20,000/s over 0.1 s = 2,000 exchanges, give or take the last millisecond.
        let c = r.counters;
        // Never more than due; fewer only if the test thread was descheduled near the end.
        assert!((1000..=2100).contains(&c.started), "{c:?}");
        assert_eq!(c.window_full, 0);
    }
}
