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
use xdhcp_bench::port::thread_cpu_ns;
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

/// The engine's configuration: one subnet with a pool of `XD_BENCH_POOL` (default "big": a /8,
/// 16.7 M addresses; "small": a /16, 65 k addresses, whose lease tables stay in the CPU caches —
/// the difference between the two is the memory cost of millions of clients).
fn config_text() -> String {
    let (prefix, last) = match std::env::var("XD_BENCH_POOL").as_deref() {
        Ok("small") => (16, "10.0.255.250"),
        _ => (8, "10.255.255.250"),
    };
    format!(
        r#"{{ "Dhcp4": {{
    "interfaces-config": {{ "interfaces": [ "bench0" ] }},
    "lease-database": {{ "type": "memfile", "persist": false }},
    "valid-lifetime": 7200, "renew-timer": 3600, "rebind-timer": 6000,
    "subnet4": [ {{ "id": 1, "subnet": "10.0.0.0/{prefix}",
        "pools": [ {{ "pool": "10.0.1.0 - {last}" }} ],
        "option-data": [ {{ "name": "routers", "data": "10.0.0.1" }},
                         {{ "name": "domain-name-servers", "data": "10.0.0.53, 10.0.0.54" }} ] }} ] }} }}"#
    )
}

fn pool_size() -> u32 {
    if std::env::var("XD_BENCH_POOL").as_deref() == Ok("small") {
        65_000
    } else {
        POOL_SIZE
    }
}

/// With `XD_BENCH_THP=1`, every large allocation is advised to use transparent huge pages (the
/// machine's THP mode is `madvise`). The store already advises its own big tables (pool slots,
/// client index); this also covers the rest (the v6 and out-of-pool maps, the journal's buffers).
/// Allocation itself is the system allocator's.
struct HugeAdvise;

static THP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

