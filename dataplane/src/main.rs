//! `xdhcp`: the dataplane process. `serve` runs the DHCP server; `check-config` validates a Kea
//! configuration like `kea-dhcp4 -t`; `lease-export`/`lease-import` convert between the lease
//! journal and Kea's memfile CSV, offline.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use xdhcp_dataplane::lease::journal::{read_state, Journal, JournalConfig};
use xdhcp_dataplane::lease::{csv, LeaseChange};

#[derive(Parser)]
#[command(
    name = "xdhcp",
    version,
    about = "Kernel-bypass DHCP server, Kea-compatible"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Socket,
    Xdp,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve DHCP on the interfaces named in the configuration (foreground; SIGTERM stops).
    Serve {
        #[arg(short = 'c', long)]
        config: PathBuf,
        /// Override `user-context.xdhcp.backend`.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Validate a configuration file; non-zero exit with file, JSON path and reason on errors.
    #[command(alias = "-t")]
    CheckConfig { file: PathBuf },
    /// Write the leases in a journal directory as a Kea memfile CSV (works on a live or dead server's journal).
    LeaseExport {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        family: u8,
    },
    /// Load a Kea memfile CSV into a journal directory (the server must not be running on it).
    LeaseImport {
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        journal: PathBuf,
        #[arg(long, default_value_t = 4)]
        family: u8,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::CheckConfig { file } => return check_config(&file),
        Cmd::Serve { config, backend } => serve(&config, backend),
        Cmd::LeaseExport {
            journal,
            out,
            family,
        } => export(&journal, &out, family),
        Cmd::LeaseImport {
            csv,
            journal,
            family,
        } => import(&csv, &journal, family),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdhcp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match xdhcp_config::load_file(file) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: configuration OK ({} warning(s))",
                file.display(),
                l.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            for d in &e.errors {
                eprintln!("error: {d}");
            }
            eprintln!(
                "{}: configuration rejected ({} error(s))",
                file.display(),
                e.errors.len()
            );
            ExitCode::from(1)
        }
    }
}

fn serve(path: &std::path::Path, backend: Option<BackendArg>) -> anyhow::Result<()> {
    let loaded = xdhcp_config::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let backend = backend.map(|b| match b {
        BackendArg::Socket => xdhcp_config::model::Backend::Socket,
        BackendArg::Xdp => xdhcp_config::model::Backend::Xdp,
    });
    let server = xdhcp_dataplane::server::Server::start(loaded.config, backend)?;
    let stop = server.stop_flag();
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tracing::info!("stopping");
    server.shutdown()
}

fn export(journal: &std::path::Path, out: &std::path::Path, family: u8) -> anyhow::Result<()> {
    let state = read_state(journal, false)
        .with_context(|| format!("reading journal {}", journal.display()))?;
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let stats = match family {
        4 => csv::write_lease4_csv(&mut w, state.leases4.iter())?,
        6 => csv::write_lease6_csv(&mut w, state.leases6.iter())?,
        _ => anyhow::bail!("--family must be 4 or 6"),
    };
    use std::io::Write;
    w.flush()?;
    eprintln!("exported {stats:?} to {}", out.display());
    Ok(())
}

fn import(csv_path: &std::path::Path, journal: &std::path::Path, family: u8) -> anyhow::Result<()> {
    let f =
        std::fs::File::open(csv_path).with_context(|| format!("opening {}", csv_path.display()))?;
    let rd = std::io::BufReader::new(f);
    let changes: Vec<LeaseChange> = match family {
        4 => csv::read_lease4_csv(rd)?
            .into_iter()
            .map(LeaseChange::Put4)
            .collect(),
        6 => csv::read_lease6_csv(rd)?
            .into_iter()
            .map(LeaseChange::Put6)
            .collect(),
        _ => anyhow::bail!("--family must be 4 or 6"),
    };
    let (j, _) = Journal::open(JournalConfig::new(journal))?;
    let p = j.producer();
    let n = changes.len();
    for c in changes {
        xdhcp_dataplane::server::push_waiting(&p, c);
    }
    drop(p);
    j.shutdown()?;
    eprintln!("imported {n} lease(s) into {}", journal.display());
    Ok(())
}
