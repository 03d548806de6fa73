//! The whole DHCPv4 engine on arbitrary frames: parse, subnet selection, lease store, reply
//! building. Must never panic; any reply must be a well-formed frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{NullSink, Worker};
use xdhcp_dataplane::wire::frame::parse_udp_frame;

const CONFIG: &str = r#"{ "Dhcp4": { "interfaces-config": { "interfaces": ["fuzz0"] }, "authoritative": true,
  "option-data": [ { "name": "domain-name", "data": "example.org" } ],
  "client-classes": [ { "name": "pxe", "test": "substring(option[60].hex,0,9) == 'PXEClient'", "boot-file-name": "pxe.0" } ],
  "subnet4": [ { "id": 1, "subnet": "192.0.2.0/24", "interface": "fuzz0",
      "pools": [ { "pool": "192.0.2.10 - 192.0.2.40" } ],
      "reservations": [ { "hw-address": "01:02:03:04:05:06", "ip-address": "192.0.2.200" } ] },
    { "id": 2, "subnet": "10.0.0.0/8", "relay": { "ip-addresses": ["10.0.0.1"] }, "pools": [ { "pool": "10.1.0.0/16" } ] } ] } }"#;

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

fuzz_target!(|data: &[u8]| {
    let ctx = RxContext {
        ifindex: 1,
        queue: 0,
        if_mac: [2, 0, 0, 0, 0, 1],
        if_ipv4: [192, 0, 2, 1].into(),
    };
    let mut tx = vec![0u8; 2048];
    let mut w = worker().lock().unwrap();
    if let Some(n) = w.handle_frame(
        Now {
            unix_secs: 1_800_000_000,
            mono_ns: 0,
        },
        &ctx,
        data,
        &mut tx,
    ) {
        assert!(n <= tx.len());
        assert!(
            parse_udp_frame(&tx[..n]).is_ok(),
            "the engine built an unparseable frame"
        );
    }
});
