//! The DHCPv6 load generator's loop: SOLICIT → ADVERTISE, REQUEST → REPLY for many distinct
//! clients (DUID-LL per client), with IA_NA, IA_PD or both, over the same [`Port`]s, exchange
//! table, counters and report as the DHCPv4 loop in [`crate::gen`].
//!
//! It is that loop with the v6 messages: each iteration receives a batch of replies (matching
//! them to exchanges by the 24-bit transaction id and queueing the REQUEST that answers an
//! ADVERTISE), sends those follow-ups, starts new exchanges (closed loop up to the window, or open
//! loop at the target rate), flushes, and every millisecond expires exchanges older than the
//! timeout. An ADVERTISE or REPLY that does not grant every IA asked for (a status code, or an IA
//! without an address or prefix) ends its exchange as refused, counted with the NAKs of v4.
//! It is kept apart from the v4 loop so the v4 generator stays exactly as measured before.
//!
//! The server's DUID from the latest ADVERTISE is kept once (every lab has one server per
//! generator), so a queued REQUEST costs no copy of it. Everything is allocated before the loop.

use crate::frames::client_mac;
use crate::frames6::{
    parse_reply6, Fields6, Kind6, Templates6, CLIENT_PORT, MAX_DUID, MSG_ADVERTISE, MSG_REPLY,
};
use crate::gen::{run_loop, Exchanges, GenConfig, RX_ROUNDS};
use crate::port::Port;
use crate::stats::{Counters, Latencies, Report};
use crate::track::{Stage, Table};
use std::sync::atomic::AtomicBool;

/// DHCPv6 transaction ids are 24 bits.
const XID_BITS: u32 = 24;

/// A REQUEST due in answer to an ADVERTISE.
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: u32,
    xid: u32,
    client: u32,
    addr: [u8; 16],
    prefix: [u8; 16],
    prefix_len: u8,
}

/// The state of one DHCPv6 run, kept apart from the port so the reply handling is testable alone.
pub struct Generator6<'t> {
    cfg: GenConfig,
    templates: &'t Templates6,
    table: Table,
    pending: Vec<Pending>,
    server_id: [u8; MAX_DUID],
    server_id_len: usize,
    next_client: u32,
    pub counters: Counters,
    pub latency: Latencies,
}

