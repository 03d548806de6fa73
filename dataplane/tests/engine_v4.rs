//! DHCPv4 engine scenarios: every message type and RFC 2131 path, asserting on reply fields.
//! The engine is driven exactly as the backends drive it: whole Ethernet frames in and out.

use std::net::Ipv4Addr;
use std::sync::Arc;
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{Shared, VecSink, Worker};
use xdhcp_dataplane::lease::{LeaseChange, LeaseState};
use xdhcp_dataplane::wire::dhcp4::*;
use xdhcp_dataplane::wire::frame::*;
use xdhcp_dataplane::wire::DropReason;

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];

fn config(extra_subnets: &str, globals: &str) -> String {
    format!(
        r#"{{ "Dhcp4": {{
        "interfaces-config": {{ "interfaces": ["test0"] }},
        "valid-lifetime": 4000, "renew-timer": 1000, "rebind-timer": 2000,
        "authoritative": true,
        "option-data": [ {{ "name": "domain-name-servers", "data": "192.0.2.53" }},
                         {{ "name": "ntp-servers", "data": "192.0.2.123" }},
                         {{ "name": "time-offset", "data": "3600", "always-send": true }} ],
        {globals}
        "subnet4": [
          {{ "id": 1, "subnet": "192.0.2.0/24", "interface": "test0",
             "pools": [ {{ "pool": "192.0.2.10 - 192.0.2.19",
                           "option-data": [ {{ "name": "routers", "data": "192.0.2.254" }} ] }} ],
             "option-data": [ {{ "name": "routers", "data": "192.0.2.1" }}, {{ "name": "domain-name", "data": "example.org" }} ],
             "reservations": [
               {{ "hw-address": "aa:bb:cc:00:00:01", "ip-address": "192.0.2.100", "hostname": "reserved-host",
                  "option-data": [ {{ "name": "domain-name-servers", "data": "192.0.2.99" }} ] }},
               {{ "client-id": "01:aa:bb:cc:00:00:02", "ip-address": "192.0.2.101" }},
               {{ "hw-address": "aa:bb:cc:00:00:03", "ip-address": "192.0.2.12" }} ] }},
          {{ "id": 2, "subnet": "10.20.0.0/16", "relay": {{ "ip-addresses": ["10.20.0.1"] }},
             "pools": [ {{ "pool": "10.20.1.0 - 10.20.1.255" }} ] }}
          {extra_subnets}
        ] }} }}"#
    )
}

struct Harness {
    worker: Worker,
    sink: VecSink,
    shared: Arc<Shared>,
    now: u64,
    /// Give the worker each frame as a prefetch hint first, as the AF_XDP backend does.
    prefetch: bool,
}

