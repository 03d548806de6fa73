//! DHCPv6 engine scenarios (RFC 8415): every client message type, IA_NA and IA_PD together,
//! several IAs per message, Rapid Commit, relayed and nested-relayed traffic, every status code,
//! reservations, journaling and the server DUID's persistence. The engine is driven exactly as the
//! backends drive it: whole Ethernet frames in, whole frames out; assertions are on reply fields.

use std::net::Ipv6Addr;
use std::sync::Arc;
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdhcp_dataplane::engine::{LeaseSink, Shared, VecSink, Worker};
use xdhcp_dataplane::lease::{Lease6, Lease6Type, LeaseChange, LeaseState};
use xdhcp_dataplane::wire::dhcp6::*;
use xdhcp_dataplane::wire::frame::*;
use xdhcp_dataplane::wire::DropReason;

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc1, 0x01];
const RELAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];
const NOW: u64 = 1_800_000_000;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn duid(n: u8) -> Vec<u8> {
    // DUID-LL (type 3, Ethernet) from a per-client MAC.
    vec![0, 3, 0, 1, 0x02, 0, 0, 0, 0xc1, n]
}

const RESERVED_DUID: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0, 0, 1];

fn config(subnet1_extra: &str) -> String {
    format!(
        r#"{{ "Dhcp6": {{
        "interfaces-config": {{ "interfaces": ["test0"] }},
        "preferred-lifetime": 3000, "valid-lifetime": 4000,
        "decline-probation-period": 600,
        "option-data": [ {{ "name": "dns-servers", "data": "2001:db8::53" }},
                         {{ "name": "domain-search", "data": "example.org" }} ],
        "subnet6": [
          {{ "id": 1, "subnet": "2001:db8:1::/64", "interface": "test0", "rapid-commit": true,
             "pools": [ {{ "pool": "2001:db8:1::100 - 2001:db8:1::1ff" }} ],
             "pd-pools": [ {{ "prefix": "2001:db8:8000::", "prefix-len": 48, "delegated-len": 56,
                              "excluded-prefix": "2001:db8:8000:1::", "excluded-prefix-len": 64 }} ],
             "option-data": [ {{ "name": "dns-servers", "data": "2001:db8:1::53" }} ],
             "reservations": [
               {{ "duid": "00:03:00:01:aa:bb:cc:00:00:01", "ip-addresses": ["2001:db8:1::99"],
                  "prefixes": ["2001:db8:9999::/56"], "hostname": "reserved" }} ]
             {subnet1_extra} }},
          {{ "id": 2, "subnet": "2001:db8:2::/64", "relay": {{ "ip-addresses": ["2001:db8:2::1"] }},
             "pools": [ {{ "pool": "2001:db8:2::100 - 2001:db8:2::1ff" }} ],
             "pd-pools": [ {{ "prefix": "2001:db8:a000::", "prefix-len": 48, "delegated-len": 60 }} ] }},
          {{ "id": 3, "subnet": "2001:db8:3::/64", "interface-id": "port-3",
             "renew-timer": 100, "rebind-timer": 200,
             "pools": [ {{ "pool": "2001:db8:3::10 - 2001:db8:3::10" }} ],
             "pd-pools": [ {{ "prefix": "2001:db8:b000::", "prefix-len": 56, "delegated-len": 56 }} ] }}
        ] }} }}"#
    )
}

/// A sink that is always full: the engine must never acknowledge what it cannot journal.
struct FullSink;
impl LeaseSink for FullSink {
    fn room_for(&self, _: usize) -> bool {
        false
    }
    fn take_version(&self) -> u64 {
        0
    }
    fn push_versioned(&self, _: u64, _: LeaseChange) -> bool {
        false
    }
}

struct Harness {
    worker: Worker,
    sink: VecSink,
    shared: Arc<Shared>,
    now: u64,
}

/// How a request reaches the server.
#[derive(Clone, Copy)]
enum Via {
    /// A client on the link, multicast to All_DHCP_Relay_Agents_and_Servers.
    Direct,
    /// A client on the link, unicast to the server's global address.
    Unicast,
    /// A relay agent unicasting from 2001:db8:ffff::1.
    Relay,
}

const RELAY_SRC: &str = "2001:db8:ffff::1";
const CLIENT_LL: &str = "fe80::ff:fe00:c101";

impl Harness {
    fn new(json: &str) -> Harness {
        Self::with_sink(json, VecSink::default(), None)
    }