// SAFETY: forwards to the system allocator; madvise only advises on memory it returned.
unsafe impl std::alloc::GlobalAlloc for HugeAdvise {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { std::alloc::System.alloc(l) };
        advise(p, l.size());
        p
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { std::alloc::System.alloc_zeroed(l) };
        advise(p, l.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

fn advise(p: *mut u8, size: usize) {
    const HUGE: usize = 2 << 20;
    if p.is_null() || size < 4 * HUGE || !THP.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // Round inwards to whole huge pages.
    let start = (p as usize).div_ceil(HUGE) * HUGE;
    let end = (p as usize + size) / HUGE * HUGE;
    if end > start {
        // SAFETY: advice on a range inside an allocation we just made; failure is harmless.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[global_allocator]
static ALLOC: HugeAdvise = HugeAdvise;

fn ctx() -> RxContext {
    RxContext {
        ifindex: 1,
        queue: 0,
        if_mac: [2, 0, 0, 0, 0, 1],
        if_ipv4: SERVER,
    }
}

fn templates() -> Templates {
    Templates::new(Addressing::Relay {
        relay_ip: RELAY,
        relay_mac: [2, 0, 0, 0, 0, 2],
        server_ip: SERVER,
        server_mac: [2, 0, 0, 0, 0, 1],
    })
}

/// A worker over a fresh store, and the journal behind its sink if any.
fn worker(journal_dir: Option<&Path>) -> (Worker, Option<Journal>) {
    let cfg = xdhcp_config::load_str(&config_text(), Path::new("bench.json"))
        .expect("bench config is valid")
        .config;
    let shared =
        Arc::new(build_shared(&cfg, 1, vec![(1, "bench0".to_string())]).expect("engine builds"));
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
        let f = Fields {
            xid: 0,
            mac: [0; 6],
            addr: 0,
            server_id: u32::from(SERVER),
        };
        let mut discover = vec![0u8; 2048];
        let n = t.write(Kind::Discover, &f, &mut discover);
        discover.truncate(n);
        let mut request = vec![0u8; 2048];
        let n = t.write(Kind::Select, &f, &mut request);
        request.truncate(n);
        Dora {
            discover,
            request,
            tx: vec![0u8; 2048],
            ctx: ctx(),
            now: Now::read(),
            failed: 0,
        }
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
    let pool = pool_size();
    for c in 0..10_000 {
        d.exchange(&mut w, pool - 1 - c);
    }
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    for i in 0..count {
        // Distinct clients up to the pool size; beyond it clients come back (renewing DORA).
        let c = i % (pool - 10_000);
        if journal {
            // The journal thread drains on the other core; the bench does not outrun it (a real
            // worker would drop and count, which is not what is measured). Checked before every
            // exchange: an ACK needs room for up to two changes, and the producer answers from
            // its own lower bound, so the check is nearly free. Time spent waiting is counted.
            while !w.sink.room_for(2) {
                std::hint::spin_loop();
            }
        }
        d.exchange(&mut w, c);
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    // CPU time of this thread is what one core spends; wall time also counts time other
    // processes took the core (the lab machine is shared).
    println!(
        "engine DORA ({label}, pool {pool}{}): {:.0} exchanges/s on one core ({count} exchanges by distinct clients, {:.0} ns CPU per exchange; wall clock {:.0}/s, {} failed)",
        if THP.load(std::sync::atomic::Ordering::Relaxed) { ", huge pages" } else { "" },
        f64::from(count) / cpu_secs,
        cpu_secs * 1e9 / f64::from(count),
        f64::from(count) / secs,
        d.failed
    );
    drop(w);
    if let Some(j) = j {
        let _ = j.shutdown();
    }
}

fn dora(c: &mut Criterion) {
    let count = std::env::var("XD_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    THP.store(
        std::env::var("XD_BENCH_THP").as_deref() == Ok("1"),
        std::sync::atomic::Ordering::Relaxed,
    );
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
        let name = if journal {
            "journal_producer"
        } else {
            "null_sink"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                if journal {
                    while !w.sink.room_for(2) {
                        std::hint::spin_loop();
                    }
                }
                d.exchange(&mut w, client);
                client = (client + 1) % pool_size();
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
    let n = t.write(
        Kind::Discover,
        &Fields {
            xid: 1,
            mac: client_mac(1, 1),
            addr: 0,
            server_id: 0,
        },
        &mut frame,
    );
    frame.truncate(n);
    let mut g = c.benchmark_group("parts");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("frame_parse", |b| {
        b.iter(|| parse_udp_frame(std::hint::black_box(&frame)).map(|f| f.payload_end))
    });
    let f = parse_udp_frame(&frame).expect("template parses");
    let payload = &frame[f.payload_start..f.payload_end];
    let mut scratch = Box::<Dhcp4Scratch>::default();
    g.bench_function("dhcp_parse", |b| {
        b.iter(|| {
            Dhcp4View::parse(std::hint::black_box(payload), &mut scratch)
                .map(|v| v.xid())
                .ok()
        })
    });
    let mut buf = vec![0u8; 2048];
    g.bench_function("request_build", |b| {
        let mut x = 0u32;
        b.iter(|| {
            x = x.wrapping_add(1);
            t.write(
                Kind::Discover,
                &Fields {
                    xid: x,
                    mac: client_mac(1, x),
                    addr: 0,
                    server_id: 0,
                },
                &mut buf,
            )
        })
    });
    let (w, _) = worker(None);
    let store = w.shared.store.clone();
    let now = Now::read().unix_secs;
    let mut n = 0u32;
    g.bench_function("store_allocate", |b| {
        b.iter(|| {
            n = (n + 1) % pool_size();
            let hw = HwAddr::ethernet(client_mac(3, n));
            let key = ClientKey::v4(1, &hw, None, true);
            let make = |addr: Ipv4Addr| {
                Some(Lease4 {
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
                })
            };
            store
                .allocate4(&key, &[0], 0, &make, now)
                .map(|l| l.addr)
                .ok()
        })
    });
    g.finish();
}

criterion_group!(benches, dora, parts);
criterion_main!(benches);