impl Harness {
    fn new(json: &str) -> Harness {
        let loaded = xdhcp_config::load_str(json, std::path::Path::new("test.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let shared = Arc::new(
            xdhcp_dataplane::server::build_shared(&loaded.config, 1, vec![(7, "test0".into())])
                .unwrap(),
        );
        let sink = VecSink::default();
        let worker = Worker::new(shared.clone(), 0, Box::new(sink.clone()));
        Harness {
            worker,
            sink,
            shared,
            now: 1_800_000_000,
            prefetch: false,
        }
    }

    fn ctx() -> RxContext {
        RxContext {
            ifindex: 7,
            queue: 0,
            if_mac: SERVER_MAC,
            if_ipv4: SERVER_IP,
        }
    }

    /// Send a DHCP payload from a client (or a relay when `giaddr` is set) and return the reply frame.
    fn send(
        &mut self,
        payload: &[u8],
        src_mac: [u8; 6],
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        src_port: u16,
    ) -> Option<Vec<u8>> {
        let mut frame = vec![0u8; 1600];
        let off = payload_offset_v4(None);
        frame[off..off + payload.len()].copy_from_slice(payload);
        let r = Udp4Reply {
            src_mac,
            dst_mac: BROADCAST_MAC,
            vlan_tci: None,
            src_ip,
            dst_ip,
            src_port,
            dst_port: 67,
        };
        let n = write_udp4_headers(&mut frame, &r, payload.len());
        frame.truncate(n);
        let mut tx = vec![0u8; 2048];
        let now = Now {
            unix_secs: self.now,
            mono_ns: self.now * 1_000_000_000,
        };
        if self.prefetch {
            self.worker.prefetch(&Self::ctx(), &frame);
        }
        self.worker
            .handle_frame(now, &Self::ctx(), &frame, &mut tx)
            .map(|len| {
                tx.truncate(len);
                tx
            })
    }

    fn client(&mut self, payload: &[u8], mac: [u8; 6]) -> Option<Vec<u8>> {
        self.send(payload, mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68)
    }

    fn journal(&self) -> Vec<LeaseChange> {
        self.sink.0.lock().clone()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.shared.stats.drops(r)
    }
}

/// A parsed reply: frame addressing plus the DHCP message.
struct Reply {
    frame: UdpFrame,
    dhcp: Vec<u8>,
}

impl Reply {
    fn parse(frame: &[u8]) -> Reply {
        let f = parse_udp_frame(frame).expect("reply frame parses");
        Reply {
            frame: f,
            dhcp: frame[f.payload_start..f.payload_end].to_vec(),
        }
    }
    fn with<T>(&self, f: impl FnOnce(&Dhcp4View<'_>) -> T) -> T {
        let mut s = Box::<Dhcp4Scratch>::default();
        let v = Dhcp4View::parse(&self.dhcp, &mut s).expect("reply DHCP parses");
        f(&v)
    }
    fn msg_type(&self) -> MessageType {
        self.with(|v| v.message_type().unwrap())
    }
    fn yiaddr(&self) -> Ipv4Addr {
        self.with(|v| v.yiaddr())
    }
    fn opt(&self, code: u8) -> Option<Vec<u8>> {
        self.with(|v| v.option(code).map(|o| o.to_vec()))
    }
    fn u32opt(&self, code: u8) -> Option<u32> {
        self.opt(code)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn dst(&self) -> ([u8; 6], Ipv4Addr, u16) {
        let L3::V4 { dst, .. } = self.frame.l3 else {
            panic!("not v4")
        };
        (self.frame.dst_mac, dst, self.frame.dst_port)
    }
    fn src(&self) -> ([u8; 6], Ipv4Addr, u16) {
        let L3::V4 { src, .. } = self.frame.l3 else {
            panic!("not v4")
        };
        (self.frame.src_mac, src, self.frame.src_port)
    }
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, n]
}

fn discover(m: [u8; 6]) -> RequestBuilder {
    RequestBuilder::new(MessageType::Discover, 0x1000 + u32::from(m[5]), m)
        .option(OPT_PRL, &[1, 3, 6, 15, 42])
}

fn select(m: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    RequestBuilder::new(MessageType::Request, 0x2000, m)
        .option(OPT_SERVER_ID, &SERVER_IP.octets())
        .option(OPT_REQUESTED_IP, &addr.octets())
        .option(OPT_PRL, &[1, 3, 6])
        .build()
}

/// DISCOVER then REQUEST; returns the ACK.
fn dora(h: &mut Harness, m: [u8; 6]) -> Reply {
    let offer = Reply::parse(&h.client(&discover(m).build(), m).expect("offer"));
    assert_eq!(offer.msg_type(), MessageType::Offer);
    let ack = Reply::parse(&h.client(&select(m, offer.yiaddr()), m).expect("ack"));
    assert_eq!(ack.msg_type(), MessageType::Ack);
    ack
}

#[test]
fn discover_gets_an_offer_addressed_per_rfc2131() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(1);
    let offer = Reply::parse(&h.client(&discover(m).build(), m).unwrap());
    assert_eq!(offer.msg_type(), MessageType::Offer);
    let y = offer.yiaddr();
    assert!(
        (Ipv4Addr::new(192, 0, 2, 10)..=Ipv4Addr::new(192, 0, 2, 19)).contains(&y),
        "{y}"
    );
    assert_ne!(
        y,
        Ipv4Addr::new(192, 0, 2, 12),
        "address reserved for another client must not be offered"
    );
    // Unicast to yiaddr at the client's MAC (no broadcast bit, no ciaddr, no giaddr).
    assert_eq!(offer.dst(), (m, y, 68));
    assert_eq!(offer.src(), (SERVER_MAC, SERVER_IP, 67));
    assert_eq!(offer.opt(OPT_SERVER_ID), Some(SERVER_IP.octets().to_vec()));
    assert_eq!(offer.u32opt(OPT_LEASE_TIME), Some(4000));
    assert_eq!(offer.u32opt(OPT_T1), Some(1000));
    assert_eq!(offer.u32opt(OPT_T2), Some(2000));
    assert_eq!(offer.opt(OPT_SUBNET_MASK), Some(vec![255, 255, 255, 0]));
    // Pool-level routers override the subnet's; global DNS; subnet domain name.
    assert_eq!(offer.opt(OPT_ROUTERS), Some(vec![192, 0, 2, 254]));
    assert_eq!(offer.opt(OPT_DNS), Some(vec![192, 0, 2, 53]));
    assert_eq!(offer.opt(OPT_DOMAIN_NAME), Some(b"example.org".to_vec()));
    // Requested (42, ntp) and always-send (2, time offset) options are present.
    assert_eq!(offer.opt(42), Some(vec![192, 0, 2, 123]));
    assert_eq!(offer.u32opt(2), Some(3600));
    assert_eq!(offer.with(|v| v.xid()), (0x1001u32).to_be_bytes());
    // Offers are not journaled.
    assert!(h.journal().is_empty());
    // Kea's statistics count what was received and sent.
    let stats: std::collections::HashMap<String, u64> =
        h.shared.stats.snapshot().into_iter().collect();
    assert_eq!(stats["pkt4-discover-received"], 1);
    assert_eq!(stats["pkt4-received"], 1);
    assert_eq!(stats["pkt4-offer-sent"], 1);
}

#[test]
fn options_not_requested_are_not_sent() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(2);
    let d = RequestBuilder::new(MessageType::Discover, 1, m)
        .option(OPT_PRL, &[1])
        .build();
    let offer = Reply::parse(&h.client(&d, m).unwrap());
    assert_eq!(offer.opt(42), None, "ntp-servers was not requested");
    assert!(offer.opt(2).is_some(), "always-send");
    assert!(
        offer.opt(OPT_ROUTERS).is_some(),
        "routers is always sent, as Kea does"
    );
}