impl std::fmt::Debug for Generator6<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator6")
            .field("table", &self.table)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'t> Generator6<'t> {
    /// `cfg.mode` and `cfg.renew_pct` do not apply (always SOLICIT/ADVERTISE/REQUEST/REPLY).
    pub fn new(cfg: GenConfig, templates: &'t Templates6) -> Generator6<'t> {
        let table = Table::with_xid_bits(cfg.window, XID_BITS);
        // At most RX_ROUNDS full batches of ADVERTISEs arrive per iteration, and the queue is
        // drained every iteration: twice that is room enough, and it never grows.
        let pending_cap = (RX_ROUNDS * cfg.batch.max(1) * 2).min(table.capacity());
        Generator6 {
            table,
            pending: Vec::with_capacity(pending_cap),
            server_id: [0; MAX_DUID],
            server_id_len: 0,
            next_client: 0,
            counters: Counters::default(),
            latency: Latencies::new(),
            templates,
            cfg,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.table.busy()
    }

    /// The window actually used (the table's capacity: a power of two, at most 2^16).
    pub fn window(&self) -> usize {
        self.table.capacity()
    }

    /// Handles one received frame at time `now`.
    pub fn on_frame(&mut self, frame: &[u8], now: u64) {
        self.counters.received += 1;
        let Some(r) = parse_reply6(frame, CLIENT_PORT) else {
            self.counters.unparsed += 1;
            return;
        };
        let expected: &[Stage] = match r.msg_type {
            MSG_ADVERTISE => &[Stage::Discover],
            MSG_REPLY => &[Stage::Request],
            _ => {
                self.counters.unparsed += 1;
                return;
            }
        };
        let Some((slot, s)) = self.match_reply(r.xid, expected, now) else {
            return;
        };
        let lt = self.templates.lease_type();
        let usable_sid = !r.server_id.is_empty() && r.server_id.len() <= MAX_DUID;
        if !r.grants(lt) || (r.msg_type == MSG_ADVERTISE && !usable_sid) {
            self.table.finish(slot);
            if s.measured {
                self.counters.naks += 1;
            }
            return;
        }
        if r.msg_type == MSG_REPLY {
            self.table.finish(slot);
            if s.measured {
                self.counters.completed += 1;
                self.latency.exchange.record(now.saturating_sub(s.start_ns));
            }
            return;
        }
        // ADVERTISE: answer with a REQUEST on the next send.
        if self.server_id[..self.server_id_len] != *r.server_id {
            self.server_id[..r.server_id.len()].copy_from_slice(r.server_id);
            self.server_id_len = r.server_id.len();
        }
        if self.pending.len() == self.pending.capacity() {
            // Never reached with the loop below; if it were, the exchange times out (a drop
            // charged to the generator, visible as timeouts with no server-side loss).
            return;
        }
        let (prefix, prefix_len) = r.prefix.unwrap_or(([0; 16], 0));
        self.pending.push(Pending {
            slot,
            xid: r.xid,
            client: s.client,
            addr: r.addr.unwrap_or([0; 16]),
            prefix,
            prefix_len,
        });
    }

    /// Sends queued REQUESTs; keeps what the port could not take.
    fn send_pending<P: Port>(&mut self, port: &mut P, now: u64) {
        let mut done = 0;
        let seed = self.cfg.mac_seed;
        let t = self.templates;
        for i in 0..self.pending.len() {
            let p = self.pending[i];
            let s = self.table.get(p.slot);
            if s.xid != p.xid || s.stage != Stage::Discover {
                done += 1; // expired meanwhile
                continue;
            }
            let f = Fields6 {
                xid: p.xid,
                mac: client_mac(seed, p.client),
                addr: p.addr,
                prefix: p.prefix,
                prefix_len: p.prefix_len,
                server_id: &self.server_id[..self.server_id_len],
            };
            if !port.send(&mut |buf| t.write(Kind6::Request, &f, buf)) {
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
            let client = self.next_new_client();
            let Some((slot, xid)) = self.table.start(client, Stage::Discover, now, measured) else {
                self.unget_client();
                if self.cfg.rate > 0 {
                    self.counters.window_full += 1;
                    handled += 1;
                    continue;
                }
                break;
            };
            let f = Fields6 {
                xid,
                mac: client_mac(self.cfg.mac_seed, client),
                addr: [0; 16],
                prefix: [0; 16],
                prefix_len: 0,
                server_id: &[],
            };
            if !port.send(&mut |buf| t.write(Kind6::Solicit, &f, buf)) {
                // Back-pressure from the ring: undo and try again next iteration.
                self.table.finish(slot);
                self.unget_client();
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

    fn unget_client(&mut self) {
        self.next_client = self
            .next_client
            .checked_sub(1)
            .unwrap_or(self.cfg.clients.max(1) - 1);
    }

    /// Runs the whole measurement on `port` and returns the report.
    pub fn run<P: Port>(&mut self, port: &mut P, stop: &AtomicBool) -> Report {
        run_loop(self, port, stop)
    }
}

impl Exchanges for Generator6<'_> {
    fn cfg(&self) -> &GenConfig {
        &self.cfg
    }
    fn window(&self) -> usize {
        // The table caps the window (24-bit xids leave room for 2^16 slots).
        self.table.capacity()
    }
    fn on_frame(&mut self, frame: &[u8], now: u64) {
        Generator6::on_frame(self, frame, now)
    }
    fn send_pending<P: Port>(&mut self, port: &mut P, now: u64) {
        Generator6::send_pending(self, port, now)
    }
    fn start_new<P: Port>(&mut self, port: &mut P, n: u64, now: u64, measured: bool) -> u64 {
        Generator6::start_new(self, port, n, now, measured)
    }
    fn state(&mut self) -> (&mut Table, &mut Counters, &mut Latencies) {
        (&mut self.table, &mut self.counters, &mut self.latency)
    }
    fn mode_name(&self) -> String {
        format!("sarr6 ({})", self.templates.lease_type().name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames6::{LeaseType, Link6};
    use crate::port::MemoryPort;
    use std::net::Ipv6Addr;
    use std::path::Path;
    use std::sync::Arc;
    use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
    use xdhcp_dataplane::engine::{NullSink, Worker};
    use xdhcp_dataplane::server::build_shared;

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

    /// The real xdhcp engine, one worker, serving addresses up to `pool_last` and 65,536 `/56`s out of a `/40`
    /// on interface "bench0" (ifindex 1).
    fn engine(pool_last: &str) -> Worker {
        let text = format!(
            r#"{{ "Dhcp6": {{
            "interfaces-config": {{ "interfaces": [ "bench0" ] }},
            "lease-database": {{ "type": "memfile", "persist": false }},
            "preferred-lifetime": 3000, "valid-lifetime": 4000,
            "subnet6": [ {{ "id": 1, "subnet": "2001:db8:64::/64", "interface": "bench0",
                "pools": [ {{ "pool": "2001:db8:64::1 - {pool_last}" }} ],
                "pd-pools": [ {{ "prefix": "2001:db8:c000::", "prefix-len": 40, "delegated-len": 56 }} ] }} ] }} }}"#
        );
        let cfg = xdhcp_config::load_str(&text, Path::new("bench6.json"))
            .expect("bench config is valid")
            .config;
        let shared = Arc::new(
            build_shared(&cfg, 1, vec![(1, "bench0".to_string())]).expect("engine builds"),
        );
        Worker::new(shared, 0, Box::new(NullSink))
    }

    fn run_against(worker: &mut Worker, lt: LeaseType, cfg: GenConfig) -> Report {
        let t = Templates6::new(Link6::multicast([2, 0, 0, 0, 0, 2], LL), lt);
        let ctx = RxContext {
            ifindex: 1,
            queue: 0,
            if_mac: [2, 0, 0, 0, 0, 1],
            if_ipv4: std::net::Ipv4Addr::UNSPECIFIED,
        };
        let mut server = |f: &[u8]| {
            let mut tx = vec![0u8; 2048];
            let n = worker.handle_frame(Now::read(), &ctx, f, &mut tx)?;
            tx.truncate(n);
            Some(tx)
        };
        let mut p = MemoryPort::new(&mut server, 16);
        let mut g = Generator6::new(cfg, &t);
        g.run(&mut p, &AtomicBool::new(false))
    }

    fn quick(clients: u32) -> GenConfig {
        GenConfig {
            clients,
            window: 8,
            duration_ns: 40_000_000,
            warmup_ns: 0,
            timeout_ns: 20_000_000,
            ..GenConfig::default()
        }
    }

    #[test]
    fn the_real_engine_completes_every_exchange_for_every_lease_type() {
        for lt in [
            LeaseType::Address,
            LeaseType::Prefix,
            LeaseType::AddressAndPrefix,
        ] {
            let mut w = engine("2001:db8:64::ffff");
            let r = run_against(&mut w, lt, quick(1_000_000));
            let c = r.counters;
            assert!(c.completed > 50, "{lt:?}: {c:?}");
            assert_eq!(c.naks + c.timeouts, 0, "{lt:?}: {c:?}");
            assert_eq!(c.started, c.completed, "every measured exchange completed");
            assert_eq!(c.unknown_xid + c.wrong_stage + c.unparsed, 0, "{c:?}");
            assert_eq!(c.replies, 2 * c.completed, "ADVERTISE and REPLY each");
            assert_eq!(r.latency.samples, c.completed);
            assert_eq!(r.round_trip.samples, c.replies);
            assert!(r.mode.contains(lt.name()));
        }
    }

    #[test]
    fn an_exhausted_pool_is_counted_as_refused_not_completed() {
        // Ten addresses for a thousand distinct clients: the eleventh and later are refused.
        let mut w = engine("2001:db8:64::a");
        let r = run_against(&mut w, LeaseType::AddressAndPrefix, quick(1000));
        let c = r.counters;
        assert!(c.completed >= 10, "{c:?}");
        assert!(c.naks > 0, "NoAddrsAvail must show as refused: {c:?}");
        assert_eq!(c.started, c.completed + c.naks + c.timeouts, "{c:?}");
    }

    #[test]
    fn unanswered_requests_time_out_as_drops() {
        let t = Templates6::new(Link6::multicast([2; 6], LL), LeaseType::AddressAndPrefix);
        let mut w = engine("2001:db8:64::ffff");
        let ctx = RxContext {
            ifindex: 1,
            queue: 0,
            if_mac: [2, 0, 0, 0, 0, 1],
            if_ipv4: std::net::Ipv4Addr::UNSPECIFIED,
        };
        // The server answers SOLICITs only.
        let mut server = |f: &[u8]| {
            if f.get(crate::frames6::MSG6_OFF) != Some(&crate::frames6::MSG_SOLICIT) {
                return None;
            }
            let mut tx = vec![0u8; 2048];
            let n = w.handle_frame(Now::read(), &ctx, f, &mut tx)?;
            tx.truncate(n);
            Some(tx)
        };
        let mut p = MemoryPort::new(&mut server, 16);
        let cfg = GenConfig {
            window: 4,
            duration_ns: 5_000_000,
            warmup_ns: 0,
            timeout_ns: 2_000_000,
            ..GenConfig::default()
        };
        let mut g = Generator6::new(cfg, &t);
        let r = g.run(&mut p, &AtomicBool::new(false));
        assert_eq!(r.counters.completed, 0);
        assert!(r.counters.timeouts >= 4);
        assert_eq!(r.counters.started, r.counters.timeouts);
        assert_eq!(r.counters.replies, r.counters.started, "ADVERTISEs arrived");
    }
}
