//! Command line of `xdhcp-control`: reads the same Kea-style config file as the dataplane and runs
//! the control process for its `high-availability` relationships.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::dataplane::UnixDataplane;
use crate::ha::commands::Family;
use crate::server::{run_process, Options};

#[derive(Debug, Parser)]
#[command(
    name = "xdhcp-control",
    about = "xdhcp control process: Kea 2.2-compatible HA, replication, control API"
)]
struct Args {
    /// The configuration file (Kea JSON with the HA hook parameters).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// UNIX socket for the admin API (default: the dataplane socket name + "-control").
    #[arg(short = 's', long = "socket")]
    socket: Option<PathBuf>,
    /// Dataplane control socket (default: the config's control-socket.socket-name).
    #[arg(long = "dataplane-socket")]
    dataplane_socket: Option<PathBuf>,
    /// Which section's high-availability relationships to run: 4 (Dhcp4) or 6 (Dhcp6). Default:
    /// Dhcp4's when it has any, else Dhcp6's. A dual-stack config with HA in both sections runs
    /// one control process per family, as Kea runs one HA service per daemon.
    #[arg(long = "family", value_parser = ["4", "6"])]
    family: Option<String>,
    /// Kea control agent configuration (kea-ctrl-agent.conf) for an HTTP control API listener of
    /// its own: http-host, http-port, TLS, basic auth (default: the config's own "Control-agent"
    /// map, if it has one, except in the DHCPv6 process of a dual-stack pair; else none).
    #[arg(long = "agent-config")]
    agent_config: Option<PathBuf>,
}

pub fn main() -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xdhcp-control: {e:#}");
            1
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let loaded = xdhcp_config::load_file(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = loaded.config;
    // HA comes from the section that configures it: Dhcp4 when it has relationships, else Dhcp6
    // (a Dhcp6-only HA config, or Dhcp4 without HA next to a Dhcp6 with it). The dataplane socket
    // and the journal are the dataplane's, which takes them from Dhcp4 when present.
    let ha4 = cfg
        .dhcp4
        .as_ref()
        .is_some_and(|d4| !d4.high_availability.is_empty());
    let ha6 = cfg
        .dhcp6
        .as_ref()
        .is_some_and(|d6| !d6.high_availability.is_empty());
    let v6_ha = match args.family.as_deref() {
        Some("6") if !ha6 => anyhow::bail!(
            "{}: --family 6 but Dhcp6 has no high-availability relationship",
            args.config.display()
        ),
        Some("4") if !ha4 => anyhow::bail!(
            "{}: --family 4 but Dhcp4 has no high-availability relationship",
            args.config.display()
        ),
        Some(f) => f == "6",
        None => !ha4 && ha6,
    };
    let (family, ha, sock, db, max_valid) =
        if let (true, Some(d6), Some(d4)) = (v6_ha, &cfg.dhcp6, &cfg.dhcp4) {
            let max_valid = longest_lease(d6.subnets.iter().map(|s| &s.lifetimes), &d6.lifetimes);
            (
                Family::V6,
                d6.high_availability.clone(),
                d4.control_socket.clone(),
                d4.lease_database.clone(),
                max_valid,
            )
        } else if let Some(d4) = &cfg.dhcp4 {
            let max_valid = longest_lease(d4.subnets.iter().map(|s| &s.lifetimes), &d4.lifetimes);
            (
                Family::V4,
                d4.high_availability.clone(),
                d4.control_socket.clone(),
                d4.lease_database.clone(),
                max_valid,
            )
        } else if let Some(d6) = &cfg.dhcp6 {
            let max_valid = longest_lease(d6.subnets.iter().map(|s| &s.lifetimes), &d6.lifetimes);
            (
                Family::V6,
                d6.high_availability.clone(),
                d6.control_socket.clone(),
                d6.lease_database.clone(),
                max_valid,
            )
        } else {
            anyhow::bail!("{}: neither Dhcp4 nor Dhcp6", args.config.display());
        };
    if ha.is_empty() {
        anyhow::bail!(
            "{}: no high-availability relationship configured (libdhcp_ha.so parameters)",
            args.config.display()
        );
    }
    let dp_sock = match (args.dataplane_socket, sock) {
        (Some(p), _) => p,
        (None, Some(s)) => s.socket_name,
        (None, None) => anyhow::bail!(
            "{}: control-socket.socket-name is needed to reach the dataplane",
            args.config.display()
        ),
    };
    // With HA in both families, the DHCPv6 process's admin socket is "-control6".
    let admin = args.socket.unwrap_or_else(|| {
        let mut s = dp_sock.clone().into_os_string();
        s.push(if ha4 && ha6 && family == Family::V6 {
            "-control6"
        } else {
            "-control"
        });
        PathBuf::from(s)
    });
    let journal_dir = match (&db.path, db.persist) {
        (Some(p), true) => {
            let mut s = p.clone().into_os_string();
            s.push(".journal");
            Some(PathBuf::from(s))
        }
        _ => None,
    };
    // A Control-agent map in the config file itself serves one listener: in a dual-stack pair of
    // processes the DHCPv4 one takes it (the other would find its address taken).
    let dual_v6 = ha4 && ha6 && family == Family::V6;
    let agent_file = args.agent_config.clone().or_else(|| {
        (!dual_v6).then_some(())?;
        std::fs::read_to_string(&args.config)
            .ok()
            .filter(|t| xdhcp_config::agent::has_agent_section(t, &args.config))
            .map(|_| args.config.clone())
    });
    let agent = match agent_file {
        Some(f) => {
            let l = xdhcp_config::agent::load_agent_file(&f).map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in &l.warnings {
                tracing::warn!("{w}");
            }
            Some(l.agent)
        }
        None => None,
    };
    let opts = Options {
        config: args.config.clone(),
        admin_socket: Some(admin),
        dataplane_socket: dp_sock.clone(),
        journal_dir,
        family,
        relationships: ha,
        // The longest lease the partner could have granted unseen (DESIGN.md safety period).
        partner_free_delay_ms: u64::from(max_valid) * 1000,
        agent,
        // The dataplane reads its tuning from Dhcp4 when present: so does this.
        replication: cfg
            .dhcp4
            .as_ref()
            .map(|d| d.tuning.replication)
            .or(cfg.dhcp6.as_ref().map(|d| d.tuning.replication))
            .unwrap_or_default(),
    };
    run_process(opts, Arc::new(UnixDataplane::new(dp_sock)))
}

/// The longest lease any subnet may grant: the safety period after partner-down before the
/// partner's free addresses may be allocated (DESIGN.md).
fn longest_lease<'a>(
    subnets: impl Iterator<Item = &'a xdhcp_config::model::Lifetimes>,
    global: &xdhcp_config::model::Lifetimes,
) -> u32 {
    subnets
        .map(|l| l.max_valid.max(l.valid))
        .max()
        .unwrap_or(global.valid)
}
