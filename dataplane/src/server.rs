//! Assembles a running DHCP server from a validated configuration: the lease store (rebuilt from
//! the journal, or seeded from a Kea memfile CSV on first start), the compiled runtime, one
//! [`Worker`] per backend thread with its own journal producer, the reclamation thread and the
//! control socket. This is the only place that decides which shells drive the engine.

use crate::backend::{FrameHandler, Now};
use crate::engine::ha_gate::HaGate;
use crate::engine::runtime4::Runtime4;
use crate::engine::{LeaseSink, NullSink, Shared, Worker};
use crate::lease::journal::{Journal, JournalConfig, JournalProducer};
use crate::lease::store::{LeaseStore, StoreSizing};
use crate::lease::LeaseChange;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use crate::lease::alloc::Split;
use xdhcp_config::model::{Backend, Config, HaMode, HaRelationship, HaRole};

impl LeaseSink for JournalProducer {
    fn has_room(&self) -> bool {
        JournalProducer::has_room(self)
    }
    fn push(&self, change: LeaseChange) -> bool {
        self.try_push(change).is_ok()
    }
}

/// Build the shared engine state (store, runtime, gate) for a configuration. Used by the server,
/// the tests and the benchmarks alike, so they all exercise the same code.
pub fn build_shared(cfg: &Config, workers: usize, interfaces: Vec<(u32, String)>) -> anyhow::Result<Shared> {
    let d4 = cfg.dhcp4.as_ref().context("the configuration has no Dhcp4 section")?;
    let mut pools = Vec::new();
    let rels = &d4.high_availability;
    let split_for = |s: &xdhcp_config::model::Subnet4| ha_split(rels, s.ha_server_name.as_deref());
    let rt4 = Runtime4::new(d4, &mut pools, workers.max(1), &split_for);
    let total: u64 = pools.iter().map(|p| p.alloc.units()).sum();
    let sizing = StoreSizing {
        shards: 256,
        stripes: workers.max(1),
        expected_leases: total.min(4 << 20) as usize,
    };
    let store = Arc::new(LeaseStore::new(pools, &sizing));
    let subnets: Vec<_> = d4.subnets.iter().map(|s| (s.id, s.ha_server_name.clone())).collect();
    let gate = if d4.high_availability.is_empty() { HaGate::standalone() } else { HaGate::new(&d4.high_availability, &subnets) };
    Ok(Shared { rt4: Some(rt4), store, gate, stats: Default::default(), enabled: AtomicBool::new(true), interfaces })
}

/// Address ownership for a subnet under HA (see [`Split`]): which relationship serves it and
/// this server's role there.
pub fn ha_split(rels: &[HaRelationship], tag: Option<&str>) -> Split {
    let rel = match tag {
        Some(name) => rels.iter().find(|r| r.this_server_name == name || r.peers.iter().any(|p| p.name == name)),
        None if rels.len() == 1 => rels.first(),
        None => None,
    };
    let Some(r) = rel else { return Split::AllMine };
    let role = r.peers.iter().find(|p| p.name == r.this_server_name).map(|p| p.role);
    match (r.mode, role) {
        (HaMode::LoadBalancing, Some(HaRole::Primary)) => Split::Modulo { modulus: 2, mine: 0b01 },
        (HaMode::LoadBalancing, Some(HaRole::Secondary)) => Split::Modulo { modulus: 2, mine: 0b10 },
        // The standby keeps a 10% reserve so that after a failover it can serve new clients at
        // once without touching addresses the primary may have leased unseen.
        (HaMode::HotStandby, Some(HaRole::Primary)) => Split::Modulo { modulus: 10, mine: 0b11_1111_1110 },
        (HaMode::HotStandby, Some(HaRole::Standby)) => Split::Modulo { modulus: 10, mine: 0b1 },
        _ => Split::AllMine,
    }
}

enum RunningBackend {
    Socket(crate::backend::socket::SocketBackend),
    #[cfg(feature = "xdp")]
    Xdp(crate::backend::xdp::XdpBackend),
}

