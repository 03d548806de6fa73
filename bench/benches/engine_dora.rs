//! The engine alone, on one core, in memory: complete DHCPv4 DORA exchanges (DISCOVER frame →
//! `Worker::handle_frame` → OFFER, REQUEST → ACK) through the real engine and lease store, each
//! by a new client (a /8 pool of 16.7 M addresses, so millions of distinct clients allocate),
//! with a null lease sink and with a real journal producer (group commit by the journal thread
//! on the other core). Also the pieces: frame parse, DHCP parse, store allocation.
//!
//! Before criterion's own runs it prints a plain `engine DORA: N exchanges/s` line per variant
//! from a fixed-size timed loop, the figure DESIGN.md's target (≥ 1,000,000/s) is about.
//! Run: `cargo bench -p xdhcp-bench --bench engine_dora`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xdhcp_bench::frames::{client_mac, Addressing, Fields, Kind, Templates, BOOTP_OFF};
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{LeaseSink, NullSink, Worker};
use xdhcp_dataplane::lease::journal::{Journal, JournalConfig};
use xdhcp_dataplane::lease::store::ClientKey;
use xdhcp_dataplane::lease::{HwAddr, Lease4, LeaseState};
use xdhcp_dataplane::server::build_shared;
use xdhcp_dataplane::wire::dhcp4::{Dhcp4Scratch, Dhcp4View};
use xdhcp_dataplane::wire::frame::parse_udp_frame;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const POOL_SIZE: u32 = 16_000_000;

const CONFIG: &str = r#"{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "bench0" ] },
    "lease-database": { "type": "memfile", "persist": false },
    "valid-lifetime": 7200, "renew-timer": 3600, "rebind-timer": 6000,
    "subnet4": [ { "id": 1, "subnet": "10.0.0.0/8",
        "pools": [ { "pool": "10.0.1.0 - 10.255.255.250" } ],
        "option-data": [ { "name": "routers", "data": "10.0.0.1" },
                         { "name": "domain-name-servers", "data": "10.0.0.53, 10.0.0.54" } ] } ] } }"#;

fn ctx() -> RxContext {
    RxContext { ifindex: 1, queue: 0, if_mac: [2, 0, 0, 0, 0, 1], if_ipv4: SERVER }
}

fn templates() -> Templates {
    Templates::new(Addressing::Relay { relay_ip: RELAY, relay_mac: [2, 0, 0, 0, 0, 2], server_ip: SERVER, server_mac: [2, 0, 0, 0, 0, 1] })
}

/// A worker over a fresh store, and the journal behind its sink if any.
fn worker(journal_dir: Option<&Path>) -> (Worker, Option<Journal>) {
    let cfg = xdhcp_config::load_str(CONFIG, Path::new("bench.json")).expect("bench config is valid").config;
    let shared = Arc::new(build_shared(&cfg, 1, vec![(1, "bench0".to_string())]).expect("engine builds"));
    match journal_dir {
        None => (Worker::new(shared, 0, Box::new(NullSink)), None),
        Some(dir) => {
            let (j, _) = Journal::open(JournalConfig::new(dir)).expect("journal opens");
            let sink: Box<dyn LeaseSink> = Box::new(j.producer());
            (Worker::new(shared, 0, sink), Some(j))
        }
    }
}

/// One client's DORA, the frames patched in place (xid, chaddr, requested address, server id);
/// the request frames carry stale UDP checksums, which the server does not verify (it must
/// accept CHECKSUM_PARTIAL frames), so patching is all the "client" costs.
struct Dora {
    discover: Vec<u8>,
    request: Vec<u8>,
    tx: Vec<u8>,
    ctx: RxContext,
    now: Now,
    failed: u64,
}

impl Dora {
    fn new() -> Dora {
        let t = templates();
        let f = Fields { xid: 0, mac: [0; 6], addr: 0, server_id: u32::from(SERVER) };
        let mut discover = vec![0u8; 2048];
        let n = t.write(Kind::Discover, &f, &mut discover);
        discover.truncate(n);
        let mut request = vec![0u8; 2048];
        let n = t.write(Kind::Select, &f, &mut request);
        request.truncate(n);
        Dora { discover, request, tx: vec![0u8; 2048], ctx: ctx(), now: Now::read(), failed: 0 }
    }

