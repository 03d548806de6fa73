//! A rough measurement, not a benchmark: how many echoes per second one AF_XDP worker of this
//! backend answers on the veth lab when a sendmmsg flooder on the other core drives it, and how
//! much CPU the worker used per echo. Ignored by default (it takes seconds and wants a release
//! build); run with
//! `cargo test --release -p xdhcp-dataplane --test xdp_throughput -- --ignored --nocapture`.
//! The bench crate's load generator makes the real measurement.
#![cfg(feature = "xdp")]

mod xdp_common;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdhcp_dataplane::backend::xdp::loader::AttachMode;
use xdhcp_dataplane::backend::xdp::{sys, XdpBackend, XdpBackendConfig};
use xdhcp_dataplane::backend::{FrameHandler, Now, RxContext};
use xdp_common::*;

struct Echo;

impl FrameHandler for Echo {
    fn handle_frame(
        &mut self,
        _now: Now,
        ctx: &RxContext,
        rx: &[u8],
        tx: &mut [u8],
    ) -> Option<usize> {
        echo_reply(rx, ctx.if_mac, b"", tx)
    }

    fn tick(&mut self, _now: Now) {}
}

/// utime + stime of every thread of this process whose name starts with `prefix`, in seconds.
fn threads_cpu_secs(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields after the comm: state is [0]; utime is field 14 overall → [11], stime → [12].
        let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (ut + st) / ticks;
    }
    total
}

/// (user, system, softirq, idle) jiffies of each CPU from /proc/stat.
fn cpu_times() -> Vec<[u64; 4]> {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            [f[0] + f[1], f[2], f[6], f[3]]
        })
        .collect()
}

#[test]
#[ignore = "measurement; run explicitly with --release --ignored --nocapture"]
fn echo_rate_of_one_worker() {
    let lab = Lab::new("tp", 1);
    let mut cfg = XdpBackendConfig::new(vec![SRV_IF.to_string()], 2048, 8192);
    cfg.attach_mode = AttachMode::Native;
    cfg.cpus = vec![0];
    cfg.idle_spin = std::time::Duration::from_micros(10);
    let backend = lab
        .srv
        .run(|| XdpBackend::start(&cfg, &|_| Box::new(Echo) as Box<dyn FrameHandler>))
        .expect("start");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let secs = 3.0;
    let (cpu0, t0, r0);
    {
        let (fstop, fsent, freceived) = (stop.clone(), sent.clone(), received.clone());
        let sock = lab.cli.run(|| UdpSocket::bind((CLI_IP, 40000)).unwrap());
        // Warm ARP.
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        for _ in 0..5 {
            sock.send_to(b"warm", (SRV_IP, 67)).unwrap();
            if sock.recv_from(&mut [0u8; 64]).is_ok() {
                break;
            }
        }
        sock.set_nonblocking(true).unwrap();
        let rx_sock = sock.try_clone().unwrap();
        let flood = std::thread::spawn(move || {
            sys::pin_current_thread(1).unwrap();
            let payload = [0u8; 64];
            let dst = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 67u16.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(SRV_IP.octets()),
                },
                sin_zero: [0; 8],
            };
            let mut iov = [libc::iovec {
                iov_base: payload.as_ptr() as *mut _,
                iov_len: payload.len(),
            }; 32];
            // SAFETY: mmsghdr is plain data; every pointer set below outlives the loop.
            let mut msgs: Vec<libc::mmsghdr> =
                (0..32).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_name = (&dst as *const libc::sockaddr_in) as *mut _;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            let mut buf = [0u8; 2048];
            while !fstop.load(Ordering::Relaxed) {
                // SAFETY: msgs/iov/dst are live; the socket is ours.
                let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), 32, 0) };
                if n > 0 {
                    fsent.fetch_add(n as u64, Ordering::Relaxed);
                }
                // Drain replies on the same core so the client side does not overflow.
                while rx_sock.recv_from(&mut buf).is_ok() {
                    freceived.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        cpu0 = threads_cpu_secs("xdhcp-xdp");
        let stat0 = cpu_times();
        r0 = backend.stats().unwrap().queues[0].1.replies;
        t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        let dt = t0.elapsed().as_secs_f64();
        let q = backend.stats().unwrap().queues[0].1;
        let cpu = threads_cpu_secs("xdhcp-xdp") - cpu0;
        let stat1 = cpu_times();
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap();
        for (i, (a, b)) in stat0.iter().zip(&stat1).enumerate() {
            let d: Vec<u64> = (0..4).map(|k| b[k] - a[k]).collect();
            let all: u64 = d.iter().sum::<u64>().max(1);
            println!(
                "cpu{i}: user {}% system {}% softirq {}% idle {}%",
                100 * d[0] / all,
                100 * d[1] / all,
                100 * d[2] / all,
                100 * d[3] / all
            );
        }
        let replies = q.replies - r0;
        println!(
            "echo: {:.0} replies/s by one worker (CPU {:.0}% of a core, {:.2} µs CPU per reply); client sent {} received {}; \
             tx_ring_full {} tx_no_frame {} kernel rx_ring_full {} fill_empty {}",
            replies as f64 / dt,
            100.0 * cpu / dt,
            1e6 * cpu / replies.max(1) as f64,
            sent.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
            q.tx_ring_full,
            q.tx_no_frame,
            q.kernel_rx_ring_full,
            q.kernel_fill_empty,
        );
        assert!(
            replies as f64 / dt > 10_000.0,
            "the worker answers at a useful rate"
        );
    }
    backend.stop().unwrap();
}