    fn with_sink(json: &str, sink: VecSink, other: Option<Box<dyn LeaseSink>>) -> Harness {
        let loaded = xdhcp_config::load_str(json, std::path::Path::new("test.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let shared = Arc::new(
            xdhcp_dataplane::server::build_shared_with_duid(
                &loaded.config,
                1,
                vec![(7, "test0".into())],
                Some(vec![0, 1, 0, 1, 0x11, 0x22, 0x33, 0x44, 2, 0, 0, 0, 0, 1]),
            )
            .unwrap(),
        );
        let boxed: Box<dyn LeaseSink> = other.unwrap_or_else(|| Box::new(sink.clone()));
        let worker = Worker::new(shared.clone(), 0, boxed);
        Harness {
            worker,
            sink,
            shared,
            now: NOW,
        }
    }

    fn server_duid(&self) -> Vec<u8> {
        self.shared.rt6.as_ref().unwrap().server_duid.clone()
    }

    fn send(&mut self, payload: &[u8], via: Via) -> Option<Vec<u8>> {
        let (src_mac, src_ip, dst_ip, src_port) = match via {
            Via::Direct => (
                CLIENT_MAC,
                a(CLIENT_LL),
                ALL_RELAYS_AND_SERVERS,
                CLIENT_PORT,
            ),
            Via::Unicast => (CLIENT_MAC, a(CLIENT_LL), a("2001:db8:1::1"), CLIENT_PORT),
            Via::Relay => (RELAY_MAC, a(RELAY_SRC), a("2001:db8:1::1"), SERVER_PORT),
        };
        let mut frame = vec![0u8; 1700];
        let off = payload_offset_v6(None);
        frame[off..off + payload.len()].copy_from_slice(payload);
        let r = Udp6Reply {
            src_mac,
            dst_mac: SERVER_MAC,
            vlan_tci: None,
            src_ip,
            dst_ip,
            src_port,
            dst_port: SERVER_PORT,
            hop_limit: 1,
        };
        let n = write_udp6_headers(&mut frame, &r, payload.len());
        frame.truncate(n);
        let mut tx = vec![0u8; 2048];
        let now = Now {
            unix_secs: self.now,
            mono_ns: self.now * 1_000_000_000,
        };
        let ctx = RxContext {
            ifindex: 7,
            queue: 0,
            if_mac: SERVER_MAC,
            if_ipv4: std::net::Ipv4Addr::UNSPECIFIED,
        };
        self.worker
            .handle_frame(now, &ctx, &frame, &mut tx)
            .map(|len| {
                tx.truncate(len);
                tx
            })
    }

    fn exchange(&mut self, payload: &[u8], via: Via) -> Reply {
        let frame = self.send(payload, via).expect("a reply");
        Reply::parse(&frame)
    }

    fn journal(&self) -> Vec<LeaseChange> {
        self.sink.0.lock().clone()
    }

    fn journal6(&self) -> Vec<Lease6> {
        self.journal()
            .into_iter()
            .filter_map(|c| match c {
                LeaseChange::Put6(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.shared.stats.drops(r)
    }

    fn stat(&self, name: &str) -> u64 {
        self.shared
            .stats
            .snapshot()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no statistic {name}"))
    }
}

struct Reply {
    frame: UdpFrame,
    msg: ParsedReply,
}

impl Reply {
    fn parse(frame: &[u8]) -> Reply {
        let f = parse_udp_frame(frame).expect("reply frame parses");
        // The UDP checksum (mandatory in IPv6) must verify.
        let ip = f.payload_start - UDP_HLEN - IPV6_HLEN;
        let mut sum = xdhcp_dataplane::wire::checksum_add(0, &frame[ip + 8..ip + 40]);
        sum += 17 + (f.payload_end - f.payload_start + UDP_HLEN) as u32;
        sum = xdhcp_dataplane::wire::checksum_add(sum, &frame[ip + 40..f.payload_end]);
        assert_eq!(
            xdhcp_dataplane::wire::checksum_finish(sum),
            0,
            "UDP checksum"
        );
        let msg = ParsedReply::parse(&frame[f.payload_start..f.payload_end])
            .expect("reply DHCPv6 parses");
        Reply { frame: f, msg }
    }
    fn ias(&self) -> Vec<ParsedIa> {
        self.msg.ias()
    }
    fn addrs(&self) -> (Ipv6Addr, Ipv6Addr) {
        match self.frame.l3 {
            L3::V6 { src, dst, .. } => (src, dst),
            _ => panic!("not IPv6"),
        }
    }
}

fn solicit(xid: u32, client: &[u8]) -> RequestBuilder6 {
    RequestBuilder6::new(MessageType6::Solicit, xid)
        .client_id(client)
        .elapsed(0)
        .oro(&[OPT_DNS_SERVERS, OPT_DOMAIN_LIST])
}

/// SOLICIT + REQUEST for one IA_NA (iaid 1) and one IA_PD (iaid 2); returns (address, prefix).
fn bind(h: &mut Harness, client: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let adv = h.exchange(
        &solicit(1, client).ia_na(1, &[]).ia_pd(2, &[]).build(),
        Via::Direct,
    );
    assert_eq!(adv.msg.msg_type, MessageType6::Advertise as u8);
    let ias = adv.ias();
    let na = ias[0].addrs[0].0;
    let pd = ias[1].prefixes[0].0;
    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 2)
        .client_id(client)
        .server_id(&sid)
        .ia_na(1, &[(na, 0, 0)])
        .ia_pd(2, &[(pd, 56, 0, 0)])
        .build();
    let rep = h.exchange(&req, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    let ias = rep.ias();
    assert_eq!(ias[0].addrs[0].0, na);
    assert_eq!(ias[1].prefixes[0].0, pd);
    (na, pd)
}

#[test]
fn solicit_advertise_then_request_reply_with_ia_na_and_ia_pd() {
    let mut h = Harness::new(&config(""));
    let c = duid(1);
    let adv = h.exchange(
        &solicit(0xabcdef, &c).ia_na(1, &[]).ia_pd(2, &[]).build(),
        Via::Direct,
    );
    assert_eq!(adv.msg.msg_type, MessageType6::Advertise as u8);
    assert_eq!(adv.msg.xid, [0xab, 0xcd, 0xef]);
    assert_eq!(
        adv.msg.option(OPT_SERVERID),
        Some(h.server_duid().as_slice())
    );
    assert_eq!(adv.msg.option(OPT_CLIENTID), Some(c.as_slice()));
    // Subnet option beats the global one; domain-search comes from the global scope.
    assert_eq!(
        adv.msg.option(OPT_DNS_SERVERS),
        Some(&a("2001:db8:1::53").octets()[..])
    );
    assert!(adv.msg.option(OPT_DOMAIN_LIST).is_some());
    let ias = adv.ias();
    assert_eq!(ias.len(), 2);
    let (na, pd) = (&ias[0], &ias[1]);
    assert_eq!(
        (na.kind, na.iaid, na.status),
        (IaKind::Na, 1, Status::Success)
    );
    let (addr, pref, valid) = na.addrs[0];
    assert!(
        addr >= a("2001:db8:1::100") && addr <= a("2001:db8:1::1ff"),
        "{addr}"
    );
    assert_eq!((pref, valid), (3000, 4000));
    // calculate-tee-times is on by default in DHCPv6: T1 = 0.5, T2 = 0.8 of the preferred lifetime.
    assert_eq!((na.t1, na.t2), (1500, 2400));
    assert_eq!((pd.kind, pd.iaid), (IaKind::Pd, 2));
    let (prefix, plen, _, _) = pd.prefixes[0];
    assert_eq!(plen, 56);
    assert_eq!(
        u128::from(prefix) >> 80,
        u128::from(a("2001:db8:8000::")) >> 80,
        "{prefix} inside 2001:db8:8000::/48"
    );
    // Frame addressing: to the client's MAC and link-local address on 546, from our link-local.
    assert_eq!(adv.frame.dst_mac, CLIENT_MAC);
    assert_eq!(adv.frame.src_mac, SERVER_MAC);
    assert_eq!((adv.frame.src_port, adv.frame.dst_port), (547, 546));
    let (src, dst) = adv.addrs();
    assert_eq!(dst, a(CLIENT_LL));
    assert_eq!(
        src,
        a("fe80::ff:fe00:1"),
        "EUI-64 link-local of the server MAC"
    );
    // An ADVERTISE commits nothing.
    assert!(h.journal().is_empty());

    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 7)
        .client_id(&c)
        .server_id(&sid)
        .oro(&[OPT_DNS_SERVERS])
        .ia_na(1, &[(addr, 0, 0)])
        .ia_pd(2, &[(prefix, 56, 0, 0)])
        .build();
    let rep = h.exchange(&req, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    let ias = rep.ias();
    assert_eq!(ias[0].addrs, vec![(addr, 3000, 4000)]);
    assert_eq!(ias[1].prefixes, vec![(prefix, 56, 3000, 4000)]);
    let j = h.journal6();
    assert_eq!(j.len(), 2);
    assert!(j.iter().any(|l| l.addr == addr
        && l.lease_type == Lease6Type::Na
        && l.iaid == 1
        && l.state == LeaseState::Assigned));
    assert!(j.iter().any(|l| l.addr == prefix
        && l.lease_type == Lease6Type::Pd
        && l.prefix_len == 56
        && l.iaid == 2));
    assert!(j
        .iter()
        .all(|l| l.duid.as_slice() == c.as_slice() && l.cltt == NOW && l.subnet_id == 1));
    assert_eq!(h.stat("pkt6-solicit-received"), 1);
    assert_eq!(h.stat("pkt6-advertise-sent"), 1);
    assert_eq!(h.stat("pkt6-request-received"), 1);
    assert_eq!(h.stat("pkt6-reply-sent"), 1);
}

#[test]
fn pd_exclude_is_sent_when_requested() {
    let mut h = Harness::new(&config(""));
    let m = RequestBuilder6::new(MessageType6::Solicit, 1)
        .client_id(&duid(1))
        .oro(&[OPT_PD_EXCLUDE])
        .ia_pd(2, &[])
        .build();
    let adv = h.exchange(&m, Via::Direct);
    let ia = &adv.ias()[0];
    let opts = &ia.prefix_options[0];
    assert_eq!(opts, &vec![(OPT_PD_EXCLUDE, vec![64, 0x01])]);
    // Not asked for, not sent.
    let adv = h.exchange(&solicit(2, &duid(2)).ia_pd(2, &[]).build(), Via::Direct);
    assert!(adv.ias()[0].prefix_options[0].is_empty());
}

#[test]
fn several_ias_in_one_message_get_distinct_resources() {
    let mut h = Harness::new(&config(""));
    let c = duid(3);
    let m = solicit(1, &c)
        .ia_na(10, &[])
        .ia_na(11, &[])
        .ia_pd(20, &[])
        .ia_pd(21, &[])
        .rapid_commit()
        .build();
    let rep = h.exchange(&m, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    let ias = rep.ias();
    assert_eq!(
        ias.iter().map(|i| i.iaid).collect::<Vec<_>>(),
        vec![10, 11, 20, 21]
    );
    assert_ne!(ias[0].addrs[0].0, ias[1].addrs[0].0);
    assert_ne!(ias[2].prefixes[0].0, ias[3].prefixes[0].0);
    assert_eq!(h.journal6().len(), 4);
}

#[test]
fn rapid_commit_replies_and_journals_only_when_the_subnet_allows_it() {
    let mut h = Harness::new(&config(""));
    let rep = h.exchange(
        &solicit(1, &duid(1))
            .ia_na(1, &[])
            .ia_pd(2, &[])
            .rapid_commit()
            .build(),
        Via::Direct,
    );
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(rep.msg.option(OPT_RAPID_COMMIT), Some(&[][..]));
    assert_eq!(h.journal6().len(), 2);
    // Subnet 2 (relayed) has no rapid-commit: an ADVERTISE, nothing journaled.
    let inner = solicit(2, &duid(2)).ia_na(1, &[]).rapid_commit().build();
    let fwd = RequestBuilder6::relay_forw(&inner, 0, a("2001:db8:2::1"), a("fe80::2"), None, &[]);
    let adv = h.exchange(&fwd, Via::Relay);
    assert_eq!(adv.msg.msg_type, MessageType6::Advertise as u8);
    assert_eq!(adv.msg.option(OPT_RAPID_COMMIT), None);
    assert_eq!(h.journal6().len(), 2);
}

#[test]
fn renew_and_rebind_extend_the_binding() {
    let mut h = Harness::new(&config(""));
    let c = duid(4);
    let (na, pd) = bind(&mut h, &c);
    h.now += 1000;
    let sid = h.server_duid();
    let renew = RequestBuilder6::new(MessageType6::Renew, 3)
        .client_id(&c)
        .server_id(&sid)
        .ia_na(1, &[(na, 3000, 4000)])
        .ia_pd(2, &[(pd, 56, 3000, 4000)])
        .build();
    let rep = h.exchange(&renew, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    let ias = rep.ias();
    assert_eq!(
        (ias[0].addrs[0], ias[0].status),
        ((na, 3000, 4000), Status::Success)
    );
    assert_eq!(ias[1].prefixes[0], (pd, 56, 3000, 4000));
    assert_eq!((ias[0].t1, ias[0].t2), (1500, 2400));
    let last = h.journal6();
    assert_eq!(last.len(), 4);
    assert!(last[2..]
        .iter()
        .all(|l| l.cltt == NOW + 1000 && l.state == LeaseState::Assigned));

    h.now += 1000;
    let rebind = RequestBuilder6::new(MessageType6::Rebind, 4)
        .client_id(&c)
        .ia_na(1, &[(na, 0, 0)])
        .ia_pd(2, &[(pd, 56, 0, 0)])
        .build();
    let rep = h.exchange(&rebind, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(rep.ias()[0].addrs[0], (na, 3000, 4000));
    assert_eq!(h.journal6().len(), 6);
    assert_eq!(h.stat("pkt6-renew-received"), 1);
    assert_eq!(h.stat("pkt6-rebind-received"), 1);
}

#[test]
fn renew_without_binding_gets_no_binding_and_foreign_addresses_get_zero_lifetimes() {
    let mut h = Harness::new(&config(""));
    let sid = h.server_duid();
    // An IA the server never heard of, with no address: NoBinding.
    let renew = RequestBuilder6::new(MessageType6::Renew, 3)
        .client_id(&duid(5))
        .server_id(&sid)
        .ia_na(9, &[])
        .build();
    let rep = h.exchange(&renew, Via::Direct);
    assert_eq!(rep.ias()[0].status, Status::NoBinding);
    assert!(rep.ias()[0].addrs.is_empty());
    // An address held by another client: NoBinding, and the other client keeps it.
    let (na, _) = bind(&mut h, &duid(6));
    let renew = RequestBuilder6::new(MessageType6::Renew, 4)
        .client_id(&duid(5))
        .server_id(&sid)
        .ia_na(1, &[(na, 0, 0)])
        .build();
    let rep = h.exchange(&renew, Via::Direct);
    assert_eq!(rep.ias()[0].status, Status::NoBinding);
    // Rebind with an address from another link: told to stop using it (lifetimes 0).
    let rebind = RequestBuilder6::new(MessageType6::Rebind, 5)
        .client_id(&duid(5))
        .ia_na(1, &[(a("2001:db8:77::1"), 0, 0)])
        .build();
    let rep = h.exchange(&rebind, Via::Direct);
    assert_eq!(rep.ias()[0].addrs, vec![(a("2001:db8:77::1"), 0, 0)]);
    // A renew with a binding plus a stale address: the stale one gets lifetimes 0.
    let c = duid(7);
    let (na7, _) = bind(&mut h, &c);
    let renew = RequestBuilder6::new(MessageType6::Renew, 6)
        .client_id(&c)
        .server_id(&sid)
        .ia_na(1, &[(na7, 0, 0), (a("2001:db8:1::1fe"), 0, 0)])
        .build();
    let rep = h.exchange(&renew, Via::Direct);
    assert_eq!(
        rep.ias()[0].addrs,
        vec![(na7, 3000, 4000), (a("2001:db8:1::1fe"), 0, 0)]
    );
}

#[test]
fn renew_of_a_free_address_after_failover_rebuilds_the_binding() {
    let mut h = Harness::new(&config(""));
    let sid = h.server_duid();
    let renew = RequestBuilder6::new(MessageType6::Renew, 3)
        .client_id(&duid(8))
        .server_id(&sid)
        .ia_na(1, &[(a("2001:db8:1::150"), 0, 0)])
        .build();
    let rep = h.exchange(&renew, Via::Direct);
    assert_eq!(rep.ias()[0].addrs, vec![(a("2001:db8:1::150"), 3000, 4000)]);
    assert_eq!(h.journal6().len(), 1);
}

#[test]
fn release_frees_and_a_second_release_gets_no_binding() {
    let mut h = Harness::new(&config(""));
    let c = duid(9);
    let (na, pd) = bind(&mut h, &c);
    let sid = h.server_duid();
    let rel = RequestBuilder6::new(MessageType6::Release, 5)
        .client_id(&c)
        .server_id(&sid)
        .ia_na(1, &[(na, 0, 0)])
        .ia_pd(2, &[(pd, 56, 0, 0)])
        .build();
    let rep = h.exchange(&rel, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(rep.msg.status(), Status::Success);
    assert!(rep.ias().is_empty(), "released IAs are not listed");
    let j = h.journal6();
    assert!(j[2..]
        .iter()
        .all(|l| l.state == LeaseState::ExpiredReclaimed && l.valid_lft == 0));
    assert_eq!(
        h.shared
            .store
            .get_by_addr6(na, Lease6Type::Na)
            .unwrap()
            .state,
        LeaseState::ExpiredReclaimed
    );
    let rep = h.exchange(&rel, Via::Direct);
    assert_eq!(rep.msg.status(), Status::Success);
    let ias = rep.ias();
    assert_eq!(ias.len(), 2);
    assert!(ias.iter().all(|i| i.status == Status::NoBinding));
    assert_eq!(h.stat("pkt6-release-received"), 2);
}

#[test]
fn decline_holds_the_address_and_the_client_gets_another() {
    let mut h = Harness::new(&config(""));
    let c = duid(10);
    let (na, _) = bind(&mut h, &c);
    let sid = h.server_duid();
    let dec = RequestBuilder6::new(MessageType6::Decline, 6)
        .client_id(&c)
        .server_id(&sid)
        .ia_na(1, &[(na, 0, 0)])
        .build();
    let rep = h.exchange(&dec, Via::Direct);
    assert_eq!(rep.msg.status(), Status::Success);
    let l = h.journal6().pop().unwrap();
    assert_eq!(
        (l.addr, l.state, l.valid_lft),
        (na, LeaseState::Declined, 600)
    );
    let adv = h.exchange(&solicit(7, &c).ia_na(1, &[]).build(), Via::Direct);
    let got = adv.ias()[0].addrs[0].0;
    assert_ne!(got, na);
    assert_eq!(h.stat("pkt6-decline-received"), 1);
}

#[test]
fn confirm_reports_success_or_not_on_link_and_ignores_empty_ones() {
    let mut h = Harness::new(&config(""));
    let c = duid(11);
    let ok = RequestBuilder6::new(MessageType6::Confirm, 1)
        .client_id(&c)
        .ia_na(1, &[(a("2001:db8:1::123"), 0, 0)])
        .build();
    let rep = h.exchange(&ok, Via::Direct);
    assert_eq!(
        (rep.msg.msg_type, rep.msg.status()),
        (MessageType6::Reply as u8, Status::Success)
    );
    assert_eq!(
        rep.msg.option(OPT_SERVERID),
        Some(h.server_duid().as_slice())
    );
    let moved = RequestBuilder6::new(MessageType6::Confirm, 2)
        .client_id(&c)
        .ia_na(1, &[(a("2001:db8:2::123"), 0, 0)])
        .build();
    assert_eq!(
        h.exchange(&moved, Via::Direct).msg.status(),
        Status::NotOnLink
    );
    let empty = RequestBuilder6::new(MessageType6::Confirm, 3)
        .client_id(&c)
        .ia_na(1, &[])
        .build();
    assert!(h.send(&empty, Via::Direct).is_none());
    assert_eq!(h.stat("pkt6-confirm-received"), 3);
}

#[test]
fn information_request_gets_options_only() {
    let mut h = Harness::new(&config(""));
    let m = RequestBuilder6::new(MessageType6::InformationRequest, 1)
        .client_id(&duid(12))
        .oro(&[OPT_DNS_SERVERS])
        .build();
    let rep = h.exchange(&m, Via::Direct);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(
        rep.msg.option(OPT_DNS_SERVERS),
        Some(&a("2001:db8:1::53").octets()[..])
    );
    assert_eq!(rep.msg.option(OPT_DOMAIN_LIST), None, "not requested");
    assert!(rep.ias().is_empty());
    // Without a client identifier too (RFC 8415 allows it).
    let m = RequestBuilder6::new(MessageType6::InformationRequest, 2)
        .oro(&[OPT_DOMAIN_LIST])
        .build();
    let rep = h.exchange(&m, Via::Direct);
    assert!(rep.msg.option(OPT_DOMAIN_LIST).is_some());
    assert_eq!(rep.msg.option(OPT_CLIENTID), None);
    // IAs are not allowed in an Information-request.
    let bad = RequestBuilder6::new(MessageType6::InformationRequest, 3)
        .client_id(&duid(12))
        .ia_na(1, &[])
        .build();
    assert!(h.send(&bad, Via::Direct).is_none());
    assert_eq!(h.stat("pkt6-infrequest-received"), 3);
}

#[test]
fn relayed_solicit_is_answered_through_the_relay() {
    let mut h = Harness::new(&config(""));
    let inner = solicit(9, &duid(13)).ia_na(1, &[]).ia_pd(2, &[]).build();
    let fwd = RequestBuilder6::relay_forw(
        &inner,
        0,
        a("2001:db8:2::1"),
        a("fe80::c1"),
        Some(b"ge-0/0/1"),
        &[],
    );
    let rep = h.exchange(&fwd, Via::Relay);
    assert_eq!(
        rep.msg.relays,
        vec![(
            0,
            a("2001:db8:2::1"),
            a("fe80::c1"),
            Some(b"ge-0/0/1".to_vec())
        )]
    );
    assert_eq!(rep.msg.msg_type, MessageType6::Advertise as u8);
    let ias = rep.ias();
    let addr = ias[0].addrs[0].0;
    assert!(
        addr >= a("2001:db8:2::100") && addr <= a("2001:db8:2::1ff"),
        "{addr} from subnet 2"
    );
    assert_eq!(ias[1].prefixes[0].1, 60);
    // Back to the relay: its MAC, its address, port 547, from the address it sent to.
    assert_eq!(rep.frame.dst_mac, RELAY_MAC);
    assert_eq!((rep.frame.src_port, rep.frame.dst_port), (547, 547));
    assert_eq!(rep.addrs(), (a("2001:db8:1::1"), a(RELAY_SRC)));
    // Relayed unicast is normal and never answered with UseMulticast.
    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 10)
        .client_id(&duid(13))
        .server_id(&sid)
        .ia_na(1, &[(addr, 0, 0)])
        .build();
    let fwd = RequestBuilder6::relay_forw(&req, 0, a("2001:db8:2::1"), a("fe80::c1"), None, &[]);
    let rep = h.exchange(&fwd, Via::Relay);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(rep.ias()[0].addrs[0].0, addr);
    assert_eq!(rep.msg.relays[0].3, None, "no interface-id to echo");
}

#[test]
fn nested_relays_select_by_interface_id_and_get_a_full_relay_reply_chain() {
    let mut h = Harness::new(&config(""));
    let inner = solicit(9, &duid(14)).ia_na(1, &[]).ia_pd(2, &[]).build();
    let r1 = RequestBuilder6::relay_forw(
        &inner,
        0,
        a("::"),
        a("fe80::c1"),
        Some(b"port-3"),
        &[(OPT_CLIENT_LINKLAYER_ADDR, &[0, 1, 2, 0, 0, 0, 0xc1, 14])],
    );
    let r2 = RequestBuilder6::relay_forw(
        &r1,
        1,
        a("2001:db8:99::1"),
        a("2001:db8:98::1"),
        Some(b"uplink"),
        &[],
    );
    let rep = h.exchange(&r2, Via::Relay);
    assert_eq!(
        rep.msg.relays,
        vec![
            (
                1,
                a("2001:db8:99::1"),
                a("2001:db8:98::1"),
                Some(b"uplink".to_vec())
            ),
            (0, a("::"), a("fe80::c1"), Some(b"port-3".to_vec())),
        ]
    );
    let ias = rep.ias();
    assert_eq!(
        ias[0].addrs[0].0,
        a("2001:db8:3::10"),
        "subnet 3 chosen by interface-id"
    );
    assert_eq!(ias[1].prefixes[0].0, a("2001:db8:b000::"));
    // Subnet 3 has explicit renew/rebind timers.
    assert_eq!((ias[0].t1, ias[0].t2), (100, 200));
}

#[test]
fn exhausted_pools_give_no_addrs_avail_and_no_prefix_avail() {
    let mut h = Harness::new(&config(""));
    let via_port3 = |m: Vec<u8>| {
        RequestBuilder6::relay_forw(&m, 0, a("::"), a("fe80::c1"), Some(b"port-3"), &[])
    };
    let first = h.exchange(
        &via_port3(
            solicit(1, &duid(15))
                .ia_na(1, &[])
                .ia_pd(2, &[])
                .rapid_commit()
                .build(),
        ),
        Via::Relay,
    );
    assert_eq!(first.ias()[0].addrs.len(), 1);
    let second = h.exchange(
        &via_port3(solicit(2, &duid(16)).ia_na(1, &[]).ia_pd(2, &[]).build()),
        Via::Relay,
    );
    let ias = second.ias();
    assert_eq!(
        (ias[0].status, ias[0].addrs.len()),
        (Status::NoAddrsAvail, 0)
    );
    assert_eq!(
        (ias[1].status, ias[1].prefixes.len()),
        (Status::NoPrefixAvail, 0)
    );
    // The holder of the only address still gets it: never two clients on one address.
    let again = h.exchange(
        &via_port3(solicit(3, &duid(15)).ia_na(1, &[]).build()),
        Via::Relay,
    );
    assert_eq!(again.ias()[0].addrs[0].0, a("2001:db8:3::10"));
}

#[test]
fn unicast_without_the_unicast_option_gets_use_multicast() {
    let mut h = Harness::new(&config(""));
    let c = duid(17);
    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 1)
        .client_id(&c)
        .server_id(&sid)
        .ia_na(1, &[])
        .build();
    let rep = h.exchange(&req, Via::Unicast);
    assert_eq!(rep.msg.msg_type, MessageType6::Reply as u8);
    assert_eq!(rep.msg.status(), Status::UseMulticast);
    assert!(rep.ias().is_empty());
    assert_eq!(rep.msg.option(OPT_CLIENTID), Some(c.as_slice()));
    assert!(h.journal().is_empty());
    // A unicast SOLICIT is dropped.
    assert!(h
        .send(&solicit(2, &c).ia_na(1, &[]).build(), Via::Unicast)
        .is_none());
}

#[test]
fn unicast_is_accepted_and_announced_when_configured() {
    let json = config("").replace(
        r#""interfaces": ["test0"]"#,
        r#""interfaces": ["test0/2001:db8:1::1"]"#,
    );
    let mut h = Harness::new(&json);
    let adv = h.exchange(&solicit(1, &duid(18)).ia_na(1, &[]).build(), Via::Direct);
    assert_eq!(
        adv.msg.option(OPT_UNICAST),
        Some(&a("2001:db8:1::1").octets()[..])
    );
    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 2)
        .client_id(&duid(18))
        .server_id(&sid)
        .ia_na(1, &[])
        .build();
    let rep = h.exchange(&req, Via::Unicast);
    assert_eq!(rep.msg.status(), Status::Success);
    assert_eq!(rep.ias()[0].addrs.len(), 1);
    assert_eq!(
        rep.addrs().0,
        a("2001:db8:1::1"),
        "reply from the unicast address"
    );
}

#[test]
fn reservations_win_over_pools() {
    let mut h = Harness::new(&config(""));
    let adv = h.exchange(
        &solicit(1, &RESERVED_DUID)
            .ia_na(1, &[])
            .ia_pd(2, &[])
            .build(),
        Via::Direct,
    );
    let ias = adv.ias();
    assert_eq!(ias[0].addrs[0].0, a("2001:db8:1::99"));
    assert_eq!(ias[1].prefixes[0].0, a("2001:db8:9999::"));
    // A client asking for the reserved address gets something else.
    let other = h.exchange(
        &solicit(2, &duid(19))
            .ia_na(1, &[(a("2001:db8:1::99"), 0, 0)])
            .build(),
        Via::Direct,
    );
    assert_ne!(other.ias()[0].addrs[0].0, a("2001:db8:1::99"));
}

#[test]
fn hints_are_honoured_when_free() {
    let mut h = Harness::new(&config(""));
    let adv = h.exchange(
        &solicit(1, &duid(20))
            .ia_na(1, &[(a("2001:db8:1::1ab"), 0, 0)])
            .build(),
        Via::Direct,
    );
    assert_eq!(adv.ias()[0].addrs[0].0, a("2001:db8:1::1ab"));
    // The hint is now held for that client; another client asking for it gets another address.
    let adv = h.exchange(
        &solicit(2, &duid(21))
            .ia_na(1, &[(a("2001:db8:1::1ab"), 0, 0)])
            .build(),
        Via::Direct,
    );
    assert_ne!(adv.ias()[0].addrs[0].0, a("2001:db8:1::1ab"));
}

#[test]
fn wrong_or_missing_identifiers_are_dropped_and_counted() {
    let mut h = Harness::new(&config(""));
    let c = duid(22);
    let req = RequestBuilder6::new(MessageType6::Request, 1)
        .client_id(&c)
        .server_id(&[0, 2, 0, 0, 0, 9])
        .ia_na(1, &[])
        .build();
    assert!(h.send(&req, Via::Direct).is_none());
    let sol = solicit(2, &c)
        .server_id(&h.server_duid())
        .ia_na(1, &[])
        .build();
    assert!(h.send(&sol, Via::Direct).is_none());
    assert_eq!(h.drops(DropReason::NotOurServerId), 2);
    let no_client = RequestBuilder6::new(MessageType6::Solicit, 3)
        .ia_na(1, &[])
        .build();
    assert!(h.send(&no_client, Via::Direct).is_none());
    assert_eq!(h.drops(DropReason::BadOptions), 1);
    // Server-to-client types are never answered.
    let adv = RequestBuilder6::new(MessageType6::Advertise, 4)
        .client_id(&c)
        .build();
    assert!(h.send(&adv, Via::Direct).is_none());
    assert_eq!(h.drops(DropReason::UnknownMessageType), 1);
    // Malformed: an option running past the end.
    let mut bad = solicit(5, &c).ia_na(1, &[]).build();
    let n = bad.len();
    bad[n - 14] = 0xff;
    assert!(h.send(&bad, Via::Direct).is_none());
    assert_eq!(h.drops(DropReason::BadOptions), 2);
    assert!(h.journal().is_empty());
}

#[test]
fn nothing_is_acknowledged_when_the_journal_is_full() {
    let mut h = Harness::with_sink(&config(""), VecSink::default(), Some(Box::new(FullSink)));
    // An ADVERTISE needs no journal.
    let adv = h.exchange(&solicit(1, &duid(23)).ia_na(1, &[]).build(), Via::Direct);
    let addr = adv.ias()[0].addrs[0].0;
    let sid = h.server_duid();
    let req = RequestBuilder6::new(MessageType6::Request, 2)
        .client_id(&duid(23))
        .server_id(&sid)
        .ia_na(1, &[(addr, 0, 0)])
        .build();
    assert!(h.send(&req, Via::Direct).is_none());
    let rc = solicit(3, &duid(24)).ia_na(1, &[]).rapid_commit().build();
    assert!(h.send(&rc, Via::Direct).is_none());
    assert_eq!(h.drops(DropReason::JournalFull), 2);
    assert_ne!(
        h.shared
            .store
            .get_by_addr6(addr, Lease6Type::Na)
            .map(|l| l.state),
        Some(LeaseState::Assigned)
    );
}

#[test]
fn many_clients_never_share_an_address_or_prefix() {
    let mut h = Harness::new(&config(""));
    let mut addrs = std::collections::HashSet::new();
    let mut prefixes = std::collections::HashSet::new();
    for i in 0..200u32 {
        let c = [0, 2, 0, 0, 0, 9, (i >> 8) as u8, i as u8];
        let rep = h.exchange(
            &solicit(i, &c)
                .ia_na(1, &[])
                .ia_pd(2, &[])
                .rapid_commit()
                .build(),
            Via::Direct,
        );
        let ias = rep.ias();
        assert!(addrs.insert(ias[0].addrs[0].0), "address handed out twice");
        assert!(
            prefixes.insert(ias[1].prefixes[0].0),
            "prefix handed out twice"
        );
    }
    // 256 addresses in the pool: 56 left, then NoAddrsAvail.
    for i in 200..256u32 {
        let c = [0, 2, 0, 0, 0, 9, (i >> 8) as u8, i as u8];
        let rep = h.exchange(
            &solicit(i, &c).ia_na(1, &[]).rapid_commit().build(),
            Via::Direct,
        );
        assert!(addrs.insert(rep.ias()[0].addrs[0].0));
    }
    let rep = h.exchange(
        &solicit(999, &[0, 2, 0, 0, 0, 9, 9, 9])
            .ia_na(1, &[])
            .build(),
        Via::Direct,
    );
    assert_eq!(rep.ias()[0].status, Status::NoAddrsAvail);
}

#[test]
fn server_duid_is_generated_once_and_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let json = config("").replace(
        r#""preferred-lifetime": 3000"#,
        &format!(
            r#""data-directory": "{}", "preferred-lifetime": 3000"#,
            dir.path().display()
        ),
    );
    let loaded = xdhcp_config::load_str(&json, std::path::Path::new("t.json")).unwrap();
    let d6 = loaded.config.dhcp6.as_ref().unwrap();
    let first = xdhcp_dataplane::engine::duid::load_or_create(d6, Some([2, 0, 0, 0, 0, 0x42]), NOW)
        .unwrap();
    assert_eq!(&first[..4], &[0, 1, 0, 1], "DUID-LLT, Ethernet");
    assert_eq!(&first[8..], &[2, 0, 0, 0, 0, 0x42]);
    let path = dir.path().join(xdhcp_dataplane::engine::duid::DUID_FILE);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("00:01:00:01:"));
    // A restart later, with another MAC even: the same DUID.
    let again =
        xdhcp_dataplane::engine::duid::load_or_create(d6, Some([2, 0, 0, 0, 0, 0x43]), NOW + 5000)
            .unwrap();
    assert_eq!(again, first);
    // The engine puts exactly those bytes in every reply.
    let shared = xdhcp_dataplane::server::build_shared_with_duid(
        &loaded.config,
        1,
        vec![(7, "test0".into())],
        Some(again.clone()),
    )
    .unwrap();
    assert_eq!(shared.rt6.as_ref().unwrap().server_duid, first);
}

#[test]
fn dual_stack_config_serves_both_families_from_one_store() {
    let json = config("").replace(
        r#"{ "Dhcp6": {"#,
        r#"{ "Dhcp4": { "interfaces-config": { "interfaces": ["test0"] },
              "subnet4": [ { "id": 1, "subnet": "192.0.2.0/24", "interface": "test0",
                             "pools": [ { "pool": "192.0.2.10 - 192.0.2.19" } ] } ] },
           "Dhcp6": {"#,
    );
    let mut h = Harness::new(&json);
    assert!(h.shared.rt4.is_some() && h.shared.rt6.is_some());
    let rep = h.exchange(
        &solicit(1, &duid(25)).ia_na(1, &[]).rapid_commit().build(),
        Via::Direct,
    );
    let addr = rep.ias()[0].addrs[0].0;
    assert_eq!(
        h.shared
            .store
            .get_by_addr6(addr, Lease6Type::Na)
            .unwrap()
            .state,
        LeaseState::Assigned
    );
}

fn control(h: &Harness) -> xdhcp_dataplane::control_socket::Context {
    let loaded = xdhcp_config::load_str(&config(""), std::path::Path::new("test.json")).unwrap();
    xdhcp_dataplane::control_socket::Context {
        shared: h.shared.clone(),
        current: None,
        reload: None,
        journal: None,
        sink: parking_lot::Mutex::new(Box::new(h.sink.clone())),
        config: Arc::new(parking_lot::Mutex::new(loaded.config)),
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    }
}

fn command(
    ctx: &xdhcp_dataplane::control_socket::Context,
    cmd: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let req = serde_json::json!({ "command": cmd, "service": ["dhcp6"], "arguments": args });
    xdhcp_dataplane::control_socket::handle(ctx, &req, std::time::Instant::now())
}

#[test]
fn lease6_commands_as_kea_ha_sends_and_reads_them() {
    use serde_json::json;
    let mut h = Harness::new(&config(""));
    let c = duid(30);
    let (na, pd) = bind(&mut h, &c);
    let ctx = control(&h);
    let r = command(&ctx, "lease6-get", json!({ "ip-address": na.to_string() }));
    assert_eq!(r["result"], 0, "{r}");
    assert_eq!(r["arguments"]["type"], "IA_NA");
    assert_eq!(r["arguments"]["duid"], "00:03:00:01:02:00:00:00:c1:1e");
    assert_eq!(
        (
            r["arguments"]["iaid"].as_u64(),
            r["arguments"]["subnet-id"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let r = command(
        &ctx,
        "lease6-get",
        json!({ "ip-address": pd.to_string(), "type": "IA_PD" }),
    );
    assert_eq!(
        (r["result"].as_u64(), r["arguments"]["prefix-len"].as_u64()),
        (Some(0), Some(56))
    );
    let r = command(
        &ctx,
        "lease6-get",
        json!({ "identifier-type": "duid", "identifier": "00:03:00:01:02:00:00:00:c1:1e", "iaid": 2, "subnet-id": 1, "type": "IA_PD" }),
    );
    assert_eq!(r["arguments"]["ip-address"], pd.to_string());

    // What a Kea 2.2 partner sends after answering a client: one bulk-apply per packet.
    let expire = NOW + 4000;
    let r = command(
        &ctx,
        "lease6-bulk-apply",
        json!({
            "deleted-leases": [ { "ip-address": na.to_string(), "type": "IA_NA", "duid": "00:03:00:01:02:00:00:00:c1:1e", "iaid": 1, "subnet-id": 1 } ],
            "leases": [
                { "ip-address": "2001:db8:1::150", "duid": "00:01:00:01:aa:bb:cc:dd:ee:ff:00:11", "iaid": 7, "subnet-id": 1,
                  "type": "IA_NA", "valid-lft": 4000, "preferred-lft": 3000, "expire": expire,
                  "fqdn-fwd": false, "fqdn-rev": false, "hostname": "", "state": 0 },
                { "ip-address": "2001:db8:8000:4200::", "prefix-len": 56, "duid": "00:01:00:01:aa:bb:cc:dd:ee:ff:00:11", "iaid": 8,
                  "subnet-id": 1, "type": "IA_PD", "valid-lft": 4000, "preferred-lft": 3000, "expire": expire,
                  "fqdn-fwd": false, "fqdn-rev": false, "hostname": "", "state": 0 },
                { "ip-address": "2001:db8:1::151", "duid": "01:02", "iaid": 1, "subnet-id": 42, "type": "IA_NA",
                  "valid-lft": 4000, "expire": expire, "fqdn-fwd": false, "fqdn-rev": false, "hostname": "", "state": 0 } ]
        }),
    );
    assert_eq!(r["result"], 0, "{r}");
    assert_eq!(r["arguments"]["failed-deleted-leases"], json!([]));
    let failed = r["arguments"]["failed-leases"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "unknown subnet-id 42 fails");
    assert_eq!(
        (
            failed[0]["ip-address"].as_str(),
            failed[0]["result"].as_u64()
        ),
        (Some("2001:db8:1::151"), Some(1))
    );
    assert!(h.shared.store.get_by_addr6(na, Lease6Type::Na).is_none());
    let got = h
        .shared
        .store
        .get_by_addr6(a("2001:db8:1::150"), Lease6Type::Na)
        .unwrap();
    assert_eq!((got.cltt, got.preferred_lft, got.iaid), (NOW, 3000, 7));
    let j = h.journal();
    assert!(j.contains(&LeaseChange::Del6(na, Lease6Type::Na)));
    assert!(j.iter().any(|c| matches!(c, LeaseChange::Put6(l) if l.addr == a("2001:db8:8000:4200::") && l.prefix_len == 56)));
    // The engine respects what the partner leased: nobody else gets it.
    let adv = h.exchange(
        &solicit(1, &duid(31))
            .ia_na(1, &[(a("2001:db8:1::150"), 0, 0)])
            .build(),
        Via::Direct,
    );
    assert_ne!(adv.ias()[0].addrs[0].0, a("2001:db8:1::150"));

    // Paging as Kea's sync does: from "start", then from the last address of each page.
    let mut seen = Vec::new();
    let mut from = "start".to_string();
    loop {
        let r = command(&ctx, "lease6-get-page", json!({ "from": from, "limit": 1 }));
        if r["result"] == 3 {
            break;
        }
        assert_eq!(r["arguments"]["count"], 1);
        let l = &r["arguments"]["leases"][0];
        assert!(l["cltt"].as_u64().unwrap() > 0 && l["subnet-id"].as_u64().unwrap() > 0);
        from = l["ip-address"].as_str().unwrap().to_string();
        seen.push(from.clone());
        assert!(seen.len() < 10, "paging must end");
    }
    // pd (bound), 2001:db8:1::150, 2001:db8:8000:4200:: and the ADVERTISE hold (not shown).
    assert_eq!(seen.len(), 3, "{seen:?}");
    let r = command(&ctx, "lease6-get-all", json!({}));
    assert_eq!(r["arguments"]["leases"].as_array().unwrap().len(), 3);

    // add / update / del semantics.
    let l =
        json!({ "ip-address": "2001:db8:1::160", "duid": "00:01:02", "iaid": 3, "valid-lft": 100 });
    assert_eq!(command(&ctx, "lease6-add", l.clone())["result"], 0);
    assert_eq!(
        command(
            &ctx,
            "lease6-get",
            json!({ "ip-address": "2001:db8:1::160" })
        )["arguments"]["subnet-id"],
        1
    );
    assert_eq!(command(&ctx, "lease6-add", l.clone())["result"], 1);
    let missing = json!({ "ip-address": "2001:db8:1::161", "duid": "00:01:02", "iaid": 3 });
    assert_eq!(command(&ctx, "lease6-update", missing)["result"], 3);
    assert_eq!(
        command(
            &ctx,
            "lease6-del",
            json!({ "ip-address": "2001:db8:1::160" })
        )["result"],
        0
    );
    assert_eq!(
        command(
            &ctx,
            "lease6-del",
            json!({ "ip-address": "2001:db8:1::160" })
        )["result"],
        3
    );
    let cmds = command(&ctx, "list-commands", json!({}));
    assert!(cmds["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "lease6-bulk-apply"));
}

/// Counts heap allocations made by the current thread (other tests run on other threads).
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

#[test]
fn the_common_path_allocates_nothing() {
    let loaded = xdhcp_config::load_str(&config(""), std::path::Path::new("test.json")).unwrap();
    let shared = Arc::new(
        xdhcp_dataplane::server::build_shared_with_duid(
            &loaded.config,
            1,
            vec![(7, "test0".into())],
            Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]),
        )
        .unwrap(),
    );
    let mut w = Worker::new(
        shared.clone(),
        0,
        Box::new(xdhcp_dataplane::engine::NullSink),
    );
    let ctx = RxContext {
        ifindex: 7,
        queue: 0,
        if_mac: SERVER_MAC,
        if_ipv4: std::net::Ipv4Addr::UNSPECIFIED,
    };
    let frame_of = |payload: &[u8]| {
        let mut frame = vec![0u8; 1700];
        let off = payload_offset_v6(None);
        frame[off..off + payload.len()].copy_from_slice(payload);
        let r = Udp6Reply {
            src_mac: CLIENT_MAC,
            dst_mac: SERVER_MAC,
            vlan_tci: None,
            src_ip: a(CLIENT_LL),
            dst_ip: ALL_RELAYS_AND_SERVERS,
            src_port: CLIENT_PORT,
            dst_port: SERVER_PORT,
            hop_limit: 1,
        };
        let n = write_udp6_headers(&mut frame, &r, payload.len());
        frame.truncate(n);
        frame
    };
    let c = duid(40);
    let sid = vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
    let now = Now {
        unix_secs: NOW,
        mono_ns: 0,
    };
    let mut tx = vec![0u8; 2048];
    // Bind first (the first lease of a client may grow the store's tables).
    let rc = frame_of(
        &solicit(1, &c)
            .ia_na(1, &[])
            .ia_pd(2, &[])
            .rapid_commit()
            .build(),
    );
    let n = w.handle_frame(now, &ctx, &rc, &mut tx).unwrap();
    let ias = Reply::parse(&tx[..n]).ias();
    let (na, pd) = (ias[0].addrs[0].0, ias[1].prefixes[0].0);
    let renew = frame_of(
        &RequestBuilder6::new(MessageType6::Renew, 2)
            .client_id(&c)
            .server_id(&sid)
            .oro(&[OPT_DNS_SERVERS])
            .ia_na(1, &[(na, 0, 0)])
            .ia_pd(2, &[(pd, 56, 0, 0)])
            .build(),
    );
    let inner = solicit(3, &c).ia_na(1, &[]).ia_pd(2, &[]).build();
    let relayed = frame_of(&RequestBuilder6::relay_forw(
        &inner,
        0,
        a("2001:db8:1::1"),
        a("fe80::1"),
        Some(b"x"),
        &[],
    ));
    for (name, frame) in [
        ("renew", &renew),
        ("solicit of a bound client", &rc),
        ("relayed solicit", &relayed),
    ] {
        assert!(
            w.handle_frame(now, &ctx, frame, &mut tx).is_some(),
            "{name}: a reply"
        );
        let before = ALLOCS.with(|c| c.get());
        for _ in 0..100 {
            assert!(w.handle_frame(now, &ctx, frame, &mut tx).is_some());
        }
        let made = ALLOCS.with(|c| c.get()) - before;
        assert_eq!(made, 0, "{name}: {made} allocations in 100 exchanges");
    }
}

#[test]
fn client_classes_steer_subnets_and_pools_and_rank_options_as_kea_does() {
    // User class (option 15): 2-byte length, then the class data.
    let json = r#"{ "Dhcp6": {
        "interfaces-config": { "interfaces": ["test0"] },
        "preferred-lifetime": 3000, "valid-lifetime": 4000,
        "option-data": [ { "name": "dns-servers", "data": "2001:db8::53" },
                         { "name": "domain-search", "data": "global.example" } ],
        "client-classes": [
          { "name": "phones", "test": "substring(option[15].hex,2,5) == 'phone'", "valid-lifetime": 900,
            "option-data": [ { "name": "dns-servers", "data": "2001:db8::5" },
                             { "name": "domain-search", "data": "phones.example" } ] },
          { "name": "printers", "test": "substring(option[15].hex,2,7) == 'printer' and not (pkt6.msgtype == 11)" },
          { "name": "kiosks", "test": "substring(option[15].hex,2,5) == 'kiosk'" },
          { "name": "others", "test": "not member('phones') and not member('kiosks')" } ],
        "shared-networks": [ { "name": "floor", "interface": "test0", "subnet6": [
          { "id": 1, "subnet": "2001:db8:1::/64", "client-class": "phones",
            "pools": [ { "pool": "2001:db8:1::100 - 2001:db8:1::1ff" } ],
            "option-data": [ { "name": "dns-servers", "data": "2001:db8:1::53" } ] },
          { "id": 2, "subnet": "2001:db8:2::/64", "client-class": "others",
            "pools": [ { "pool": "2001:db8:2::100 - 2001:db8:2::1ff", "client-class": "printers" },
                       { "pool": "2001:db8:2::200 - 2001:db8:2::2ff" } ] } ] } ]
    } }"#;
    let mut h = Harness::new(json);
    let user_class = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let advertise = |h: &mut Harness, n: u8, class: &str| {
        let m = solicit(n.into(), &duid(n))
            .option(15, &user_class(class))
            .ia_na(1, &[])
            .build();
        h.send(&m, Via::Direct).map(|f| Reply::parse(&f))
    };
    let dns = |r: &Reply| {
        r.msg
            .option(OPT_DNS_SERVERS)
            .map(|o| Ipv6Addr::from(<[u8; 16]>::try_from(o).unwrap()))
    };
    let search = |r: &Reply| r.msg.option(OPT_DOMAIN_LIST).map(|o| o.to_vec());
    let dn = |s: &str| {
        let mut v = Vec::new();
        for l in s.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    };

    let phone = advertise(&mut h, 60, "phone-7").expect("phone advertised");
    let (addr, _, valid) = phone.ias()[0].addrs[0];
    assert!(
        (a("2001:db8:1::100")..=a("2001:db8:1::1ff")).contains(&addr),
        "{addr}"
    );
    assert_eq!(valid, 900, "the class's valid-lifetime");
    assert_eq!(
        dns(&phone),
        Some(a("2001:db8:1::53")),
        "subnet options beat class options"
    );
    assert_eq!(
        search(&phone),
        Some(dn("phones.example")),
        "class options beat global ones"
    );

    let printer = advertise(&mut h, 61, "printer").expect("printer advertised");
    let addr = printer.ias()[0].addrs[0].0;
    assert!(
        (a("2001:db8:2::100")..=a("2001:db8:2::1ff")).contains(&addr),
        "{addr}"
    );
    assert_eq!(
        dns(&printer),
        Some(a("2001:db8::53")),
        "global options for non-members"
    );
    assert_eq!(search(&printer), Some(dn("global.example")));

    let laptop = advertise(&mut h, 62, "laptop").expect("laptop advertised");
    let addr = laptop.ias()[0].addrs[0].0;
    assert!(
        (a("2001:db8:2::200")..=a("2001:db8:2::2ff")).contains(&addr),
        "{addr}"
    );

    assert!(
        advertise(&mut h, 63, "kiosk").is_none(),
        "no subnet of the link admits a kiosk"
    );
    assert_eq!(h.drops(DropReason::NoSubnet), 1);
}

#[test]
fn dual_stack_ha_gates_each_family_for_its_own_control_process() {
    use serde_json::json;
    let ha = |port: u16| {
        format!(
            r#""hooks-libraries": [ {{ "library": "libdhcp_ha.so", "parameters": {{ "high-availability": [ {{
                "this-server-name": "server1", "mode": "hot-standby",
                "peers": [ {{ "name": "server1", "url": "http://192.0.2.1:{port}/", "role": "primary" }},
                           {{ "name": "server2", "url": "http://192.0.2.2:{port}/", "role": "standby" }} ] }} ] }} }} ],"#
        )
    };
    let json = config("").replace(
        r#"{ "Dhcp6": {"#,
        &format!(
            r#"{{ "Dhcp4": {{ "interfaces-config": {{ "interfaces": ["test0"] }}, {}
              "subnet4": [ {{ "id": 1, "subnet": "192.0.2.0/24", "interface": "test0",
                             "pools": [ {{ "pool": "192.0.2.10 - 192.0.2.19" }} ] }} ] }},
           "Dhcp6": {{ {}"#,
            ha(8001),
            ha(8002)
        ),
    );
    let mut h = Harness::new(&json);
    let ctx = control(&h);
    let solicit_once = |h: &mut Harness, n: u8| {
        h.send(
            &solicit(n.into(), &duid(n)).ia_na(1, &[]).build(),
            Via::Direct,
        )
    };
    let serving = |family: u8, enabled: bool| {
        command(
            &ctx,
            "xdhcp-ha-serving",
            json!({ "family": family, "relationships": [
                { "this-server-name": "server1", "enabled": enabled, "scopes": ["server1"] } ] }),
        )
    };
    // Kea starts in waiting with DHCP off: nothing is answered until control enables the family.
    assert!(solicit_once(&mut h, 70).is_none());
    assert_eq!(serving(4, true)["result"], 0);
    assert!(
        solicit_once(&mut h, 71).is_none(),
        "enabling DHCPv4's relationship does not serve DHCPv6"
    );
    assert_eq!(serving(6, true)["result"], 0);
    assert!(solicit_once(&mut h, 72).is_some());
    assert_eq!(serving(4, false)["result"], 0);
    assert!(
        solicit_once(&mut h, 73).is_some(),
        "disabling DHCPv4 leaves DHCPv6 serving"
    );
    assert_eq!(serving(7, true)["result"], 1, "family must be 4 or 6");

    // Each family's partner-free switch reaches that family's pools only (v6: addresses and prefixes).
    let policy = |family: u8| {
        command(
            &ctx,
            "xdhcp-alloc-policy",
            json!({ "family": family, "relationship": "server1", "partner-free": true }),
        )
    };
    let r4 = policy(4);
    let r6 = policy(6);
    assert_eq!(
        (r4["result"].clone(), r6["result"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(r4["text"], "partner-free=true on 1 pool(s)");
    // config(""): subnet 1 of Dhcp6 holds one address pool and one pd-pool; the other subnets
    // belong to the same single relationship too (untagged).
    assert_eq!(r6["text"], "partner-free=true on 6 pool(s)");
    // Observations are per family as well.
    let obs = command(&ctx, "xdhcp-ha-observations", json!({ "family": 6 }));
    assert_eq!(
        obs["arguments"]["relationships"][0]["this-server-name"],
        "server1"
    );
}
