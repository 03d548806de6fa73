//! xdhcp-loadgen: a DHCPv4 load generator. It simulates up to millions of distinct clients
//! (MAC derived from a counter) doing complete DORA exchanges and optionally renewals, as a
//! relay agent (giaddr set, source port 67, like `perfdhcp -l`) or as the clients themselves,
//! open loop at a target rate or closed loop at the maximum rate with a window of exchanges in
//! flight. Frames go out and come back through AF_XDP (the xdhcp XDP program steering the reply
//! port to its sockets), or through an AF_PACKET socket where XDP is not available.
//!
//! With `--v6` it is a DHCPv6 generator instead: distinct clients (one DUID-LL each) doing
//! SOLICIT → ADVERTISE, REQUEST → REPLY with an IA_NA, an IA_PD or both (`--lease-type`, as
//! perfdhcp's `-e`), sent like `perfdhcp -6 -l <iface>` from the interface's link-local address
//! to ff02::1:2 and answered on UDP 546.
//!
//! It reports exchanges/s, round trips/s, drops (exchanges not completed within the timeout,
//! and NAKs or, in v6, replies that do not grant what was asked) and latency percentiles, as a
//! table or as one JSON object (`--json`).

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xdhcp_bench::frames::{Addressing, Templates};
use xdhcp_bench::frames6::{LeaseType, Link6, Templates6, CLIENT_PORT};
use xdhcp_bench::gen::{GenConfig, Generator, Mode};
use xdhcp_bench::gen6::Generator6;
use xdhcp_bench::port::{
    iface_ipv4, iface_mac, parse_mac, pin, resolve_mac, PacketPort, Port, XdpPort, XdpPortConfig,
};
use xdhcp_dataplane::backend::xdp::loader::{AttachMode, SteerPorts};

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