#[test]
fn broadcast_flag_gives_broadcast_reply() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(3);
    let offer = Reply::parse(
        &h.client(&discover(m).flags(FLAG_BROADCAST).build(), m)
            .unwrap(),
    );
    assert_eq!(offer.dst(), (BROADCAST_MAC, Ipv4Addr::BROADCAST, 68));
}

#[test]
fn selecting_request_is_acked_and_journaled() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(4);
    let ack = dora(&mut h, m);
    let y = ack.yiaddr();
    assert_eq!(ack.dst(), (m, y, 68));
    let j = h.journal();
    assert_eq!(j.len(), 1);
    match &j[0] {
        LeaseChange::Put4(l) => {
            assert_eq!(
                (l.addr, l.state, l.valid_lft, l.subnet_id),
                (y, LeaseState::Assigned, 4000, 1)
            );
            assert_eq!(l.hwaddr.as_slice(), &m);
            assert_eq!(l.cltt, h.now);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same client asking again gets the same address.
    let offer = Reply::parse(&h.client(&discover(m).build(), m).unwrap());
    assert_eq!(offer.yiaddr(), y);
}

#[test]
fn request_for_another_server_frees_the_offer() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(5);
    let offer = Reply::parse(&h.client(&discover(m).build(), m).unwrap());
    let other = RequestBuilder::new(MessageType::Request, 9, m)
        .option(OPT_SERVER_ID, &[192, 0, 2, 200])
        .option(OPT_REQUESTED_IP, &offer.yiaddr().octets())
        .build();
    assert!(h.client(&other, m).is_none());
    assert_eq!(h.drops(DropReason::NotOurServerId), 1);
    assert!(
        h.shared.store.get_by_addr4(offer.yiaddr()).is_none(),
        "offered address returned to the pool"
    );
}

#[test]
fn selecting_request_for_an_address_held_by_another_is_nakked() {
    let mut h = Harness::new(&config("", ""));
    let a = dora(&mut h, mac(6)).yiaddr();
    let nak = Reply::parse(&h.client(&select(mac(7), a), mac(7)).unwrap());
    assert_eq!(nak.msg_type(), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        nak.dst(),
        (BROADCAST_MAC, Ipv4Addr::BROADCAST, 68),
        "a NAK not relayed is broadcast"
    );
    assert_eq!(nak.opt(OPT_SERVER_ID), Some(SERVER_IP.octets().to_vec()));
    assert_eq!(nak.opt(OPT_LEASE_TIME), None);
}

#[test]
fn init_reboot_paths() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(8);
    let a = dora(&mut h, m).yiaddr();
    // INIT-REBOOT with the right address: ACK.
    let reboot = |addr: Ipv4Addr| {
        RequestBuilder::new(MessageType::Request, 3, m)
            .option(OPT_REQUESTED_IP, &addr.octets())
            .build()
    };
    let ack = Reply::parse(&h.client(&reboot(a), m).unwrap());
    assert_eq!((ack.msg_type(), ack.yiaddr()), (MessageType::Ack, a));
    // Wrong network: NAK.
    let nak = Reply::parse(&h.client(&reboot(Ipv4Addr::new(172, 16, 0, 5)), m).unwrap());
    assert_eq!(nak.msg_type(), MessageType::Nak);
    // Another address in the right subnet while it holds `a`: NAK.
    let other = if a == Ipv4Addr::new(192, 0, 2, 10) {
        Ipv4Addr::new(192, 0, 2, 11)
    } else {
        Ipv4Addr::new(192, 0, 2, 10)
    };
    let nak = Reply::parse(&h.client(&reboot(other), m).unwrap());
    assert_eq!(nak.msg_type(), MessageType::Nak);
}

#[test]
fn init_reboot_of_unknown_client_is_silent_when_not_authoritative() {
    let cfg = config("", "").replace("\"authoritative\": true", "\"authoritative\": false");
    let mut h = Harness::new(&cfg);
    let a = dora(&mut h, mac(9)).yiaddr();
    let m = mac(10);
    let r = RequestBuilder::new(MessageType::Request, 3, m)
        .option(OPT_REQUESTED_IP, &a.octets())
        .build();
    assert!(
        h.client(&r, m).is_none(),
        "unknown client asking for someone else's address: silence"
    );
    assert_eq!(h.drops(DropReason::NoLeaseForClient), 1);
}

