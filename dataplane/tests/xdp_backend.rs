//! The AF_XDP backend for real, in network namespaces on veth pairs in native XDP mode: a test
//! handler answers UDP to port 67 with a reply built in the UMEM, a kernel socket in the peer
//! namespace must receive it (so its checksums are valid), other traffic must still reach the
//! kernel, two rx queues must both be served, the program must be gone after stop, stale
//! programs must be replaced and foreign ones refused, and bad interfaces must give clear errors.
//! Needs root, iproute2 and clang (for the foreign-program case).
#![cfg(feature = "xdp")]

mod xdp_common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdhcp_dataplane::backend::xdp::loader::{
    AttachMode, AttachedMode, Counter, LoaderError, SteerPorts, XdpProgram, XDHCP_BPF_OBJ,
};
use xdhcp_dataplane::backend::xdp::{sys, XdpBackend, XdpBackendConfig, XdpError};
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdp_common::*;

/// Answers every UDP/IPv4 frame with "echo:" + its payload, counting what it answered.
struct Echo {
    answered: Arc<AtomicU64>,
    ticks: Arc<AtomicU64>,
}

impl FrameHandler for Echo {
    fn handle_frame(
        &mut self,
        _now: Now,
        ctx: &RxContext,
        rx: &[u8],
        tx: &mut [u8],
    ) -> Option<usize> {
        let n = echo_reply(rx, ctx.if_mac, b"echo:", tx)?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(n)
    }

    fn tick(&mut self, _now: Now) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

struct Counts {
    answered: Vec<Arc<AtomicU64>>,
    ticks: Vec<Arc<AtomicU64>>,
}

impl Counts {
    fn new(workers: usize) -> Counts {
        Counts {
            answered: (0..workers).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            ticks: (0..workers).map(|_| Arc::new(AtomicU64::new(0))).collect(),
        }
    }
}

fn config(mode: AttachMode) -> XdpBackendConfig {
    let mut cfg = XdpBackendConfig::new(vec![SRV_IF.to_string()], 256, 1024);
    cfg.attach_mode = mode;
    // Short spin: these tests share two cores with the client threads.
    cfg.idle_spin = std::time::Duration::from_micros(5);
    cfg.poll_timeout_ms = 20;
    cfg
}

/// Starts the echo backend inside the server namespace.
fn start(lab: &Lab, cfg: &XdpBackendConfig, counts: &Counts) -> Result<XdpBackend, XdpError> {
    let answered = counts.answered.clone();
    let ticks = counts.ticks.clone();
    lab.srv.run(move || {
        let make = move |w: usize| -> Box<dyn FrameHandler> {
            Box::new(Echo {
                answered: Arc::clone(&answered[w]),
                ticks: Arc::clone(&ticks[w]),
            })
        };
        XdpBackend::start(cfg, &make)
    })
}

/// Sends `payload` to the server's port and waits for one reply; retries (the first datagram
/// also waits for ARP). Returns the reply payload.
fn exchange(sock: &UdpSocket, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = SocketAddr::V4(SocketAddrV4::new(SRV_IP, port));
    let mut buf = [0u8; 2048];
    for _ in 0..6 {
        sock.send_to(payload, to)
            .expect("send from the client namespace");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from, to, "reply comes from the server address and port");
            return Some(buf[..n].to_vec());
        }
    }
    None
}