    #[inline]
    fn exchange(&mut self, w: &mut Worker, client: u32) {
        let m = BOOTP_OFF;
        let mac = client_mac(9, client);
        let xid = client.wrapping_mul(2_654_435_761);
        self.discover[m + 4..m + 8].copy_from_slice(&xid.to_be_bytes());
        self.discover[m + 28..m + 34].copy_from_slice(&mac);
        let Some(n) = w.handle_frame(self.now, &self.ctx, &self.discover, &mut self.tx) else {
            self.failed += 1;
            return;
        };
        // OFFER's yiaddr; the reply's BOOTP starts at the same offset (no VLAN).
        let yiaddr: [u8; 4] = self.tx[m + 16..m + 20].try_into().unwrap_or_default();
        debug_assert!(n > m + 240);
        self.request[m + 4..m + 8].copy_from_slice(&xid.to_be_bytes());
        self.request[m + 28..m + 34].copy_from_slice(&mac);
        // Option 50's data follows option 53 (3 bytes) and its own 2-byte header.
        self.request[m + 245..m + 249].copy_from_slice(&yiaddr);
        match w.handle_frame(self.now, &self.ctx, &self.request, &mut self.tx) {
            Some(_) if self.tx[m + 242] == 5 => {}
            _ => self.failed += 1,
        }
    }
}

/// The plain figure: `count` exchanges by distinct clients, timed as a whole.
fn report_rate(label: &str, journal: bool, count: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut w, j) = worker(journal.then(|| dir.path()));
    let mut d = Dora::new();
    // Warm the caches and the allocator's first words.
    for c in 0..10_000 {
        d.exchange(&mut w, POOL_SIZE - 1 - c);
    }
    let t = Instant::now();
    for c in 0..count {
        d.exchange(&mut w, c);
        if journal && c % 4096 == 0 {
            // The journal thread drains on the other core; the bench does not outrun it
            // forever (a real worker would drop and count, which is not what is measured).
            while !w.sink.has_room() {
                std::hint::spin_loop();
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "engine DORA ({label}): {:.0} exchanges/s on one core ({count} distinct clients, {:.0} ns per exchange, {} failed)",
        f64::from(count) / secs,
        secs * 1e9 / f64::from(count),
        d.failed
    );
    drop(w);
    if let Some(j) = j {
        let _ = j.shutdown();
    }
}

fn dora(c: &mut Criterion) {
    let count = std::env::var("XD_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    report_rate("null sink", false, count);
    report_rate("journal producer", true, count);

    let mut g = c.benchmark_group("dora");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for journal in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, j) = worker(journal.then(|| dir.path()));
        let mut d = Dora::new();
        let mut client = 0u32;
        let name = if journal { "journal_producer" } else { "null_sink" };
        g.bench_function(name, |b| {
            b.iter(|| {
                d.exchange(&mut w, client);
                client = (client + 1) % POOL_SIZE;
                if journal && client % 1024 == 0 {
                    while !w.sink.has_room() {
                        std::hint::spin_loop();
                    }
                }
            })
        });
        drop(w);
        if let Some(j) = j {
            let _ = j.shutdown();
        }
    }
    g.finish();
}

fn parts(c: &mut Criterion) {
    let t = templates();
    let mut frame = vec![0u8; 2048];
    let n = t.write(Kind::Discover, &Fields { xid: 1, mac: client_mac(1, 1), addr: 0, server_id: 0 }, &mut frame);
    frame.truncate(n);
    let mut g = c.benchmark_group("parts");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("frame_parse", |b| b.iter(|| parse_udp_frame(std::hint::black_box(&frame)).map(|f| f.payload_end)));
    let f = parse_udp_frame(&frame).expect("template parses");
    let payload = &frame[f.payload_start..f.payload_end];
    let mut scratch = Box::<Dhcp4Scratch>::default();
    g.bench_function("dhcp_parse", |b| {
        b.iter(|| Dhcp4View::parse(std::hint::black_box(payload), &mut scratch).map(|v| v.xid()).ok())
    });
    let mut buf = vec![0u8; 2048];
    g.bench_function("request_build", |b| {
        let mut x = 0u32;
        b.iter(|| {
            x = x.wrapping_add(1);
            t.write(Kind::Discover, &Fields { xid: x, mac: client_mac(1, x), addr: 0, server_id: 0 }, &mut buf)
        })
    });
    let (w, _) = worker(None);
    let store = w.shared.store.clone();
    let now = Now::read().unix_secs;
    let mut n = 0u32;
    g.bench_function("store_allocate", |b| {
        b.iter(|| {
            n = (n + 1) % POOL_SIZE;
            let hw = HwAddr::ethernet(client_mac(3, n));
            let key = ClientKey::v4(1, &hw, None, true);
            let make = |addr: Ipv4Addr| Lease4 {
                addr,
                hwaddr: hw,
                client_id: Default::default(),
                subnet_id: 1,
                cltt: now,
                valid_lft: 60,
                state: LeaseState::Offered,
                fqdn_fwd: false,
                fqdn_rev: false,
                hostname: None,
            };
            store.allocate4(&key, &[0], 0, &make, now).map(|l| l.addr).ok()
        })
    });
    g.finish();
}

criterion_group!(benches, dora, parts);
criterion_main!(benches);