#[test]
fn unknown_client_renewing_a_free_address_gets_it() {
    // After a failover or a lost journal tail the server renews what a client presents, if free.
    let mut h = Harness::new(&config("", ""));
    let m = mac(11);
    let a = Ipv4Addr::new(192, 0, 2, 15);
    let renew = RequestBuilder::new(MessageType::Request, 4, m)
        .ciaddr(a)
        .build();
    let ack = Reply::parse(&h.send(&renew, m, a, SERVER_IP, 68).unwrap());
    assert_eq!((ack.msg_type(), ack.yiaddr()), (MessageType::Ack, a));
    assert_eq!(
        h.shared.store.get_by_addr4(a).unwrap().hwaddr.as_slice(),
        &m
    );
}

#[test]
fn renewing_and_rebinding_unicast_to_ciaddr() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(12);
    let a = dora(&mut h, m).yiaddr();
    h.now += 1000;
    let renew = RequestBuilder::new(MessageType::Request, 5, m)
        .ciaddr(a)
        .build();
    let ack = Reply::parse(&h.send(&renew, m, a, SERVER_IP, 68).unwrap());
    assert_eq!(ack.msg_type(), MessageType::Ack);
    assert_eq!(ack.yiaddr(), a);
    assert_eq!(ack.dst(), (m, a, 68));
    // REBINDING: broadcast from the client, still ciaddr set: unicast reply to ciaddr.
    h.now += 1000;
    let ack = Reply::parse(&h.send(&renew, m, a, Ipv4Addr::BROADCAST, 68).unwrap());
    assert_eq!(ack.dst(), (m, a, 68));
    let cltts: Vec<u64> = h
        .journal()
        .iter()
        .filter_map(|c| {
            if let LeaseChange::Put4(l) = c {
                Some(l.cltt)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        cltts,
        vec![h.now - 2000, h.now - 1000, h.now],
        "every ACK is journaled with a new cltt"
    );
    // Renewing an address it does not hold: NAK.
    let other = RequestBuilder::new(MessageType::Request, 6, mac(13))
        .ciaddr(a)
        .build();
    let nak = Reply::parse(&h.send(&other, mac(13), a, SERVER_IP, 68).unwrap());
    assert_eq!(nak.msg_type(), MessageType::Nak);
}

#[test]
fn release_frees_the_address_but_keeps_affinity() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(14);
    let a = dora(&mut h, m).yiaddr();
    let rel = RequestBuilder::new(MessageType::Release, 7, m)
        .ciaddr(a)
        .option(OPT_SERVER_ID, &SERVER_IP.octets())
        .build();
    assert!(
        h.send(&rel, m, a, SERVER_IP, 68).is_none(),
        "RELEASE has no reply"
    );
    let l = h.shared.store.get_by_addr4(a).unwrap();
    assert_eq!(l.state, LeaseState::ExpiredReclaimed);
    assert!(
        matches!(h.journal().last(), Some(LeaseChange::Put4(l)) if l.state == LeaseState::ExpiredReclaimed)
    );
    // The client comes back and gets the same address.
    assert_eq!(dora(&mut h, m).yiaddr(), a);
    // A RELEASE from another client for that address changes nothing.
    let forged = RequestBuilder::new(MessageType::Release, 8, mac(15))
        .ciaddr(a)
        .build();
    assert!(h.send(&forged, mac(15), a, SERVER_IP, 68).is_none());
    assert_eq!(
        h.shared.store.get_by_addr4(a).unwrap().state,
        LeaseState::Assigned
    );
}

#[test]
fn decline_quarantines_the_address() {
    let mut h = Harness::new(&config("", "\"decline-probation-period\": 600,"));
    let m = mac(16);
    let a = dora(&mut h, m).yiaddr();
    let dec = RequestBuilder::new(MessageType::Decline, 9, m)
        .option(OPT_REQUESTED_IP, &a.octets())
        .option(OPT_SERVER_ID, &SERVER_IP.octets())
        .build();
    assert!(h.client(&dec, m).is_none());
    let l = h.shared.store.get_by_addr4(a).unwrap();
    assert_eq!((l.state, l.valid_lft), (LeaseState::Declined, 600));
    assert!(l.hwaddr.is_empty());
    let again = dora(&mut h, m).yiaddr();
    assert_ne!(
        again, a,
        "a declined address is not handed out during probation"
    );
    // After probation the reclaimer frees it.
    let mut cursor = 0;
    let mut changes = Vec::new();
    h.shared
        .store
        .reclaim4(h.now + 601, 100, &mut cursor, &mut |c| changes.push(c));
    assert!(changes.contains(&LeaseChange::Del4(a)));
    assert!(h.shared.store.get_by_addr4(a).is_none());
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(17);
    let ci = Ipv4Addr::new(192, 0, 2, 77);
    let inf = RequestBuilder::new(MessageType::Inform, 10, m)
        .ciaddr(ci)
        .option(OPT_PRL, &[3, 6])
        .build();
    let ack = Reply::parse(&h.send(&inf, m, ci, SERVER_IP, 68).unwrap());
    assert_eq!(ack.msg_type(), MessageType::Ack);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.with(|v| v.ciaddr()), ci);
    assert_eq!(ack.opt(OPT_LEASE_TIME), None);
    assert_eq!(
        ack.opt(OPT_ROUTERS),
        Some(vec![192, 0, 2, 1]),
        "subnet scope, not the pool's"
    );
    assert_eq!(ack.dst(), (m, ci, 68));
    assert!(h.journal().is_empty());
}