#[test]
fn echoes_dhcp_port_through_af_xdp_and_keeps_other_traffic_in_the_kernel() {
    let lab = Lab::new("ec", 1);
    let counts = Counts::new(1);
    let backend = start(&lab, &config(AttachMode::Native), &counts).expect("backend starts");
    assert_eq!(
        backend.attached(),
        vec![(SRV_IF.to_string(), AttachedMode::Native)]
    );
    assert_eq!(backend.queues().len(), 1);
    assert!(!backend.queues()[0].zero_copy, "veth has no zero-copy");
    // The NIC's multicast filter must let DHCPv6 (ff02::1:2) in although no socket listens on 547.
    let maddr = lab.srv.ip(&["-6", "maddr", "show", "dev", SRV_IF]);
    assert!(
        maddr.contains("ff02::1:2"),
        "joined All_DHCP_Relay_Agents_and_Servers: {maddr}"
    );
    assert!(
        lab.srv_xdp_state().contains("xdp"),
        "ip link shows the program: {}",
        lab.srv_xdp_state()
    );

    // A kernel UDP server on another port in the server namespace.
    let kernel_srv = lab
        .srv
        .run(|| UdpSocket::bind((SRV_IP, 9999)).expect("bind 9999"));
    kernel_srv
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let kernel_rx = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, _) = kernel_srv
            .recv_from(&mut buf)
            .expect("the kernel still receives UDP 9999");
        buf[..n].to_vec()
    });

    lab.cli.run(|| {
        let csum_errors = udp_snmp("InCsumErrors");
        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
        for i in 0..20u32 {
            let msg = format!("hello {i}");
            let reply = exchange(&sock, 67, msg.as_bytes()).expect("a reply through AF_XDP");
            assert_eq!(reply, format!("echo:{msg}").into_bytes());
        }
        // The kernel verifies the UDP checksum of frames from AF_XDP TX (no offload on that
        // path): a bad one would be dropped and counted here.
        assert_eq!(
            udp_snmp("InCsumErrors"),
            csum_errors,
            "replies carry valid UDP checksums"
        );
        sock.send_to(b"not dhcp", (SRV_IP, 9999)).unwrap();
    });
    assert_eq!(kernel_rx.join().unwrap(), b"not dhcp");
    assert!(
        lab.cli.run(|| ping(SRV_IP)),
        "ping (ICMP) reaches the server's kernel"
    );

    let stats = backend.stats().unwrap();
    let (ref info, q) = stats.queues[0];
    assert_eq!(info.iface, SRV_IF);
    assert!(q.rx_frames >= 20 && q.replies >= 20, "{q:?}");
    assert_eq!(counts.answered[0].load(Ordering::Relaxed), q.replies);
    let prog = stats.programs[0].1;
    assert!(prog.get(Counter::SteeredV4) >= 20, "{prog:?}");
    assert!(prog.get(Counter::PassOtherPort) >= 1, "{prog:?}");
    assert!(
        prog.get(Counter::PassNotIp) >= 1,
        "ARP went to the kernel: {prog:?}"
    );
    assert_eq!(prog.get(Counter::PassNoSocket), 0, "{prog:?}");
    assert!(counts.ticks[0].load(Ordering::Relaxed) >= 1, "tick ran");

    // The same counters as statistic-get-all lists them: socket (kernel and worker) and XDP
    // program, per queue / interface and summed, so drops are attributable by name.
    let mut listed = Vec::new();
    backend.stats_source().collect(&mut listed);
    let get = |name: &str| -> u64 {
        listed
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} listed: {listed:?}"))
            .1
    };
    let q0 = format!("xsk[{SRV_IF}/0]");
    assert!(get(&format!("{q0}.rx-frames")) >= 20);
    assert!(get(&format!("{q0}.replies")) >= q.replies);
    assert_eq!(get("xdhcp-xsk-rx-frames"), get(&format!("{q0}.rx-frames")));
    assert!(
        get("xdhcp-xsk-tx-wakeups") >= 1,
        "replies were kicked out with sendto"
    );
    for kernel in [
        "rx-dropped",
        "rx-invalid-descs",
        "tx-invalid-descs",
        "rx-ring-full",
        "rx-fill-ring-empty-descs",
    ] {
        // 20 paced request/reply exchanges lose nothing in the socket.
        assert_eq!(
            get(&format!("xdhcp-xsk-{kernel}")),
            0,
            "{kernel}: {listed:?}"
        );
    }
    // Not a drop: how often a TX wakeup found the ring already drained (listed for tuning).
    let _ = get("xdhcp-xsk-tx-ring-empty-descs");
    let steered = get(&format!("xdp[{SRV_IF}].steered-v4"));
    assert!(steered >= 20, "{listed:?}");
    assert_eq!(get("xdhcp-xdp-steered-v4"), steered);
    assert_eq!(
        steered,
        get("xdhcp-xsk-rx-frames") + get("xdhcp-xsk-rx-dropped") + get("xdhcp-xsk-rx-ring-full"),
        "every steered frame reached the worker or is counted as a socket drop"
    );
    assert!(get("xdhcp-xdp-pass-not-ip") >= 1, "ARP passed: {listed:?}");
    assert!(get("xdhcp-xdp-pass-other-port") >= 1);
    // Registered with the engine's statistics, they follow its listing.
    let engine_stats = xdhcp_dataplane::engine::stats::Stats::default();
    engine_stats.add_source(backend.stats_source());
    let snap = engine_stats.snapshot();
    assert!(snap
        .iter()
        .any(|(n, v)| n == "xdhcp-xdp-steered-v4" && *v == steered));

    backend.stop().expect("clean stop");
    assert_eq!(lab.srv_xdp_state(), "", "no XDP program left after stop");
    assert!(
        !lab.srv
            .ip(&["-6", "maddr", "show", "dev", SRV_IF])
            .contains("ff02::1:2"),
        "group left on stop"
    );
    // With the program gone, port 67 belongs to the kernel again (nothing listens: no reply).
    lab.cli.run(|| {
        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        sock.send_to(b"x", (SRV_IP, 67)).unwrap();
        assert!(
            sock.recv_from(&mut [0u8; 64]).is_err(),
            "no AF_XDP answer after stop"
        );
    });
}