/// What every DHCPv6 client asks for (perfdhcp's `-e`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LeaseTypeArg {
    /// One IA_NA.
    AddressOnly,
    /// One IA_PD.
    PrefixOnly,
    /// One IA_NA and one IA_PD in every message.
    AddressAndPrefix,
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
    about = "DHCPv4 and DHCPv6 load generator (AF_XDP or packet socket)"
)]
struct Args {
    /// Interface to send on (in this network namespace).
    #[arg(short, long)]
    iface: String,
    /// The server's IPv4 address (DHCPv4).
    #[arg(short, long, required_unless_present = "v6")]
    server: Option<Ipv4Addr>,
    /// DHCPv6: SOLICIT/ADVERTISE/REQUEST/REPLY to ff02::1:2 from the interface's link-local
    /// address, as `perfdhcp -6 -l <iface>` sends.
    #[arg(long = "v6", short = '6')]
    v6: bool,
    /// DHCPv6: what every client asks for.
    #[arg(long, value_enum, default_value = "address-only")]
    lease_type: LeaseTypeArg,
    /// DHCPv6: the source address (default: the interface's link-local address).
    #[arg(long)]
    link_local: Option<Ipv6Addr>,
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
    // The loop runs on this thread and sleeps in short, exact waits between open-loop sends.
    xdhcp_bench::port::fine_timer_slack();
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
    if a.v6 {
        return run_v6(&a);
    }
    let Some(server) = a.server else {
        bail!("--server is required for DHCPv4");
    };
    let server_mac = match &a.server_mac {
        Some(m) => parse_mac(m)?,
        None => resolve_mac(&a.iface, server)?,
    };
    let addressing = if a.direct {
        Addressing::Direct {
            server_ip: server,
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
            server_ip: server,
            server_mac,
        }
    };
    let cfg = gen_config(&a);
    let stop = stop_flag()?;
    let templates = Templates::new(addressing);
    let port_no = addressing.reply_port();
    // The sockets are opened on the pinned thread so their memory is local to it.
    if let Some(cpu) = a.cpu {
        pin(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let report = match a.io {
        Io::Xdp => {
            let mut p = XdpPort::open(&a.iface, port_no, &xdp_config(&a))?;
            let mut g = Generator::new(cfg, &templates);
            let r = g.run(&mut p, &stop);
            warn_kernel_drops(&p);
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
    print_report(&a, &report)
}

fn print_report(a: &Args, report: &xdhcp_bench::stats::Report) -> anyhow::Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn gen_config(a: &Args) -> GenConfig {
    let timeout_ns = a.timeout_ms.max(1) * 1_000_000;
    let window = match (a.window, a.rate) {
        (Some(w), _) => w,
        (None, None) => 256,
        (None, Some(r)) => {
            ((u128::from(r) * u128::from(timeout_ns) / 1_000_000_000) as usize).clamp(64, 1 << 22)
        }
    };
    GenConfig {
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
    }
}

/// SIGINT/SIGTERM end the run early; the report still covers what was measured.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    Ok(stop)
}

fn xdp_config(a: &Args) -> XdpPortConfig {
    XdpPortConfig {
        ring_size: a.ring_size,
        frame_count: a.ring_size * 4,
        batch: a.batch,
        attach: match a.attach {
            AttachArg::Auto => AttachMode::Auto,
            AttachArg::Native => AttachMode::Native,
            AttachArg::Generic => AttachMode::Generic,
        },
    }
}

fn warn_kernel_drops(p: &XdpPort) {
    let (full, empty) = p.kernel_drops();
    if full + empty > 0 {
        eprintln!("xdhcp-loadgen: the kernel dropped {full} replies (rx ring full) and {empty} (fill ring empty): the generator was the bottleneck");
    }
}

/// The DHCPv6 generator: same ports, loop shape and report as v4.
fn run_v6(a: &Args) -> anyhow::Result<()> {
    if a.mode == ModeArg::Echo || a.renew > 0 {
        bail!("--v6 runs SOLICIT/ADVERTISE/REQUEST/REPLY only (no --mode echo, no --renew)");
    }
    if a.direct || a.relay.is_some() {
        bail!("--v6 sends as the clients themselves (like perfdhcp -6 -l); --relay and --direct are DHCPv4 options");
    }
    let src_ip = match a.link_local {
        Some(ip) => ip,
        None => iface_link_local(&a.iface)?,
    };
    let link = match &a.server_mac {
        // Unicast to one server's MAC (still to ff02::1:2 at the IP layer, which every DHCPv6
        // server accepts): useful when the link carries more than one server.
        Some(m) => Link6 {
            dst_mac: parse_mac(m)?,
            ..Link6::multicast(iface_mac(&a.iface)?, src_ip)
        },
        None => Link6::multicast(iface_mac(&a.iface)?, src_ip),
    };
    let lease_type = match a.lease_type {
        LeaseTypeArg::AddressOnly => LeaseType::Address,
        LeaseTypeArg::PrefixOnly => LeaseType::Prefix,
        LeaseTypeArg::AddressAndPrefix => LeaseType::AddressAndPrefix,
    };
    let templates = Templates6::new(link, lease_type);
    let cfg = gen_config(a);
    let stop = stop_flag()?;
    if let Some(cpu) = a.cpu {
        pin(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let report = match a.io {
        Io::Xdp => {
            // Replies arrive on UDP 546 over IPv6; nothing DHCPv4 is expected here.
            let ports = SteerPorts {
                v4: 68,
                v6: CLIENT_PORT,
            };
            let mut p = XdpPort::open_steering(&a.iface, ports, &xdp_config(a))?;
            let r = Generator6::new(cfg, &templates).run(&mut p, &stop);
            warn_kernel_drops(&p);
            r
        }
        Io::Packet => {
            let mut p = PacketPort::open_v6(&a.iface, CLIENT_PORT, a.batch)?;
            Generator6::new(cfg, &templates).run(&mut p, &stop)
        }
    };
    print_report(a, &report)
}

/// The link-local IPv6 address of `iface` (from /proc/net/if_inet6), which must not be tentative:
/// replies to a tentative address are dropped.
fn iface_link_local(iface: &str) -> anyhow::Result<Ipv6Addr> {
    let text = std::fs::read_to_string("/proc/net/if_inet6")
        .context("reading /proc/net/if_inet6 (is IPv6 enabled?)")?;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // address ifindex prefix-len scope flags name; scope 0x20 = link, flag 0x40 = tentative.
        if f.len() < 6 || f[5] != iface || f[3] != "20" {
            continue;
        }
        let flags = u32::from_str_radix(f[4], 16).unwrap_or(0);
        if flags & 0x40 != 0 {
            bail!("the link-local address of {iface} is still tentative (duplicate address detection): retry in a second");
        }
        let n = u128::from_str_radix(f[0], 16)
            .with_context(|| format!("bad address {:?} in /proc/net/if_inet6", f[0]))?;
        return Ok(Ipv6Addr::from(n));
    }
    bail!("interface {iface} has no IPv6 link-local address: give one with --link-local")
}

fn run_port<P: Port>(
    g: &mut Generator<'_>,
    p: &mut P,
    stop: &AtomicBool,
) -> xdhcp_bench::stats::Report {
    g.run(p, stop)
}