#[test]
fn relayed_traffic_selects_by_relay_and_echoes_option_82() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(18);
    let giaddr = Ipv4Addr::new(10, 20, 0, 1);
    let o82 = [1u8, 3, b'p', b'o', b'1', 2, 2, 0xab, 0xcd];
    let d = discover(m)
        .giaddr(giaddr)
        .option(OPT_RELAY_AGENT, &o82)
        .build();
    let offer = Reply::parse(&h.send(&d, RELAY_MAC, giaddr, SERVER_IP, 67).unwrap());
    assert!(
        (Ipv4Addr::new(10, 20, 1, 0)..=Ipv4Addr::new(10, 20, 1, 255)).contains(&offer.yiaddr())
    );
    assert_eq!(
        offer.dst(),
        (RELAY_MAC, giaddr, 67),
        "relayed replies go to giaddr:67"
    );
    assert_eq!(offer.with(|v| v.giaddr()), giaddr);
    assert_eq!(offer.opt(OPT_RELAY_AGENT), Some(o82.to_vec()));
    // Option 82 is the last option before END (RFC 3046).
    let body = &offer.dhcp[FIXED_LEN + 4..];
    let mut i = 0;
    let mut last = 0;
    while i < body.len() && body[i] != OPT_END {
        if body[i] == 0 {
            i += 1;
            continue;
        }
        last = body[i];
        i += 2 + usize::from(body[i + 1]);
    }
    assert_eq!(last, OPT_RELAY_AGENT);
    // A NAK through a relay gets the broadcast bit and goes to the relay.
    let r = RequestBuilder::new(MessageType::Request, 11, m)
        .giaddr(giaddr)
        .option(OPT_REQUESTED_IP, &[10, 99, 0, 1])
        .build();
    let nak = Reply::parse(&h.send(&r, RELAY_MAC, giaddr, SERVER_IP, 67).unwrap());
    assert_eq!(nak.msg_type(), MessageType::Nak);
    assert_eq!(nak.dst(), (RELAY_MAC, giaddr, 67));
    assert_ne!(nak.with(|v| v.flags()) & FLAG_BROADCAST, 0);
}

#[test]
fn relay_from_unknown_network_is_dropped_and_counted() {
    let mut h = Harness::new(&config("", ""));
    let giaddr = Ipv4Addr::new(203, 0, 113, 1);
    let d = discover(mac(19)).giaddr(giaddr).build();
    assert!(h.send(&d, RELAY_MAC, giaddr, SERVER_IP, 67).is_none());
    assert_eq!(h.drops(DropReason::NoSubnet), 1);
}

#[test]
fn reservations_by_hw_address_and_client_id() {
    let mut h = Harness::new(&config("", ""));
    let hw = [0xaa, 0xbb, 0xcc, 0, 0, 1];
    let offer = Reply::parse(
        &h.client(&discover(hw).option(OPT_HOSTNAME, b"x").build(), hw)
            .unwrap(),
    );
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 100));
    assert_eq!(
        offer.opt(OPT_DNS),
        Some(vec![192, 0, 2, 99]),
        "reservation options win"
    );
    assert_eq!(offer.opt(OPT_HOSTNAME), Some(b"reserved-host".to_vec()));
    let m = mac(20);
    let d = discover(m)
        .option(OPT_CLIENT_ID, &[1, 0xaa, 0xbb, 0xcc, 0, 0, 2])
        .build();
    let offer = Reply::parse(&h.client(&d, m).unwrap());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 0, 2, 101));
    // The in-pool reservation 192.0.2.12 goes to its owner only.
    let owner = [0xaa, 0xbb, 0xcc, 0, 0, 3];
    assert_eq!(
        Reply::parse(&h.client(&discover(owner).build(), owner).unwrap()).yiaddr(),
        Ipv4Addr::new(192, 0, 2, 12)
    );
    let thief = mac(21);
    let r = select(thief, Ipv4Addr::new(192, 0, 2, 12));
    assert_eq!(
        Reply::parse(&h.client(&r, thief).unwrap()).msg_type(),
        MessageType::Nak
    );
}

