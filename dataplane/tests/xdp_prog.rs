//! The XDP program on synthetic frames through `BPF_PROG_TEST_RUN`: every frame must produce the
//! expected action and increment exactly one counter, the one naming why. Steering is told apart
//! from passing by the counters and, with a real AF_XDP socket in the XSKMAP, by XDP_REDIRECT.
//! Needs root (loading BPF) and iproute2 (the namespace for the socket case).
#![cfg(feature = "xdp")]

mod xdp_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use xdhcp_dataplane::backend::xdp::loader::{Counter, ProgramCounters, SteerPorts, XdpProgram};
use xdhcp_dataplane::backend::xdp::sys;
use xdhcp_dataplane::backend::xdp::xsk::{XskConfig, XskSocket};
use xdp_common::*;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

fn load(ports: SteerPorts) -> XdpProgram {
    XdpProgram::load(4, ports)
        .unwrap_or_else(|e| panic!("loading the XDP program (these tests need root): {e}"))
}

/// Runs one frame and checks the action and that `counter` alone went up by one.
fn expect(prog: &XdpProgram, what: &str, frame: &[u8], action: u32, counter: Counter) {
    let before = prog.counters().unwrap();
    let got = prog
        .test_run(frame)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let delta = prog.counters().unwrap().since(&before);
    assert_eq!(got, action, "{what}: action");
    let mut want = ProgramCounters::default();
    want.0[counter as usize] = 1;
    assert_eq!(
        delta,
        want,
        "{what}: expected exactly {} += 1",
        counter.name()
    );
}

fn dhcp4(vlan: Option<u16>) -> Vec<u8> {
    udp4_frame(
        BROADCAST,
        MAC_A,
        vlan,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        &dhcp4_payload(),
    )
}

fn dhcp6(ext: &[(u8, usize)]) -> Vec<u8> {
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    udp6_frame(src, dst, 546, 547, &[1, 0, 0, 1, 0, 1, 0, 0], ext)
}

