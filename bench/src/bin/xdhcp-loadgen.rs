//! xdhcp-loadgen: a DHCPv4 load generator. It simulates up to millions of distinct clients
//! (MAC derived from a counter) doing complete DORA exchanges and optionally renewals, as a
//! relay agent (giaddr set, source port 67, like `perfdhcp -l`) or as the clients themselves,
//! open loop at a target rate or closed loop at the maximum rate with a window of exchanges in
//! flight. Frames go out and come back through AF_XDP (the xdhcp XDP program steering the reply
//! port to its sockets), or through an AF_PACKET socket where XDP is not available.
//!
//! It reports exchanges/s, round trips/s, drops (exchanges not completed within the timeout,
//! and NAKs) and latency percentiles, as a table or as one JSON object (`--json`).

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xdhcp_bench::frames::{Addressing, Templates};
use xdhcp_bench::gen::{GenConfig, Generator, Mode};
use xdhcp_bench::port::{
    iface_ipv4, iface_mac, parse_mac, pin, resolve_mac, PacketPort, Port, XdpPort, XdpPortConfig,
};
use xdhcp_dataplane::backend::xdp::loader::AttachMode;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Io {
    /// AF_XDP with the xdhcp XDP program (copy mode on veth).
    Xdp,
    /// AF_PACKET with sendmmsg/recvmmsg.
    Packet,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    /// Complete DISCOVER-OFFER-REQUEST-ACK exchanges.
    Dora,
    /// Frames to an echo responder (xdhcp-echo), one round trip per exchange.
    Echo,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum AttachArg {
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Parser)]
#[command(
    name = "xdhcp-loadgen",
    about = "DHCPv4 load generator (AF_XDP or packet socket)"
)]
struct Args {
    /// Interface to send on (in this network namespace).
    #[arg(short, long)]
    iface: String,
    /// The server's IPv4 address.
    #[arg(short, long)]
    server: Ipv4Addr,
    /// The server's MAC address; resolved by ARP when omitted.
    #[arg(long)]
    server_mac: Option<String>,
    /// Act as a relay agent with this address (default: the interface's address). Replies come
    /// back to it on port 67.
    #[arg(long)]
    relay: Option<Ipv4Addr>,
    /// Act as the clients themselves (broadcast DISCOVERs from port 68) instead of a relay.
    #[arg(long)]
    direct: bool,
    #[arg(long, value_enum, default_value = "dora")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "xdp")]
    io: Io,
    #[arg(long, value_enum, default_value = "auto")]
    attach: AttachArg,
    /// Open loop at this many exchanges per second; omitted: closed loop at the maximum rate.
    #[arg(short, long)]
    rate: Option<u64>,
    /// Exchanges in flight (closed loop), or the in-flight bound (open loop; default rate × timeout).
    #[arg(short, long)]
    window: Option<usize>,
    /// Distinct clients (MACs); numbering wraps around after this many.
    #[arg(short, long, default_value_t = 1_000_000)]
    clients: u32,
    /// Percentage of exchanges that renew a bound client (REQUEST with ciaddr).
    #[arg(long, default_value_t = 0)]
    renew: u32,
    /// Measured run time, seconds.
    #[arg(short, long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up before it, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// An exchange not completed this long after its last message is a drop, milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Frames per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// AF_XDP ring size (entries per ring).
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    /// Pin the generator to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Second byte of the client MACs (keeps runs or generators apart).
    #[arg(long, default_value_t = 0)]
    mac_seed: u8,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("xdhcp-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    if !(a.duration > 0.0 && a.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if a.batch == 0 || a.batch > 256 {
        bail!("--batch must be in 1..=256");
    }
    if a.renew > 100 {
        bail!("--renew is a percentage (0..=100)");
    }
    if a.mode == ModeArg::Echo && a.renew > 0 {
        bail!("--renew applies to --mode dora only");
    }
    let server_mac = match &a.server_mac {
        Some(m) => parse_mac(m)?,
        None => resolve_mac(&a.iface, a.server)?,
    };
    let addressing = if a.direct {
        Addressing::Direct {
            server_ip: a.server,
            server_mac,
        }
    } else {
        let relay_ip = match a.relay {
            Some(r) => r,
            None => iface_ipv4(&a.iface)?,
        };
        if relay_ip.is_unspecified() {
            bail!(
                "interface {} has no IPv4 address: give the relay address with --relay",
                a.iface
            );
        }
        Addressing::Relay {
            relay_ip,
            relay_mac: iface_mac(&a.iface)?,
            server_ip: a.server,
            server_mac,
        }
    };
    let timeout_ns = a.timeout_ms.max(1) * 1_000_000;
    let window = match (a.window, a.rate) {
        (Some(w), _) => w,
        (None, None) => 256,
        (None, Some(r)) => {
            ((u128::from(r) * u128::from(timeout_ns) / 1_000_000_000) as usize).clamp(64, 1 << 22)
        }
    };
    let cfg = GenConfig {
        mode: if a.mode == ModeArg::Echo {
            Mode::Echo
        } else {
            Mode::Dora
        },
        clients: a.clients.max(1),
        mac_seed: a.mac_seed,
        renew_pct: a.renew,
        window: window.max(1),
        rate: a.rate.unwrap_or(0),
        duration_ns: (a.duration * 1e9) as u64,
        warmup_ns: (a.warmup.max(0.0) * 1e9) as u64,
        timeout_ns,
        batch: a.batch,
    };
    let stop = Arc::new(AtomicBool::new(false));
    // SIGINT/SIGTERM end the run early; the report still covers what was measured.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    let templates = Templates::new(addressing);
    let port_no = addressing.reply_port();
    // The sockets are opened on the pinned thread so their memory is local to it.
    if let Some(cpu) = a.cpu {
        pin(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let report = match a.io {
        Io::Xdp => {
            let attach = match a.attach {
                AttachArg::Auto => AttachMode::Auto,
                AttachArg::Native => AttachMode::Native,
                AttachArg::Generic => AttachMode::Generic,
            };
            let pc = XdpPortConfig {
                ring_size: a.ring_size,
                frame_count: a.ring_size * 4,
                batch: a.batch,
                attach,
            };
            let mut p = XdpPort::open(&a.iface, port_no, &pc)?;
            let mut g = Generator::new(cfg, &templates);
            let r = g.run(&mut p, &stop);
            let (full, empty) = p.kernel_drops();
            if full + empty > 0 {
                eprintln!("xdhcp-loadgen: the kernel dropped {full} replies (rx ring full) and {empty} (fill ring empty): the generator was the bottleneck");
            }
            r
        }
        Io::Packet => {
            let bind_ip = match addressing {
                Addressing::Relay { relay_ip, .. } => relay_ip,
                Addressing::Direct { .. } => Ipv4Addr::UNSPECIFIED,
            };
            let mut p = PacketPort::open(&a.iface, port_no, bind_ip, a.batch)?;
            let mut g = Generator::new(cfg, &templates);
            run_port(&mut g, &mut p, &stop)
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn run_port<P: Port>(
    g: &mut Generator<'_>,
    p: &mut P,
    stop: &AtomicBool,
) -> xdhcp_bench::stats::Report {
    g.run(p, stop)
}