#[test]
fn client_id_keys_the_lease_when_match_client_id() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(22);
    let cid = [1u8, 9, 9, 9, 9, 9, 9];
    let d = |mm: [u8; 6]| discover(mm).option(OPT_CLIENT_ID, &cid).build();
    let offer = Reply::parse(&h.client(&d(m), m).unwrap());
    let a = offer.yiaddr();
    let req = RequestBuilder::new(MessageType::Request, 12, m)
        .option(OPT_SERVER_ID, &SERVER_IP.octets())
        .option(OPT_REQUESTED_IP, &a.octets())
        .option(OPT_CLIENT_ID, &cid)
        .build();
    assert_eq!(
        Reply::parse(&h.client(&req, m).unwrap()).msg_type(),
        MessageType::Ack
    );
    // Same client-id from a new NIC: same lease.
    let m2 = mac(23);
    assert_eq!(Reply::parse(&h.client(&d(m2), m2).unwrap()).yiaddr(), a);
}

#[test]
fn shared_network_spills_into_the_next_subnet_and_exhaustion_is_counted() {
    let json = r#"{ "Dhcp4": { "interfaces-config": { "interfaces": ["test0"] }, "valid-lifetime": 100,
        "shared-networks": [ { "name": "net", "interface": "test0", "subnet4": [
            { "id": 1, "subnet": "192.0.2.0/24", "pools": [ { "pool": "192.0.2.10 - 192.0.2.11" } ] },
            { "id": 2, "subnet": "198.51.100.0/24", "pools": [ { "pool": "198.51.100.10 - 198.51.100.10" } ] } ] } ] } }"#;
    let mut h = Harness::new(json);
    let mut got = Vec::new();
    for i in 0..3 {
        got.push(dora(&mut h, mac(30 + i)).yiaddr());
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(192, 0, 2, 11),
            Ipv4Addr::new(198, 51, 100, 10)
        ]
    );
    let m = mac(40);
    assert!(h.client(&discover(m).build(), m).is_none());
    assert_eq!(h.drops(DropReason::NoAddressAvailable), 1);
}

#[test]
fn malformed_frames_are_dropped_and_counted_never_panic() {
    let mut h = Harness::new(&config("", ""));
    let good = discover(mac(50)).build();
    let m = mac(50);
    // Truncations of the DHCP payload inside a well-formed UDP frame.
    for n in [0usize, 10, 235, 239, 241] {
        assert!(h.client(&good[..n], m).is_none());
    }
    assert!(h.drops(DropReason::DhcpTooShort) >= 3);
    // Bad option length.
    let mut bad = good.clone();
    let l = bad.len();
    bad[l - 7] = 250; // PRL length runs past the end
    let before = h.drops(DropReason::BadOptions);
    assert!(h.client(&bad, m).is_none());
    assert_eq!(h.drops(DropReason::BadOptions), before + 1);
    // A BOOTREPLY sent to the server.
    let mut reply = good.clone();
    reply[0] = 2;
    assert!(h.client(&reply, m).is_none());
    assert_eq!(h.drops(DropReason::NotBootRequest), 1);
    // No message type.
    let mut nomt = good.clone();
    nomt[FIXED_LEN + 4] = 0; // PAD instead of option 53's code
    nomt[FIXED_LEN + 5] = 0;
    nomt[FIXED_LEN + 6] = 0;
    assert!(h.client(&nomt, m).is_none());
    assert_eq!(h.drops(DropReason::MissingMessageType), 1);
    // Raw garbage and oversized frames through the frame parser.
    let mut tx = vec![0u8; 2048];
    let now = Now {
        unix_secs: h.now,
        mono_ns: 0,
    };
    for n in [0usize, 1, 13, 14, 33, 41] {
        assert!(h
            .worker
            .handle_frame(now, &Harness::ctx(), &vec![0xffu8; n], &mut tx)
            .is_none());
    }
    assert!(h
        .worker
        .handle_frame(now, &Harness::ctx(), &vec![0u8; 9000], &mut tx)
        .is_none());
    assert_eq!(h.drops(DropReason::OversizedFrame), 1);
    // Still serving.
    assert_eq!(dora(&mut h, mac(51)).msg_type(), MessageType::Ack);
}

#[test]
fn reply_fields_echo_the_request() {
    let mut h = Harness::new(&config("", ""));
    let m = mac(60);
    let offer = Reply::parse(&h.client(&discover(m).build(), m).unwrap());
    offer.with(|v| {
        assert_eq!(v.op(), 2);
        assert_eq!((v.htype(), v.hlen()), (1, 6));
        assert_eq!(v.chaddr(), &m);
        assert_eq!(v.ciaddr(), Ipv4Addr::UNSPECIFIED);
    });
    assert!(offer.dhcp.len() >= MIN_REPLY_LEN);
}