pub struct Server {
    pub shared: Arc<Shared>,
    pub config: Arc<parking_lot::Mutex<Config>>,
    journal: Option<Arc<Journal>>,
    backend: Option<RunningBackend>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn number_of_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Server {
    pub fn start(cfg: Config, backend_override: Option<Backend>) -> anyhow::Result<Server> {
        let d4 = cfg.dhcp4.clone().context("the configuration has no Dhcp4 section (Dhcp6-only is not served yet)")?;
        if d4.interfaces.is_empty() {
            anyhow::bail!(
                "{}: Dhcp4.interfaces-config.interfaces is empty: xdhcp serves only interfaces named there",
                cfg.source.display()
            );
        }
        let names: Vec<String> = d4.interfaces.iter().map(|i| i.name.clone()).collect();
        let backend_kind = backend_override.unwrap_or(d4.tuning.backend);
        let workers = match d4.tuning.workers {
            0 => number_of_cpus(),
            n => n as usize,
        };
        let mut ifaces = Vec::new();
        for n in &names {
            let i = crate::backend::socket::interface_info(n)?;
            ifaces.push((i.ifindex, i.name));
        }
        let shared = Arc::new(build_shared(&cfg, workers, ifaces)?);

        // Durable state first: replay the journal (or import Kea's CSV once) before serving.
        let journal = match JournalConfig::from_lease_database(&d4.lease_database, d4.tuning.journal_queue) {
            Some(jc) => {
                let fresh = !jc.dir.exists();
                let (j, replayed) = Journal::open(jc).context("opening the lease journal")?;
                let n = replayed.leases4.len();
                for l in replayed.leases4 {
                    shared.store.put4(l);
                }
                for l in replayed.leases6 {
                    shared.store.put6(l);
                }
                tracing::info!(leases = n, last_seq = replayed.last_seq, "lease journal replayed");
                let j = Arc::new(j);
                if fresh {
                    if let Some(csv) = d4.lease_database.path.as_ref().filter(|p| p.exists()) {
                        import_kea_csv(&shared, &j, csv)?;
                    }
                }
                Some(j)
            }
            None => None,
        };
        let sink_for = |j: &Option<Arc<Journal>>| -> Box<dyn LeaseSink> {
            match j {
                Some(j) => Box::new(j.producer()),
                None => Box::new(NullSink),
            }
        };
        let make_handler = |i: usize| -> Box<dyn FrameHandler> { Box::new(Worker::new(shared.clone(), i, sink_for(&journal))) };
        let backend = match backend_kind {
            Backend::Socket => {
                let cfgb = crate::backend::socket::SocketBackendConfig { interfaces: names.clone(), workers, v6: false };
                let b = crate::backend::socket::SocketBackend::start(&cfgb, &make_handler)?;
                tracing::info!(interfaces = ?names, workers, "serving DHCPv4 with the socket backend");
                RunningBackend::Socket(b)
            }
            #[cfg(feature = "xdp")]
            Backend::Xdp => {
                let xc = crate::backend::xdp::XdpBackendConfig::from_tuning(names.clone(), &d4.tuning);
                let b = crate::backend::xdp::XdpBackend::start(&xc, &make_handler)?;
                tracing::info!(interfaces = ?names, modes = ?b.attached(), queues = b.queues().len(), "serving DHCPv4 with the AF_XDP backend");
                RunningBackend::Xdp(b)
            }
            #[cfg(not(feature = "xdp"))]
            Backend::Xdp => anyhow::bail!("this build has no AF_XDP backend (feature `xdp` disabled)"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Reclamation: Kea's expired-leases-processing, plus prompt release of expired offers.
        {
            let shared = shared.clone();
            let sink = sink_for(&journal);
            let stop = stop.clone();
            let elp = d4.expired_leases;
            threads.push(std::thread::Builder::new().name("xdhcp-reclaim".into()).spawn(move || {
                let mut cursor4 = 0;
                let mut cursor6 = 0;
                let wait = Duration::from_secs(u64::from(elp.reclaim_timer_wait_time_secs.max(1)));
                let max = if elp.max_reclaim_leases == 0 { usize::MAX } else { elp.max_reclaim_leases as usize };
                let mut last = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() < wait.min(Duration::from_secs(1)) {
                        continue;
                    }
                    last = std::time::Instant::now();
                    let now = Now::read().unix_secs;
                    let mut push = |c: LeaseChange| {
                        // The journal queue is bounded; a reclaim that cannot be journaled now is
                        // harmless (replay yields an expired lease, reclaimed again later).
                        let _ = sink.push(c);
                    };
                    shared.store.reclaim4(now, max, &mut cursor4, &mut push);
                    shared.store.reclaim6(now, max, &mut cursor6, &mut push);
                }
            })?);
        }
        let config = Arc::new(parking_lot::Mutex::new(cfg.clone()));
        if let Some(cs) = &d4.control_socket {
            let h = crate::control_socket::spawn(
                cs.socket_name.clone(),
                crate::control_socket::Context {
                    shared: shared.clone(),
                    journal: journal.clone(),
                    sink: parking_lot::Mutex::new(sink_for(&journal)),
                    config: config.clone(),
                    stop: stop.clone(),
                },
            )?;
            threads.push(h);
        } else {
            tracing::warn!("no control-socket configured: lease and statistics commands are unavailable");
        }
        Ok(Server { shared, config, journal, backend: Some(backend), stop, threads })
    }

    /// The flag that stops the server (set by signals and by the `shutdown` command).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stop serving, drain the journal and detach from the interfaces.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.backend.take() {
            Some(RunningBackend::Socket(b)) => b.stop(),
            #[cfg(feature = "xdp")]
            Some(RunningBackend::Xdp(b)) => b.stop()?,
            None => {}
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(j) = self.journal.take() {
            match Arc::try_unwrap(j) {
                Ok(j) => {
                    j.shutdown()?;
                }
                Err(j) => {
                    j.flush_blocking(Duration::from_secs(5))?;
                }
            }
        }
        Ok(())
    }
}

fn import_kea_csv(shared: &Shared, journal: &Journal, csv: &std::path::Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(csv).with_context(|| format!("opening {}", csv.display()))?;
    let leases = crate::lease::csv::read_lease4_csv(std::io::BufReader::new(f))
        .with_context(|| format!("importing Kea memfile {}", csv.display()))?;
    let p = journal.producer();
    let n = leases.len();
    for l in leases {
        shared.store.put4(l.clone());
        let mut c = LeaseChange::Put4(l);
        // Bounded wait: the journal thread drains the queue continuously.
        loop {
            match p.try_push(c) {
                Ok(()) => break,
                Err(back) => {
                    c = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    journal.flush_blocking(Duration::from_secs(30))?;
    tracing::info!(leases = n, file = %csv.display(), "imported Kea memfile leases into a new journal");
    Ok(())
}