#[test]
fn two_rx_queues_are_each_served_by_their_own_worker() {
    let lab = Lab::new("mq", 2);
    // veth has no RSS: in native mode the rx queue is the peer's tx queue, chosen per CPU by XPS.
    lab.cli.exec("sh", &["-c", "echo 1 > /sys/class/net/xdc0/queues/tx-0/xps_cpus && echo 2 > /sys/class/net/xdc0/queues/tx-1/xps_cpus"]);
    let counts = Counts::new(2);
    let backend = start(&lab, &config(AttachMode::Native), &counts).expect("backend starts");
    let queues = backend.queues();
    assert_eq!(
        queues.iter().map(|q| q.queue).collect::<Vec<_>>(),
        vec![0, 1]
    );

    let per_thread: Vec<u32> = lab.cli.run(|| {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2usize)
                .map(|cpu| {
                    s.spawn(move || {
                        sys::pin_current_thread(cpu).expect("pin client thread (needs 2 CPUs)");
                        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
                        let mut ok = 0;
                        for i in 0..50 {
                            let msg = format!("cpu{cpu} {i}");
                            if exchange(&sock, 67, msg.as_bytes())
                                == Some(format!("echo:{msg}").into_bytes())
                            {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    });
    assert_eq!(per_thread, vec![50, 50], "every request answered");
    // A worker counts a reply after handing it to the TX ring, so the client can see the last
    // replies before the counters do: give them a moment to settle.
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let stats = loop {
        let s = backend.stats().unwrap();
        let total: u64 = s.queues.iter().map(|(_, q)| q.replies).sum();
        if total >= 100 || std::time::Instant::now() > settle {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    for (info, q) in &stats.queues {
        assert!(
            q.rx_frames > 0 && q.replies > 0,
            "queue {} got traffic and answered: {q:?}",
            info.queue
        );
        assert!(
            counts.answered[info.worker].load(Ordering::Relaxed) > 0,
            "worker {} answered",
            info.worker
        );
    }
    let total: u64 = stats.queues.iter().map(|(_, q)| q.replies).sum();
    assert!(total >= 100);
    backend.stop().unwrap();
    assert_eq!(lab.srv_xdp_state(), "");
}

fn write_obj(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".o").tempfile().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

#[test]
fn a_stale_program_attached_by_netlink_is_replaced() {
    let lab = Lab::new("sn", 1);
    // What a crashed run (or an older version) attached through netlink stays after its exit.
    let obj = write_obj(XDHCP_BPF_OBJ);
    lab.srv.ip(&[
        "link",
        "set",
        "dev",
        SRV_IF,
        "xdpgeneric",
        "obj",
        obj.path().to_str().unwrap(),
        "sec",
        "xdp",
    ]);
    assert!(
        lab.srv_xdp_state().contains("xdpgeneric"),
        "{}",
        lab.srv_xdp_state()
    );

    let counts = Counts::new(1);
    let backend =
        start(&lab, &config(AttachMode::Native), &counts).expect("replaces the stale program");
    let state = lab.srv_xdp_state();
    assert!(
        state.contains("xdp") && !state.contains("xdpgeneric"),
        "now native: {state}"
    );
    lab.cli.run(|| {
        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
        assert_eq!(
            exchange(&sock, 67, b"after").as_deref(),
            Some(&b"echo:after"[..])
        );
    });
    backend.stop().unwrap();
    assert_eq!(lab.srv_xdp_state(), "");
}

#[test]
fn a_leaked_link_is_replaced() {
    let lab = Lab::new("sl", 1);
    lab.srv.run(|| {
        // A bpf_link whose owner never released it (here: forgotten, so its fd stays open).
        let mut p = XdpProgram::load(1, SteerPorts::SERVER).unwrap();
        let ifindex = sys::ifindex(SRV_IF).unwrap();
        assert_eq!(
            p.attach(SRV_IF, ifindex, AttachMode::Native).unwrap(),
            AttachedMode::Native
        );
        std::mem::forget(p);
    });
    assert!(lab.srv_xdp_state().contains("xdp"));

    let counts = Counts::new(1);
    let backend =
        start(&lab, &config(AttachMode::Native), &counts).expect("replaces the leaked link");
    lab.cli.run(|| {
        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
        assert_eq!(
            exchange(&sock, 67, b"again").as_deref(),
            Some(&b"echo:again"[..])
        );
    });
    backend.stop().unwrap();
    assert_eq!(lab.srv_xdp_state(), "");
}

#[test]
fn a_foreign_program_is_not_replaced() {
    let lab = Lab::new("sf", 1);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("other.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int other_prog(struct xdp_md *c) { return XDP_PASS; }\n\
         char _license[] SEC(\"license\") = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.path().join("other.o");
    let out = std::process::Command::new("clang")
        .args([
            "-O2",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("this test needs the Debian packages clang and libbpf-dev");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.srv.ip(&[
        "link",
        "set",
        "dev",
        SRV_IF,
        "xdpgeneric",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "xdp",
    ]);

    let err = start(&lab, &config(AttachMode::Auto), &Counts::new(1)).expect_err("must refuse");
    match &err {
        XdpError::Loader(LoaderError::ForeignProgram { name, .. }) => {
            assert_eq!(name, "other_prog")
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("other_prog") && msg.contains("ip link set dev xds0 xdp off"),
        "{msg}"
    );
    assert!(
        lab.srv_xdp_state().contains("xdpgeneric"),
        "the foreign program is untouched"
    );
}

#[test]
fn bad_interfaces_give_clear_errors() {
    let lab = Lab::new("er", 1);
    let counts = Counts::new(1);

    let mut cfg = config(AttachMode::Auto);
    cfg.interfaces = vec!["xdnosuch0".to_string()];
    let err = start(&lab, &cfg, &counts).expect_err("unknown interface");
    assert!(
        matches!(err, XdpError::UnknownInterface(ref n) if n == "xdnosuch0"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("interface `xdnosuch0` does not exist"),
        "{err}"
    );

    cfg.interfaces = vec![SRV_IF.to_string(), SRV_IF.to_string()];
    let err = start(&lab, &cfg, &counts).expect_err("duplicate interface");
    assert!(err.to_string().contains("listed twice"), "{err}");

    cfg.interfaces = vec![SRV_IF.to_string()];
    cfg.ring_size = 1000;
    let err = start(&lab, &cfg, &counts).expect_err("ring size not a power of two");
    assert!(matches!(err, XdpError::Config(_)), "{err:?}");
    cfg.ring_size = 256;

    cfg.interfaces.clear();
    let err = start(&lab, &cfg, &counts).expect_err("no interface");
    assert!(matches!(err, XdpError::NoInterfaces), "{err:?}");

    lab.srv.ip(&["link", "set", "dev", SRV_IF, "mtu", "9000"]);
    let err = start(&lab, &config(AttachMode::Auto), &counts).expect_err("MTU too large");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            XdpError::MtuTooLarge {
                mtu: 9000,
                max: 1774,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("MTU 9000") && msg.contains("ip link set dev xds0 mtu 1774"),
        "{msg}"
    );
    assert_eq!(
        lab.srv_xdp_state(),
        "",
        "nothing attached after a failed start"
    );
}

#[test]
fn generic_mode_works_when_asked_for() {
    let lab = Lab::new("gm", 1);
    let counts = Counts::new(1);
    let backend = start(&lab, &config(AttachMode::Generic), &counts).expect("backend starts");
    assert_eq!(
        backend.attached(),
        vec![(SRV_IF.to_string(), AttachedMode::Generic)]
    );
    assert!(
        lab.srv_xdp_state().contains("xdpgeneric"),
        "{}",
        lab.srv_xdp_state()
    );
    lab.cli.run(|| {
        let sock = UdpSocket::bind((CLI_IP, 0)).unwrap();
        assert_eq!(
            exchange(&sock, 67, b"skb").as_deref(),
            Some(&b"echo:skb"[..])
        );
    });
    backend.stop().unwrap();
    assert_eq!(lab.srv_xdp_state(), "");
}

#[test]
fn run_serves_several_interfaces_until_stopped() {
    let lab = Lab::new("mi", 1);
    // A second pair between the same namespaces, on another subnet.
    lab.srv.ip(&[
        "link",
        "add",
        "xds1",
        "type",
        "veth",
        "peer",
        "name",
        "xdc1",
        "netns",
        &lab.cli.name,
    ]);
    lab.srv.ip(&["addr", "add", "10.78.0.1/24", "dev", "xds1"]);
    lab.cli.ip(&["addr", "add", "10.78.0.2/24", "dev", "xdc1"]);
    lab.srv.ip(&["link", "set", "xds1", "up"]);
    lab.cli.ip(&["link", "set", "xdc1", "up"]);

    let mut cfg = config(AttachMode::Native);
    cfg.interfaces = vec![SRV_IF.to_string(), "xds1".to_string()];
    let counts = Counts::new(2);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stats_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = {
        let (stop, stats_seen) = (Arc::clone(&stop), Arc::clone(&stats_seen));
        let (answered, ticks) = (counts.answered.clone(), counts.ticks.clone());
        lab.srv.spawn(move || {
            let make = move |w: usize| -> Box<dyn FrameHandler> {
                Box::new(Echo {
                    answered: Arc::clone(&answered[w]),
                    ticks: Arc::clone(&ticks[w]),
                })
            };
            let mut on_stats = |s: &xdhcp_dataplane::backend::xdp::XdpStats| {
                stats_seen.lock().unwrap().push(s.clone())
            };
            xdhcp_dataplane::backend::xdp::run(&cfg, &make, &stop, &mut on_stats)
        })
    };
    // Wait for both attachments (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lab.srv.ip(&["link", "show", "dev", "xds1"]).contains("xdp") {
        assert!(
            std::time::Instant::now() < deadline,
            "backend did not attach"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.cli.run(|| {
        let a = UdpSocket::bind((CLI_IP, 0)).unwrap();
        assert_eq!(exchange(&a, 67, b"one").as_deref(), Some(&b"echo:one"[..]));
        let b = UdpSocket::bind(("10.78.0.2", 0)).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = None;
        for _ in 0..6 {
            b.send_to(b"two", ("10.78.0.1", 67)).unwrap();
            let mut buf = [0u8; 64];
            if let Ok((n, _)) = b.recv_from(&mut buf) {
                got = Some(buf[..n].to_vec());
                break;
            }
        }
        assert_eq!(got.as_deref(), Some(&b"echo:two"[..]));
    });
    std::thread::sleep(Duration::from_millis(1200)); // at least one statistics callback
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap().expect("run returns cleanly");

    assert!(
        counts
            .answered
            .iter()
            .all(|a| a.load(Ordering::Relaxed) >= 1),
        "each interface's worker answered"
    );
    let seen = stats_seen.lock().unwrap();
    let last = seen.last().expect("on_stats was called");
    let ifaces: Vec<&str> = last.queues.iter().map(|(q, _)| q.iface.as_str()).collect();
    assert_eq!(ifaces, vec![SRV_IF, "xds1"]);
    assert_eq!(last.programs.len(), 2);
    assert_eq!(lab.srv_xdp_state(), "");
    assert!(
        !lab.srv.ip(&["link", "show", "dev", "xds1"]).contains("xdp"),
        "both detached"
    );
}

#[test]
fn dhcpv6_to_the_multicast_group_reaches_the_worker() {
    let lab = Lab::new("v6", 1);
    let counts = Counts::new(1);
    let backend = start(&lab, &config(AttachMode::Native), &counts).expect("backend starts");
    let cli_ifindex = lab.cli.run(|| sys::ifindex(CLI_IF).unwrap());
    lab.cli.run(|| {
        let sock = UdpSocket::bind("[::]:0").unwrap();
        let to = std::net::SocketAddrV6::new(
            sys::ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
            547,
            0,
            cli_ifindex,
        );
        // The link-local source address is usable once duplicate address detection is over.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let sent = sock.send_to(&[1, 0, 0, 1], to).is_ok();
            std::thread::sleep(Duration::from_millis(100));
            let s = backend.stats().unwrap();
            if sent && s.programs[0].1.get(Counter::SteeredV6) >= 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no DHCPv6 steered: {s:?}"
            );
        }
    });
    let s = backend.stats().unwrap();
    let q = s.queues[0].1;
    // The echo handler answers only IPv4, so the v6 request shows as received without a reply.
    assert!(q.rx_frames >= 1 && q.no_reply >= 1, "{q:?}");
    backend.stop().unwrap();
}

/// Takes `cpu` from everything else for `spin` with a real-time thread, as a kernel thread that
/// cannot be preempted or the hypervisor would.
fn take_cpu(cpu: usize, spin: Duration) {
    std::thread::spawn(move || {
        sys::pin_current_thread(cpu).expect("pin the real-time thread");
        let p = libc::sched_param { sched_priority: 1 };
        // SAFETY: sets this thread's own policy from a parameter we own.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) };
        assert_eq!(
            r,
            0,
            "SCHED_FIFO needs root: {}",
            std::io::Error::last_os_error()
        );
        let t = std::time::Instant::now();
        while t.elapsed() < spin {
            std::hint::spin_loop();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_worker_that_loses_its_core_while_polling_counts_a_stall_and_its_own_sleep_is_none() {
    let lab = Lab::new("st", 1);
    let counts = Counts::new(1);
    let stalls = |b: &XdpBackend| {
        let q = b.stats().unwrap().queues[0].1;
        (q.worker_stalls, q.worker_stalled_us)
    };

    // Idle with short spins and long sleeps in poll: sleeping is the worker's own choice.
    let mut cfg = config(AttachMode::Native);
    cfg.poll_timeout_ms = 200;
    let backend = start(&lab, &cfg, &counts).expect("backend starts");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(stalls(&backend), (0, 0), "poll sleeps are not stalls");
    backend.stop().unwrap();

    // Busy-polling (as under load) while something else takes its core three times for 5 ms.
    let mut cfg = config(AttachMode::Native);
    cfg.idle_spin = Duration::from_secs(600);
    let backend = start(&lab, &cfg, &counts).expect("backend starts");
    let cpu = backend.queues()[0].cpu;
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        take_cpu(cpu, Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (n, us) = stalls(&backend);
    assert!(n >= 3, "three 5 ms losses of the core, {n} stalls counted");
    assert!(us >= 15_000, "at least 15 ms stalled, {us} µs counted");
    // The totals reach the statistics the control socket lists.
    let mut out = Vec::new();
    xdhcp_dataplane::engine::stats::StatsSource::collect(&*backend.stats_source(), &mut out);
    let get = |name: &str| out.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert_eq!(get("xdhcp-xsk-worker-stalls"), Some(n));
    assert_eq!(get("xdhcp-xsk-worker-stalled-us"), Some(us));
    backend.stop().unwrap();
}