/// A relayed shared network whose first subnet admits only the "phones" class and whose second
/// subnet has a pool for "printers" only; class options rank below subnet options but above
/// global ones (Kea's order).
const CLASSES4: &str = r#"
    "client-classes": [
      { "name": "phones", "test": "substring(option[60].hex,0,5) == 'phone'", "valid-lifetime": 600,
        "option-data": [ { "name": "domain-name-servers", "data": "10.30.0.53" },
                         { "name": "ntp-servers", "data": "10.30.0.123" } ] },
      { "name": "printers", "test": "option[60].text == 'printer'" },
      { "name": "kiosks", "test": "option[60].text == 'kiosk'" } ],
    "shared-networks": [ { "name": "floor", "relay": { "ip-addresses": ["10.30.0.1"] }, "subnet4": [
      { "id": 30, "subnet": "10.30.0.0/24", "client-class": "phones",
        "pools": [ { "pool": "10.30.0.10 - 10.30.0.20" } ],
        "option-data": [ { "name": "domain-name-servers", "data": "10.30.0.1" } ] },
      { "id": 31, "subnet": "10.31.0.0/24", "client-class": "phones-or-others",
        "pools": [ { "pool": "10.31.0.10 - 10.31.0.20", "client-class": "printers" },
                   { "pool": "10.31.0.100 - 10.31.0.110" } ] } ] } ],
"#;

#[test]
fn client_classes_steer_subnets_and_pools_and_rank_options_as_kea_does() {
    // Subnet 31 admits members of "phones-or-others", a class whose test matches what is not a
    // phone and not a kiosk: kiosks have no subnet at all on this link.
    let classes = CLASSES4.replace(
        r#"{ "name": "kiosks", "test": "option[60].text == 'kiosk'" } ],"#,
        r#"{ "name": "kiosks", "test": "option[60].text == 'kiosk'" },
           { "name": "phones-or-others", "test": "not member('phones') and not member('kiosks')" } ],"#,
    );
    let mut h = Harness::new(&config("", &classes));
    let giaddr = Ipv4Addr::new(10, 30, 0, 1);
    let offer = |h: &mut Harness, n: u8, vendor: &[u8]| {
        let d = discover(mac(n)).giaddr(giaddr).option(60, vendor).build();
        h.send(&d, RELAY_MAC, giaddr, SERVER_IP, 67)
            .map(|f| Reply::parse(&f))
    };
    let in_range = |a: Ipv4Addr, lo: [u8; 4], hi: [u8; 4]| {
        (Ipv4Addr::from(lo)..=Ipv4Addr::from(hi)).contains(&a)
    };

    let phone = offer(&mut h, 40, b"phone-model-7").expect("phone offered");
    assert!(
        in_range(phone.yiaddr(), [10, 30, 0, 10], [10, 30, 0, 20]),
        "{}",
        phone.yiaddr()
    );
    assert_eq!(
        phone.opt(6),
        Some(vec![10, 30, 0, 1]),
        "subnet options beat class options"
    );
    assert_eq!(
        phone.opt(42),
        Some(vec![10, 30, 0, 123]),
        "class options beat global ones"
    );
    assert_eq!(
        phone.u32opt(OPT_LEASE_TIME),
        Some(600),
        "the class's valid-lifetime"
    );

    let printer = offer(&mut h, 41, b"printer").expect("printer offered");
    assert!(
        in_range(printer.yiaddr(), [10, 31, 0, 10], [10, 31, 0, 20]),
        "{}",
        printer.yiaddr()
    );
    assert_eq!(
        printer.opt(6),
        Some(vec![192, 0, 2, 53]),
        "global options for non-members"
    );
    assert_eq!(printer.opt(42), Some(vec![192, 0, 2, 123]));
    assert_eq!(printer.u32opt(OPT_LEASE_TIME), Some(4000));

    let laptop = offer(&mut h, 42, b"laptop").expect("laptop offered");
    assert!(
        in_range(laptop.yiaddr(), [10, 31, 0, 100], [10, 31, 0, 110]),
        "{}",
        laptop.yiaddr()
    );

    assert!(
        offer(&mut h, 43, b"kiosk").is_none(),
        "no subnet of the link admits a kiosk"
    );
    assert_eq!(h.drops(DropReason::NoSubnet), 1);
}