fn with_ipv4_frag(mut f: Vec<u8>, frag: u16) -> Vec<u8> {
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn dhcp_without_a_socket_falls_back_to_the_kernel_and_says_so() {
    let prog = load(SteerPorts::SERVER);
    // With no AF_XDP socket in the map, bpf_redirect_map returns the XDP_PASS fallback: the frame
    // goes to the kernel and `pass_no_socket` (not `pass_other_port`) shows it was DHCP.
    expect(
        &prog,
        "DHCPv4",
        &dhcp4(None),
        XDP_PASS,
        Counter::PassNoSocket,
    );
    expect(
        &prog,
        "DHCPv4 in 802.1Q",
        &dhcp4(Some(42)),
        XDP_PASS,
        Counter::PassNoSocket,
    );
    expect(
        &prog,
        "DHCPv6",
        &dhcp6(&[]),
        XDP_PASS,
        Counter::PassNoSocket,
    );
    expect(
        &prog,
        "DHCPv6 after hop-by-hop and destination options",
        &dhcp6(&[(0, 8), (60, 16)]),
        XDP_PASS,
        Counter::PassNoSocket,
    );
}

#[test]
fn everything_that_is_not_dhcp_passes_with_its_reason() {
    let prog = load(SteerPorts::SERVER);
    let a = Ipv4Addr::new(10, 0, 0, 1);
    let b = Ipv4Addr::new(10, 0, 0, 2);

    // ARP request.
    let mut arp = eth(BROADCAST, MAC_A, None, 0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    expect(&prog, "ARP", &arp, XDP_PASS, Counter::PassNotIp);

    // TCP to port 67 is not DHCP.
    let mut tcp = eth(MAC_B, MAC_A, None, 0x0800);
    tcp.extend_from_slice(&ipv4_header(a, b, 6, 20, 0));
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
    seg[2..4].copy_from_slice(&67u16.to_be_bytes());
    seg[12] = 0x50;
    tcp.extend_from_slice(&seg);
    expect(&prog, "TCP to 67", &tcp, XDP_PASS, Counter::PassNotUdp);

    // UDP to another port (DNS), and to the client port 68 (we are the server).
    expect(
        &prog,
        "UDP 53",
        &udp4_frame(MAC_B, MAC_A, None, a, b, 40000, 53, b"q"),
        XDP_PASS,
        Counter::PassOtherPort,
    );
    expect(
        &prog,
        "UDP 68",
        &udp4_frame(MAC_B, MAC_A, None, a, b, 67, 68, b"r"),
        XDP_PASS,
        Counter::PassOtherPort,
    );
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    expect(
        &prog,
        "UDPv6 53",
        &udp6_frame(v6, v6, 1000, 53, b"q", &[]),
        XDP_PASS,
        Counter::PassOtherPort,
    );

    // IPv4 fragments, first (MF) and later (offset), even towards port 67.
    expect(
        &prog,
        "IPv4 first fragment",
        &with_ipv4_frag(dhcp4(None), 0x2000),
        XDP_PASS,
        Counter::PassFragment,
    );
    expect(
        &prog,
        "IPv4 later fragment",
        &with_ipv4_frag(dhcp4(None), 0x0010),
        XDP_PASS,
        Counter::PassFragment,
    );
    // DF alone is not a fragment: still DHCP.
    expect(
        &prog,
        "IPv4 DF",
        &with_ipv4_frag(dhcp4(None), 0x4000),
        XDP_PASS,
        Counter::PassNoSocket,
    );
    // IPv6 fragment header.
    expect(
        &prog,
        "IPv6 fragment",
        &dhcp6(&[(44, 8)]),
        XDP_PASS,
        Counter::PassFragment,
    );
    // ESP is unusual: passed and counted apart.
    expect(
        &prog,
        "IPv6 ESP",
        &dhcp6(&[(50, 8)]),
        XDP_PASS,
        Counter::PassIpv6Ext,
    );
    // A chain longer than the program walks.
    expect(
        &prog,
        "IPv6 long chain",
        &dhcp6(&[(0, 8), (60, 8), (60, 8), (60, 8), (60, 8)]),
        XDP_PASS,
        Counter::PassIpv6Ext,
    );

    // QinQ (two tags) is not steered.
    let mut qinq = eth(BROADCAST, MAC_A, None, 0x88a8);
    qinq.extend_from_slice(&[0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
    qinq.extend_from_slice(&dhcp4(None)[14..]);
    expect(&prog, "QinQ", &qinq, XDP_PASS, Counter::PassVlanUnsupported);

    // Malformed IPv4 header length.
    let mut bad = dhcp4(None);
    bad[14] = 0x44;
    expect(&prog, "IHL 4", &bad, XDP_PASS, Counter::PassBadIp);
}

#[test]
fn truncated_frames_pass_as_too_short() {
    let prog = load(SteerPorts::SERVER);
    let full = dhcp4(None);
    // Ethernet header only, announcing IPv4 (the kernel's test run needs at least 14 bytes).
    expect(
        &prog,
        "Ethernet only",
        &full[..14],
        XDP_PASS,
        Counter::PassTooShort,
    );
    // IPv4 header cut in the middle.
    expect(
        &prog,
        "half an IPv4 header",
        &full[..24],
        XDP_PASS,
        Counter::PassTooShort,
    );
    // UDP header cut.
    expect(
        &prog,
        "half a UDP header",
        &full[..38],
        XDP_PASS,
        Counter::PassTooShort,
    );
    // VLAN tag cut.
    expect(
        &prog,
        "half a VLAN tag",
        &dhcp4(Some(7))[..16],
        XDP_PASS,
        Counter::PassTooShort,
    );
    // IPv6 header cut, and an extension header cut.
    let v6 = dhcp6(&[(0, 8)]);
    expect(
        &prog,
        "half an IPv6 header",
        &v6[..30],
        XDP_PASS,
        Counter::PassTooShort,
    );
    expect(
        &prog,
        "IPv6 ext header cut",
        &v6[..55],
        XDP_PASS,
        Counter::PassTooShort,
    );
}

#[test]
fn with_a_socket_in_the_map_dhcp_is_redirected() {
    // A real AF_XDP socket must be bound to an interface before the XSKMAP accepts it.
    let lab = Lab::new("pr", 1);
    lab.srv.run(|| {
        let prog = &mut load(SteerPorts::SERVER);
        let ifindex = sys::ifindex(SRV_IF).expect("veth exists in the namespace");
        let sock = XskSocket::new(ifindex, 0, &XskConfig::new(64, 256)).expect("AF_XDP socket");
        prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
            .expect("XSKMAP update");
        expect(
            prog,
            "DHCPv4",
            &dhcp4(None),
            XDP_REDIRECT,
            Counter::SteeredV4,
        );
        expect(
            prog,
            "DHCPv4 in 802.1Q",
            &dhcp4(Some(42)),
            XDP_REDIRECT,
            Counter::SteeredV4,
        );
        expect(
            prog,
            "DHCPv6",
            &dhcp6(&[]),
            XDP_REDIRECT,
            Counter::SteeredV6,
        );
        expect(
            prog,
            "DHCPv6 behind a routing header",
            &dhcp6(&[(43, 24)]),
            XDP_REDIRECT,
            Counter::SteeredV6,
        );
        // Non-DHCP still passes with a socket present.
        let dns = udp4_frame(MAC_B, MAC_A, None, CLI_IP, SRV_IP, 5000, 53, b"q");
        expect(prog, "UDP 53", &dns, XDP_PASS, Counter::PassOtherPort);
    });
}

#[test]
fn client_ports_can_be_steered_instead() {
    // The load generator reuses the program on the client side (68/546).
    let prog = load(SteerPorts::CLIENT);
    let reply = udp4_frame(MAC_A, MAC_B, None, SRV_IP, CLI_IP, 67, 68, &dhcp4_payload());
    expect(
        &prog,
        "DHCPv4 reply to 68",
        &reply,
        XDP_PASS,
        Counter::PassNoSocket,
    );
    expect(
        &prog,
        "request to 67",
        &dhcp4(None),
        XDP_PASS,
        Counter::PassOtherPort,
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Whatever the bytes (random mutations of DHCP frames, cut anywhere), the program passes
    /// the frame (no socket in the map) and counts it exactly once.
    #[test]
    fn any_frame_is_passed_and_counted_once(
        base in 0usize..3,
        flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..8),
        cut in 14usize..400,
    ) {
        thread_local! {
            static PROG: XdpProgram = load(SteerPorts::SERVER);
        }
        let mut f = match base {
            0 => dhcp4(None),
            1 => dhcp4(Some(5)),
            _ => dhcp6(&[(0, 8)]),
        };
        for (at, v) in flips {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        f.truncate(cut.max(14));
        PROG.with(|prog| {
            let before = prog.counters().unwrap();
            let action = prog.test_run(&f).unwrap();
            let delta = prog.counters().unwrap().since(&before);
            proptest::prop_assert_eq!(action, XDP_PASS);
            proptest::prop_assert_eq!(delta.0.iter().sum::<u64>(), 1, "{:?}", delta);
            proptest::prop_assert_eq!(delta.get(Counter::SteeredV4) + delta.get(Counter::SteeredV6), 0);
            Ok(())
        })?;
    }
}
