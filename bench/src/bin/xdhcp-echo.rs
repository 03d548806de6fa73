//! xdhcp-echo: a raw AF_XDP echo responder, the I/O floor of the lab. The xdhcp XDP program
//! steers UDP to the given port (67 by default) into one AF_XDP socket per rx queue; every
//! steered IPv4/UDP frame is turned around in place (MACs, IP addresses and ports swapped, IP
//! and UDP checksums recomputed in full, since AF_XDP has no offload and kernel-sent frames
//! carry only a partial UDP checksum) and sent back from the same UMEM frame, without a copy.
//! Its loop is the xdhcp AF_XDP worker's (batch receive, one TX wakeup per batch, spin then
//! poll when idle) with the DHCP engine replaced by the swap, so the load generator's
//! `--mode echo` measures what the lab can carry at best.

use anyhow::{bail, Context};
use clap::Parser;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xdhcp_bench::frames::{set_ip_checksum, set_udp_checksum, IP_OFF, UDP_OFF};
use xdhcp_bench::port::{mono_ns, pin, XdpPort, XdpPortConfig};
use xdhcp_dataplane::backend::xdp::xsk::XdpDesc;
use xdhcp_dataplane::backend::StallMeter;

#[derive(Debug, Parser)]
#[command(
    name = "xdhcp-echo",
    about = "AF_XDP UDP echo responder (the lab's I/O floor)"
)]
struct Args {
    #[arg(short, long)]
    iface: String,
    /// UDP destination port to steer and echo.
    #[arg(short, long, default_value_t = 67)]
    port: u16,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Exit after this many seconds (default: run until SIGTERM/SIGINT).
    #[arg(short, long)]
    duration: Option<f64>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    /// Empty polls of the RX ring before sleeping in poll(2) (as the xdhcp worker).
    #[arg(long, default_value_t = 1000)]
    idle_spins: u32,
}

/// Turns a UDP/IPv4 frame (untagged, 20-byte IP header) around in place. False if it is not one.
pub fn swap_in_place(f: &mut [u8]) -> bool {
    if f.len() < UDP_OFF + 8
        || f[12..14] != [0x08, 0x00]
        || f[IP_OFF] != 0x45
        || f[IP_OFF + 9] != 17
    {
        return false;
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(IP_OFF + 12 + i, IP_OFF + 16 + i);
    }
    f.swap(UDP_OFF, UDP_OFF + 2);
    f.swap(UDP_OFF + 1, UDP_OFF + 3);
    // A broadcast or zero source (a direct DHCP client) cannot be answered as is: send back to
    // the broadcast address, as a server answers such a client.
    if f[IP_OFF + 16..IP_OFF + 20] == [0, 0, 0, 0] {
        f[IP_OFF + 16..IP_OFF + 20].copy_from_slice(&[255; 4]);
    }
    set_ip_checksum(f);
    set_udp_checksum(f)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("xdhcp-echo: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    if a.batch == 0 || a.batch > a.ring_size as usize {
        bail!("--batch must be in 1..=ring size");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    if let Some(cpu) = a.cpu {
        pin(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let cfg = XdpPortConfig {
        ring_size: a.ring_size,
        frame_count: a.ring_size * 4,
        batch: a.batch,
        ..XdpPortConfig::default()
    };
    let mut port = XdpPort::open(&a.iface, a.port, &cfg)?;
    eprintln!(
        "xdhcp-echo: echoing UDP port {} on {} over {}",
        a.port,
        a.iface,
        xdhcp_bench::port::Port::describe(&port)
    );
    let deadline = a.duration.map(|d| mono_ns() + (d * 1e9) as u64);
    let mut descs = vec![XdpDesc::default(); a.batch];
    let (mut echoed, mut dropped, mut ignored) = (0u64, 0u64, 0u64);
    let mut idle = 0u32;
    let single = port.sockets().len() == 1;
    // The same stall count as the xdhcp worker's, so a half-rate run can tell the lab's stalls
    // (the same in both) from the server's.
    let mut stalls = StallMeter::default();
    while !stop.load(Ordering::Relaxed) {
        stalls.observe(mono_ns());
        let mut got = 0;
        for s in port.sockets() {
            let n = s.recv(&mut descs);
            got += n;
            for d in &descs[..n] {
                if swap_in_place(s.rx_frame_mut(d)) {
                    match s.tx_push_in_place(d) {
                        Ok(()) => echoed += 1,
                        Err(_) => {
                            dropped += 1;
                            s.release_rx(d);
                        }
                    }
                } else {
                    ignored += 1;
                    s.release_rx(d);
                }
            }
            if n > 0 {
                s.tx_flush();
            }
            s.refill();
        }
        if got > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= a.idle_spins {
            idle = 0;
            if deadline.is_some_and(|d| mono_ns() >= d) {
                break;
            }
            for s in port.sockets() {
                s.tx_flush();
                s.refill();
            }
            stalls.sleeping();
            if single {
                let _ = port.sockets()[0].poll_rx(100);
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        } else {
            std::hint::spin_loop();
        }
    }
    let (full, empty) = port.kernel_drops();
    eprintln!(
        "xdhcp-echo: echoed {echoed}, tx ring full {dropped}, not UDP/IPv4 {ignored}, kernel rx drops {full} (ring full) {empty} (fill empty), worker-stalls {} worker-stalled-us {}",
        stalls.stalls,
        stalls.stalled_ns / 1000
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_bench::frames::{
        client_mac, csum_add, csum_fold, Addressing, Fields, Kind, Templates,
    };

    #[test]
    fn swapped_frame_goes_back_with_valid_checksums() {
        let t = Templates::new(Addressing::Relay {
            relay_ip: "10.0.0.2".parse().unwrap(),
            relay_mac: [2, 0, 0, 0, 0, 2],
            server_ip: "10.0.0.1".parse().unwrap(),
            server_mac: [2, 0, 0, 0, 0, 1],
        });
        let mut b = [0u8; 2048];
        let n = t.write(
            Kind::Discover,
            &Fields {
                xid: 5,
                mac: client_mac(0, 3),
                addr: 0,
                server_id: 0,
            },
            &mut b,
        );
        let mut f = b[..n].to_vec();
        // Kernel-sent frames may carry a partial checksum: spoil it to show it is recomputed.
        f[UDP_OFF + 6] ^= 0x55;
        assert!(swap_in_place(&mut f));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&f[IP_OFF + 16..IP_OFF + 20], &[10, 0, 0, 2]);
        assert_eq!(csum_fold(csum_add(0, &f[IP_OFF..IP_OFF + 20])), 0);
        let udp_len = n - UDP_OFF;
        let mut acc = csum_add(0, &f[IP_OFF + 12..IP_OFF + 20]);
        acc += 17 + udp_len as u64;
        assert_eq!(csum_fold(csum_add(acc, &f[UDP_OFF..])), 0);
        let mut arp = f.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!swap_in_place(&mut arp));
    }
}