/// Paced load (default 10,000 requests/s for 5 s; `XD_RATE`, `XD_SECS`): every request must be
/// answered, and when some are not the worker's and the kernel's counters say where they went.
#[test]
#[ignore = "measurement; run explicitly with --release --ignored --nocapture"]
fn paced_echo_loses_nothing() {
    let rate: u64 = std::env::var("XD_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let secs: u64 = std::env::var("XD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let lab = Lab::new("pe", 1);
    let mut cfg = XdpBackendConfig::new(vec![SRV_IF.to_string()], 2048, 8192);
    cfg.attach_mode = AttachMode::Native;
    let backend = lab
        .srv
        .run(|| XdpBackend::start(&cfg, &|_| Box::new(Echo) as Box<dyn FrameHandler>))
        .expect("start");
    let (sent, received, rcvbuf_errors, csum_errors) = lab.cli.run(|| {
        let rcvbuf0 = udp_snmp("RcvbufErrors");
        let csum0 = udp_snmp("InCsumErrors");
        let sock = UdpSocket::bind((CLI_IP, 40001)).unwrap();
        // A big receive buffer so a briefly descheduled receiver thread (two shared cores) does
        // not count as loss of the server's.
        let big: libc::c_int = 16 << 20;
        // SAFETY: passes a live int and its size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        for _ in 0..5 {
            sock.send_to(b"warm", (SRV_IP, 67)).unwrap();
            if sock.recv_from(&mut [0u8; 64]).is_ok() {
                break;
            }
        }
        let rx = sock.try_clone().unwrap();
        let counter = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut buf = [0u8; 256];
            while rx.recv_from(&mut buf).is_ok() {
                n += 1;
            }
            n
        });
        let start = Instant::now();
        let total = rate * secs;
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            sock.send_to(&i.to_be_bytes(), (SRV_IP, 67)).unwrap();
        }
        let got = counter.join().unwrap();
        (
            total,
            got,
            udp_snmp("RcvbufErrors") - rcvbuf0,
            udp_snmp("InCsumErrors") - csum0,
        )
    });
    println!("client: UDP RcvbufErrors {rcvbuf_errors} InCsumErrors {csum_errors}");
    println!("{}", lab.cli.ip(&["-s", "link", "show", "dev", CLI_IF]));
    let s = backend.stats().unwrap();
    let q = s.queues[0].1;
    println!(
        "paced echo: {rate}/s for {secs} s: sent {sent} received {received} lost {}; worker rx {} replies {} \
         tx_ring_full {} tx_no_frame {} kernel rx_dropped {} rx_ring_full {} fill_empty {}; program {:?}",
        sent - received,
        q.rx_frames,
        q.replies,
        q.tx_ring_full,
        q.tx_no_frame,
        q.kernel_rx_dropped,
        q.kernel_rx_ring_full,
        q.kernel_fill_empty,
        s.programs[0].1
    );
    backend.stop().unwrap();
    assert_eq!(sent, received, "every paced request answered");
}
