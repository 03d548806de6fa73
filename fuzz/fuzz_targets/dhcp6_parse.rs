//! DHCPv6 parsing and the DHCPv6 engine on arbitrary bytes. The bytes are read as a bare DHCPv6
//! payload (relay chains, options, IAs) and, wrapped in a valid Ethernet/IPv6/UDP frame to port
//! 547, fed to the engine (relayed when they start with a Relay-forward). Must never panic; every
//! accessor of an accepted message stays in bounds; any reply is a well-formed frame whose payload
//! parses as a DHCPv6 reply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{NullSink, Worker};
use xdhcp_dataplane::wire::dhcp6::{Dhcp6View, ParsedReply, ALL_RELAYS_AND_SERVERS};
use xdhcp_dataplane::wire::frame::{
    parse_udp_frame, payload_offset_v6, write_udp6_headers, Udp6Reply,
};

const CONFIG: &str = r#"{ "Dhcp6": { "interfaces-config": { "interfaces": ["fuzz0"] },
  "option-data": [ { "name": "dns-servers", "data": "2001:db8::53" } ],
  "subnet6": [
    { "id": 1, "subnet": "2001:db8:1::/64", "interface": "fuzz0", "rapid-commit": true,
      "pools": [ { "pool": "2001:db8:1::10 - 2001:db8:1::40" } ],
      "pd-pools": [ { "prefix": "2001:db8:8000::", "prefix-len": 52, "delegated-len": 56,
                      "excluded-prefix": "2001:db8:8000:1::", "excluded-prefix-len": 64 } ],
      "reservations": [ { "duid": "00:03:00:01:01:02:03:04:05:06", "ip-addresses": ["2001:db8:1::99"] } ] },
    { "id": 2, "subnet": "2001:db8:2::/64", "interface-id": "port-2",
      "pools": [ { "pool": "2001:db8:2::/120" } ] },
    { "id": 3, "subnet": "2001:db8:3::/64", "relay": { "ip-addresses": ["2001:db8:3::1"] },
      "pools": [ { "pool": "2001:db8:3::/64" } ] } ] } }"#;

fn worker() -> &'static std::sync::Mutex<Worker> {
    static W: OnceLock<std::sync::Mutex<Worker>> = OnceLock::new();
    W.get_or_init(|| {
        let cfg =
            xdhcp_config::load_str(CONFIG, std::path::Path::new("fuzz.json")).expect("fuzz config");
        let shared = Arc::new(
            xdhcp_dataplane::server::build_shared(&cfg.config, 1, vec![(1, "fuzz0".into())])
                .unwrap(),
        );
        std::sync::Mutex::new(Worker::new(shared, 0, Box::new(NullSink)))
    })
}

fn touch(v: &Dhcp6View<'_>) {
    let _ = (
        v.msg_type(),
        v.xid(),
        v.client_id(),
        v.server_id(),
        v.rapid_commit(),
        v.elapsed_time(),
    );
    let _ = v.oro().count();
    for ia in v.ias() {
        let _ = (ia.iaid, ia.t1, ia.t2);
        for a in ia.addrs() {
            let _ = a.options.iter().count();
        }
        for p in ia.prefixes() {
            let _ = p.options.iter().count();
        }
    }
    for i in 0..v.relay_count() {
        let r = v.relay(i).expect("relay in range");
        let _ = (r.hop_count, r.link_addr, r.peer_addr, r.interface_id());
    }
    let _ = (
        v.interface_id(),
        v.client_linklayer_addr(),
        v.innermost_relay(),
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Dhcp6View::parse(data) {
        touch(&v);
    }
    if data.len() > 1400 {
        return;
    }
    let relayed = data.first() == Some(&12);
    let mut frame = vec![0u8; 1600];
    let off = payload_offset_v6(None);
    frame[off..off + data.len()].copy_from_slice(data);
    let r = Udp6Reply {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan_tci: None,
        src_ip: if relayed {
            "2001:db8:3::1".parse().unwrap()
        } else {
            "fe80::2".parse().unwrap()
        },
        dst_ip: if relayed {
            "2001:db8:1::1".parse().unwrap()
        } else {
            ALL_RELAYS_AND_SERVERS
        },
        src_port: if relayed { 547 } else { 546 },
        dst_port: 547,
        hop_limit: 1,
    };
    let n = write_udp6_headers(&mut frame, &r, data.len());
    frame.truncate(n);
    let ctx = RxContext {
        ifindex: 1,
        queue: 0,
        if_mac: [2, 0, 0, 0, 0, 1],
        if_ipv4: [0, 0, 0, 0].into(),
    };
    let mut tx = vec![0u8; 2048];
    let mut w = worker().lock().unwrap();
    if let Some(n) = w.handle_frame(
        Now {
            unix_secs: 1_800_000_000,
            mono_ns: 0,
        },
        &ctx,
        &frame,
        &mut tx,
    ) {
        assert!(n <= tx.len());
        let f = parse_udp_frame(&tx[..n]).expect("the engine built an unparseable frame");
        ParsedReply::parse(&tx[f.payload_start..f.payload_end])
            .expect("the engine built an unparseable DHCPv6 reply");
    }
});
