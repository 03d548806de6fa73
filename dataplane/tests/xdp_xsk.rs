//! The reusable `xsk` module on its own, the way the echo responder and the load generator use
//! it: load the program, put a socket in the XSKMAP, attach, then drive the rings by hand and
//! answer in place (the request frame is rewritten and sent back without a copy). Needs root.
#![cfg(feature = "xdp")]

mod xdp_common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use xdhcp_dataplane::backend::xdp::loader::{AttachMode, AttachedMode, SteerPorts, XdpProgram};
use xdhcp_dataplane::backend::xdp::sys;
use xdhcp_dataplane::backend::xdp::xsk::{XdpDesc, XskConfig, XskSocket};
use xdp_common::*;

/// Swaps addresses and ports of a UDP/IPv4 frame in place and recomputes the UDP checksum.
/// Swapping alone would keep a valid checksum valid, but frames a kernel socket sent over veth
/// carry CHECKSUM_PARTIAL (only the pseudo-header sum is in the field), so an echo must always
/// write the full checksum. Returns false if not UDP/IPv4.
fn swap_in_place(f: &mut [u8]) -> bool {
    if parse_udp4(f).is_none() {
        return false;
    }
    let (dst, src) = f.split_at_mut(6);
    dst.swap_with_slice(&mut src[..6]);
    let (a, b) = f[26..34].split_at_mut(4);
    a.swap_with_slice(b);
    let l4 = 14 + usize::from(f[14] & 0xf) * 4;
    let (a, b) = f[l4..l4 + 4].split_at_mut(2);
    a.swap_with_slice(b);
    let udp_len = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let Some(udp) = f.get_mut(l4..l4 + udp_len) else {
        return false;
    };
    udp[6..8].copy_from_slice(&[0, 0]);
    let c = udp4_checksum(src, dst, udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    true
}

/// Loads the program, binds an AF_XDP socket (64-entry rings, 256 frames) to queue 0 of the
/// server's veth and attaches in native mode. Keep the program alive while the socket is used.
fn bound_socket() -> (XdpProgram, XskSocket) {
    let ifindex = sys::ifindex(SRV_IF).unwrap();
    let mut prog = XdpProgram::load(1, SteerPorts::SERVER).unwrap();
    let sock = XskSocket::new(ifindex, 0, &XskConfig::new(64, 256)).unwrap();
    prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
        .unwrap();
    assert_eq!(
        prog.attach(SRV_IF, ifindex, AttachMode::Native).unwrap(),
        AttachedMode::Native
    );
    (prog, sock)
}

/// Waits (2 s at most) until every frame but the fill ring's 64 is back in the pool: sent frames
/// come home through the completion ring.
fn wait_frames_home(sock: &mut XskSocket, free_at_start: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while sock.free_frames() + 64 < free_at_start && Instant::now() < deadline {
        sock.tx_flush();
        sock.reclaim();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The client side: sends `<word> N` to the server's port 67 until ten came back unchanged.
fn ten_round_trips(word: &str) {
    let s = UdpSocket::bind((CLI_IP, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 128];
    let deadline = Instant::now() + Duration::from_secs(4);
    while got < 10 && Instant::now() < deadline {
        s.send_to(format!("{word} {got}").as_bytes(), (SRV_IP, 67))
            .unwrap();
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            assert_eq!(from.port(), 67);
            assert_eq!(&buf[..n], format!("{word} {got}").as_bytes());
            got += 1;
        }
    }
    assert_eq!(got, 10, "every reply arrived with valid checksums");
}

#[test]
fn in_place_echo_with_the_xsk_module() {
    let lab = Lab::new("xk", 1);
    let server = lab.srv.spawn(|| {
        let (_prog, mut sock) = bound_socket();
        let free_at_start = sock.free_frames();

        let mut descs = [XdpDesc::default(); 16];
        let mut echoed = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while echoed < 10 && Instant::now() < deadline {
            sock.poll_rx(50).unwrap();
            let n = sock.recv(&mut descs);
            for d in &descs[..n] {
                if swap_in_place(sock.rx_frame_mut(d)) && sock.tx_push_in_place(d).is_ok() {
                    echoed += 1;
                } else {
                    sock.release_rx(d);
                }
            }
            sock.tx_flush();
            sock.refill();
        }
        wait_frames_home(&mut sock, free_at_start);
        let c = sock.counters();
        (echoed, c, sock.kernel_stats().unwrap(), sock.is_zero_copy())
    });

    lab.cli.run(|| ten_round_trips("ping"));
    let (echoed, counters, kstats, zc) = server.join().unwrap();
    assert!(echoed >= 10);
    assert!(!zc, "veth: copy mode");
    assert_eq!(
        counters.tx_ring_full + counters.tx_no_frame,
        0,
        "{counters:?}"
    );
    assert!(
        counters.tx_wakeups >= 1,
        "copy-mode TX needs sendto wakeups: {counters:?}"
    );
    assert_eq!(
        kstats.rx_invalid_descs + kstats.tx_invalid_descs,
        0,
        "{kstats:?}"
    );
}

/// Replies built in allocated frames (the xdhcp worker's way): once the kernel has sent a reply,
/// the next reply goes into that same frame (the TX pool is LIFO and kept apart from RX frames,
/// which the kernel wrote on another CPU in copy mode), and no frame is lost either way.
#[test]
fn replies_reuse_the_frame_the_kernel_just_sent() {
    let lab = Lab::new("xt", 1);
    let server = lab.srv.spawn(|| {
        let (_prog, mut sock) = bound_socket();
        let free_at_start = sock.free_frames();
        let mut descs = [XdpDesc::default(); 16];
        let mut sent_from = Vec::new();
        let mut reused = 0;
        let mut rx_frames = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sent_from.len() < 10 && Instant::now() < deadline {
            sock.poll_rx(50).unwrap();
            let n = sock.recv(&mut descs);
            for d in &descs[..n] {
                rx_frames.push(sock.rx_as_frame(d).addr());
                let tx = sock.alloc_frame().expect("a free frame");
                if sent_from.last() == Some(&tx.addr()) {
                    reused += 1;
                }
                let (req, out) = sock.rx_and_tx(d, tx);
                let len = req.len();
                out[..len].copy_from_slice(req);
                let ok = swap_in_place(&mut out[..len]);
                sock.release_rx(d);
                if ok && sock.tx_push(tx, len as u32).is_ok() {
                    sent_from.push(tx.addr());
                    // Wait until the kernel has sent it and the frame is back in the pool.
                    let out = sock.free_frames();
                    let t = Instant::now() + Duration::from_secs(1);
                    while sock.free_frames() == out && Instant::now() < t {
                        sock.tx_flush();
                        sock.reclaim();
                    }
                } else {
                    sock.free_frame(tx);
                }
            }
            sock.tx_flush();
            sock.refill();
        }
        wait_frames_home(&mut sock, free_at_start);
        // Frames lent to the fill ring are not free: 64 of them (the ring) at most.
        let lost = free_at_start.saturating_sub(sock.free_frames() + 64);
        (sent_from, reused, rx_frames, lost, sock.counters())
    });
    lab.cli.run(|| ten_round_trips("pong"));
    let (sent_from, reused, rx_frames, lost, counters) = server.join().unwrap();
    assert_eq!(sent_from.len(), 10, "{counters:?}");
    assert_eq!(
        reused, 9,
        "each reply after the first reuses the frame just sent: {sent_from:?}"
    );
    assert!(
        sent_from.iter().all(|a| !rx_frames.contains(a)),
        "replies never go into frames the kernel received into: tx {sent_from:?} rx {rx_frames:?}"
    );
    assert_eq!(lost, 0, "every frame came back to the pool: {counters:?}");
}