/// The backend's prefetch hint changes nothing: the same conversation (new clients, a renewal,
/// a relayed client, garbage) gives the same replies, journal and statistics with and without it.
#[test]
fn prefetch_hints_change_nothing() {
    let run = |prefetch: bool| {
        let mut h = Harness::new(&config("", ""));
        h.prefetch = prefetch;
        let mut replies = Vec::new();
        for n in 1..=4 {
            replies.push(dora(&mut h, mac(n)).dhcp);
        }
        let renew = dora(&mut h, mac(2));
        replies.push(renew.dhcp);
        let relayed = RequestBuilder::new(MessageType::Discover, 7, mac(9))
            .giaddr(Ipv4Addr::new(10, 20, 0, 1))
            .build();
        replies.push(
            h.send(
                &relayed,
                RELAY_MAC,
                Ipv4Addr::new(10, 20, 0, 1),
                SERVER_IP,
                67,
            )
            .unwrap_or_default(),
        );
        replies.push(h.client(&[1, 2, 3], mac(5)).unwrap_or_default());
        let mut stats = h.shared.stats.snapshot();
        stats.sort();
        (replies, h.journal(), stats)
    };
    let (plain, plain_journal, plain_stats) = run(false);
    let (hinted, hinted_journal, hinted_stats) = run(true);
    assert_eq!(plain, hinted);
    assert_eq!(plain_journal, hinted_journal);
    assert_eq!(plain_stats, hinted_stats);
    assert!(
        plain_stats
            .iter()
            .any(|(k, v)| k == "pkt4-ack-sent" && *v == 5),
        "{plain_stats:?}"
    );
}

/// An address reserved for another client inside the pool (192.0.2.12, Kea's in-pool
/// reservation) is skipped, never handed out, and stays free for its owner: every other address
/// of the 10-address pool goes to a client. (Skipping it used to end the DISCOVER with "no
/// address available" and put the address back where the next allocation found it again, so the
/// pool was stuck at the reservation.)
#[test]
fn in_pool_reservations_are_skipped_not_a_dead_end() {
    let mut h = Harness::new(&config("", ""));
    let mut got = Vec::new();
    for n in 1..=9 {
        got.push(dora(&mut h, mac(n)).yiaddr());
    }
    got.sort();
    let want: Vec<Ipv4Addr> = (10..=19)
        .filter(|&o| o != 12)
        .map(|o| Ipv4Addr::new(192, 0, 2, o))
        .collect();
    assert_eq!(got, want);
    assert!(
        h.client(&discover(mac(10)).build(), mac(10)).is_none(),
        "the pool is full but for the reserved address"
    );
    assert_eq!(h.drops(DropReason::NoAddressAvailable), 1);
    let owner = [0xaa, 0xbb, 0xcc, 0, 0, 3];
    assert_eq!(dora(&mut h, owner).yiaddr(), Ipv4Addr::new(192, 0, 2, 12));
}

/// `config-reload` as the control socket runs it (`server::reload`), with a worker following the
/// published state as the backends' workers do: the next DISCOVER after the reload is served from
/// the new pool, the leases are kept, and a broken file is refused with its path while the
/// running configuration keeps serving.
#[test]
fn a_reload_reaches_the_worker_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let broken = dir.path().join("broken.json");
    let cfg_a = config("", "");
    std::fs::write(&a, &cfg_a).unwrap();
    std::fs::write(
        &b,
        cfg_a.replace("192.0.2.10 - 192.0.2.19", "192.0.2.50 - 192.0.2.59"),
    )
    .unwrap();
    std::fs::write(
        &broken,
        cfg_a.replace("\"valid-lifetime\": 4000", "\"valid-lifetime\": \"long\""),
    )
    .unwrap();
    let loaded = xdhcp_config::load_file(&a).unwrap_or_else(|e| panic!("{e}"));
    let ifaces = vec![(7, "test0".to_string())];
    let first = xdhcp_dataplane::server::build_shared(&loaded.config, 1, ifaces.clone()).unwrap();
    let current = Arc::new(arc_swap::ArcSwap::from_pointee(first));
    let config = parking_lot::Mutex::new(loaded.config);
    let sink = VecSink::default();
    let mut h = Harness::new(&cfg_a);
    h.worker = Worker::following(current.clone(), 0, Box::new(sink.clone()));
    h.sink = sink;
    let in_pool = |ip: Ipv4Addr, lo: u8, hi: u8| (lo..=hi).contains(&ip.octets()[3]);

    let before = dora(&mut h, mac(1)).yiaddr();
    assert!(in_pool(before, 10, 19), "{before}");

    let msg = xdhcp_dataplane::server::reload(&current, &config, Some(&b), 1, &ifaces, None)
        .unwrap_or_else(|e| panic!("reload refused: {e}"));
    assert!(msg.contains("1 leases kept"), "{msg}");
    let after = dora(&mut h, mac(2)).yiaddr();
    assert!(
        in_pool(after, 50, 59),
        "new client after the reload got {after}"
    );
    let kept = current
        .load()
        .store
        .get_by_addr4(before)
        .expect("lease kept");
    assert_eq!(kept.hwaddr.bytes[..6], mac(1));

    let err = xdhcp_dataplane::server::reload(&current, &config, Some(&broken), 1, &ifaces, None)
        .unwrap_err();
    assert!(
        err.contains("broken.json") && err.contains("valid-lifetime"),
        "{err}"
    );
    let still = dora(&mut h, mac(3)).yiaddr();
    assert!(in_pool(still, 50, 59), "after a refused reload got {still}");
}
