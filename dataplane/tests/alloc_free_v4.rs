//! DESIGN.md: nothing allocates on the hot path. Counts heap allocations made by this thread
//! while the DHCPv4 engine serves complete DORA exchanges of new clients, renewals and relayed
//! traffic through the real lease store and a journal-like sink.

use std::net::Ipv4Addr;
use std::sync::Arc;
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{NullSink, Worker};
use xdhcp_dataplane::wire::dhcp4::*;
use xdhcp_dataplane::wire::frame::*;

struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONFIG: &str = r#"{ "Dhcp4": { "interfaces-config": { "interfaces": ["test0"] }, "valid-lifetime": 3600,
  "option-data": [ { "name": "domain-name-servers", "data": "192.0.2.53, 192.0.2.54" }, { "name": "domain-name", "data": "example.org" } ],
  "subnet4": [ { "id": 1, "subnet": "10.0.0.0/8", "relay": { "ip-addresses": ["10.0.0.1"] },
                 "pools": [ { "pool": "10.1.0.0 - 10.1.255.255" } ],
                 "option-data": [ { "name": "routers", "data": "10.0.0.1" } ] } ] } }"#;

fn frame(payload: &[u8], src_ip: Ipv4Addr, src_port: u16) -> Vec<u8> {
    let mut f = vec![0u8; 1600];
    let off = payload_offset_v4(None);
    f[off..off + payload.len()].copy_from_slice(payload);
    let r = Udp4Reply {
        src_mac: [2, 0, 0, 0, 0, 0xee],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan_tci: None,
        src_ip,
        dst_ip: Ipv4Addr::new(10, 0, 0, 254),
        src_port,
        dst_port: 67,
    };
    let n = write_udp4_headers(&mut f, &r, payload.len());
    f.truncate(n);
    f
}

#[test]
fn dora_renew_and_relay_allocate_nothing() {
    let loaded = xdhcp_config::load_str(CONFIG, std::path::Path::new("t.json")).unwrap();
    let shared = Arc::new(
        xdhcp_dataplane::server::build_shared(&loaded.config, 1, vec![(7, "test0".into())])
            .unwrap(),
    );
    let mut w = Worker::new(shared, 0, Box::new(NullSink));
    let ctx = RxContext {
        ifindex: 7,
        queue: 0,
        if_mac: [2, 0, 0, 0, 0, 1],
        if_ipv4: Ipv4Addr::new(10, 0, 0, 254),
    };
    let now = Now {
        unix_secs: 1_800_000_000,
        mono_ns: 0,
    };
    let giaddr = Ipv4Addr::new(10, 0, 0, 1);
    let mut tx = vec![0u8; 2048];
    // Build every request up front: the test measures the engine, not the test's own buffers.
    let n_clients = 2000u32;
    let mut discovers = Vec::new();
    for i in 0..n_clients {
        let mac = [0x52, 0x54, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let d = RequestBuilder::new(MessageType::Discover, i, mac)
            .giaddr(giaddr)
            .option(OPT_PRL, &[1, 3, 6, 15])
            .build();
        discovers.push((mac, frame(&d, giaddr, 67)));
    }
    // The reply addresses are needed for the REQUESTs; the first pass (warm-up) learns nothing
    // about allocation, so run DISCOVERs once to learn the offers, then measure fresh clients.
    let mut offers = Vec::with_capacity(n_clients as usize);
    let mut requests = Vec::with_capacity(n_clients as usize);
    for (mac, d) in &discovers {
        let n = w.handle_frame(now, &ctx, d, &mut tx).expect("offer");
        let f = parse_udp_frame(&tx[..n]).unwrap();
        let y = Ipv4Addr::new(
            tx[f.payload_start + 16],
            tx[f.payload_start + 17],
            tx[f.payload_start + 18],
            tx[f.payload_start + 19],
        );
        offers.push(y);
        let r = RequestBuilder::new(MessageType::Request, 7, *mac)
            .giaddr(giaddr)
            .option(OPT_SERVER_ID, &ctx.if_ipv4.octets())
            .option(OPT_REQUESTED_IP, &y.octets())
            .build();
        requests.push(frame(&r, giaddr, 67));
    }
    // Measure: REQUEST → ACK for every client (each a new binding: offer → assigned), then a
    // renewal round and a rediscover round.
    let before = ALLOCS.with(|c| c.get());
    for r in &requests {
        assert!(w.handle_frame(now, &ctx, r, &mut tx).is_some(), "ack");
    }
    for r in &requests {
        assert!(
            w.handle_frame(now, &ctx, r, &mut tx).is_some(),
            "renewal ack"
        );
    }
    for (_, d) in &discovers {
        assert!(
            w.handle_frame(now, &ctx, d, &mut tx).is_some(),
            "offer to a bound client"
        );
    }
    let made = ALLOCS.with(|c| c.get()) - before;
    assert_eq!(
        made,
        0,
        "{made} heap allocations in {} exchanges",
        3 * n_clients
    );

    // New clients' DISCOVERs (allocation from the pool, new store entries within the reserved
    // capacity) allocate nothing either.
    let fresh: Vec<Vec<u8>> = (0..n_clients)
        .map(|i| {
            let mac = [0x52, 0x55, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            frame(
                &RequestBuilder::new(MessageType::Discover, i, mac)
                    .giaddr(giaddr)
                    .build(),
                giaddr,
                67,
            )
        })
        .collect();
    let before = ALLOCS.with(|c| c.get());
    for d in &fresh {
        assert!(w.handle_frame(now, &ctx, d, &mut tx).is_some());
    }
    let made = ALLOCS.with(|c| c.get()) - before;
    assert_eq!(
        made, 0,
        "{made} heap allocations in {n_clients} new-client DISCOVERs"
    );
    assert!(offers.iter().all(|a| a.octets()[0] == 10));
}
