//! Assembles a running DHCP server from a validated configuration: the lease store (rebuilt from
//! the journal, or seeded from a Kea memfile CSV on first start), the compiled runtime, one
//! [`Worker`] per backend thread with its own journal producer, the reclamation thread and the
//! control socket. This is the only place that decides which shells drive the engine.

use crate::backend::{FrameHandler, Now};
use crate::engine::ha_gate::HaGate;
use crate::engine::runtime4::Runtime4;
use crate::engine::runtime6::Runtime6;
use crate::engine::{LeaseSink, NullSink, Shared, Worker};
use crate::lease::alloc::Split;
use crate::lease::journal::{Journal, JournalConfig, JournalProducer};
use crate::lease::store::{LeaseStore, StoreSizing};
use crate::lease::LeaseChange;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xdhcp_config::model::{Backend, Config, HaMode, HaRelationship, HaRole};

impl LeaseSink for JournalProducer {
    fn room_for(&self, n: usize) -> bool {
        JournalProducer::room_for(self, n)
    }
    fn take_version(&self) -> u64 {
        JournalProducer::take_version(self)
    }
    fn push_versioned(&self, version: u64, change: LeaseChange) -> bool {
        self.try_push_versioned(version, change).is_ok()
    }
    fn pushed(&self) -> u64 {
        JournalProducer::pushed(self)
    }
    fn write_progress(&self) -> Option<crate::lease::journal::WriteProgress> {
        Some(JournalProducer::write_progress(self))
    }
}

/// Build the shared engine state (store, runtime, gate) for a configuration. Used by the server,
/// the tests and the benchmarks alike, so they all exercise the same code. The DHCPv6 server
/// DUID is generated in memory (not persisted); the server passes the persisted one through
/// [`build_shared_with_duid`].
pub fn build_shared(
    cfg: &Config,
    workers: usize,
    interfaces: Vec<(u32, String)>,
) -> anyhow::Result<Shared> {
    build_shared_with_duid(cfg, workers, interfaces, None)
}

/// [`build_shared`] with the DHCPv6 server DUID read or created by the caller (file I/O stays
/// in the shell). Both families share one lease store: v6 pools are registered after v4's.
pub fn build_shared_with_duid(
    cfg: &Config,
    workers: usize,
    interfaces: Vec<(u32, String)>,
    server_duid: Option<Vec<u8>>,
) -> anyhow::Result<Shared> {
    if cfg.dhcp4.is_none() && cfg.dhcp6.is_none() {
        anyhow::bail!("the configuration has neither a Dhcp4 nor a Dhcp6 section");
    }
    let mut pools = Vec::new();
    let rt4 = cfg.dhcp4.as_ref().map(|d4| {
        let rels = &d4.high_availability;
        let split_for =
            |s: &xdhcp_config::model::Subnet4| ha_split(rels, s.ha_server_name.as_deref());
        Runtime4::new(d4, &mut pools, workers.max(1), &split_for)
    });
    let rt6 = match cfg.dhcp6.as_ref() {
        Some(d6) => {
            let duid = match server_duid {
                Some(d) => d,
                None => crate::engine::duid::generate(
                    &d6.server_id,
                    Some([2, 0, 0, 0, 0, 1]),
                    Now::read().unix_secs,
                    [0; 6],
                )
                .context("Dhcp6.server-id")?,
            };
            let rels = &d6.high_availability;
            let split_for =
                |s: &xdhcp_config::model::Subnet6| ha_split(rels, s.ha_server_name.as_deref());
            let mut rt6 = Runtime6::new(d6, duid, &mut pools, workers.max(1), &split_for);
            for (ifindex, name) in &interfaces {
                if let Some(ll) = ipv6_link_local(name) {
                    rt6.link_local.insert(*ifindex, ll);
                }
            }
            Some(rt6)
        }
        None => None,
    };
    // Room is reserved up front for the v4 pools only: v6 pools can be astronomically large (a /64
    // holds 2^64 addresses) and the v6 index grows with the leases actually handed out.
    let total: u64 = pools
        .iter()
        .filter(|p| p.v6_type.is_none())
        .fold(0u64, |a, p| a.saturating_add(p.alloc.units()));
    let sizing = StoreSizing {
        shards: 256,
        stripes: workers.max(1),
        expected_leases: total.min(4 << 20) as usize,
        // The tables hold DHCPv4 leases: Dhcp4's setting decides.
        prefault: cfg
            .dhcp4
            .as_ref()
            .is_some_and(|d4| d4.tuning.prefault_tables),
    };
    let store = Arc::new(LeaseStore::new(pools, &sizing));
    // One HA gate per family, each from its own section's relationships (standalone without).
    let gate4 = cfg.dhcp4.as_ref().map_or_else(HaGate::standalone, |d4| {
        let subnets: Vec<_> = d4
            .subnets
            .iter()
            .map(|s| (s.id, s.ha_server_name.clone()))
            .collect();
        HaGate::new(&d4.high_availability, &subnets)
    });
    let gate6 = cfg.dhcp6.as_ref().map_or_else(HaGate::standalone, |d6| {
        let subnets: Vec<_> = d6
            .subnets
            .iter()
            .map(|s| (s.id, s.ha_server_name.clone()))
            .collect();
        HaGate::new(&d6.high_availability, &subnets)
    });
    Ok(Shared {
        rt4,
        rt6,
        store,
        gate4,
        gate6,
        stats: Default::default(),
        enabled: AtomicBool::new(true),
        interfaces,
        retired: AtomicBool::new(false),
    })
}

/// The first IPv6 link-local address of an interface (the source of DHCPv6 replies to direct
/// clients), from getifaddrs. Startup only.
pub fn ipv6_link_local(name: &str) -> Option<std::net::Ipv6Addr> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to a sockaddr of at least its family's size.
        if n.to_bytes() != name.as_bytes()
            || i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET6
        {
            continue;
        }
        // SAFETY: the family is AF_INET6, so the address is a sockaddr_in6.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read(ifa.ifa_addr.cast()) };
        let a = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        if crate::engine::runtime6::is_link_local(a) {
            found = Some(a);
            break;
        }
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found
}

/// Address ownership for a subnet under HA (see [`Split`]): which relationship serves it and
/// this server's role there.
pub fn ha_split(rels: &[HaRelationship], tag: Option<&str>) -> Split {
    let rel = match tag {
        Some(name) => rels
            .iter()
            .find(|r| r.this_server_name == name || r.peers.iter().any(|p| p.name == name)),
        None if rels.len() == 1 => rels.first(),
        None => None,
    };
    let Some(r) = rel else { return Split::AllMine };
    let role = r
        .peers
        .iter()
        .find(|p| p.name == r.this_server_name)
        .map(|p| p.role);
    match (r.mode, role) {
        (HaMode::LoadBalancing, Some(HaRole::Primary)) => Split::Modulo {
            modulus: 2,
            mine: 0b01,
        },
        (HaMode::LoadBalancing, Some(HaRole::Secondary)) => Split::Modulo {
            modulus: 2,
            mine: 0b10,
        },
        // The standby keeps a 10% reserve so that after a failover it can serve new clients at
        // once without touching addresses the primary may have leased unseen.
        (HaMode::HotStandby, Some(HaRole::Primary)) => Split::Modulo {
            modulus: 10,
            mine: 0b11_1111_1110,
        },
        (HaMode::HotStandby, Some(HaRole::Standby)) => Split::Modulo {
            modulus: 10,
            mine: 0b1,
        },
        _ => Split::AllMine,
    }
}

enum RunningBackend {
    Socket(crate::backend::socket::SocketBackend),
    #[cfg(feature = "xdp")]
    Xdp(crate::backend::xdp::XdpBackend),
}

pub struct Server {
    /// The state at start; see [`Server::current`] after reloads.
    pub shared: Arc<Shared>,
    current: Arc<ArcSwap<Shared>>,
    pub config: Arc<parking_lot::Mutex<Config>>,
    journal: Option<Arc<Journal>>,
    backend: Option<RunningBackend>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Where the server's own threads go (journal, reclaim, control socket): onto the CPUs the
/// AF_XDP workers leave free (see `XdpBackend::housekeeping_cpus`), so a worker never waits behind
/// them; left alone with the socket backend (its workers are not pinned) or when no CPU is free.
struct Housekeeping(Vec<usize>);

impl Housekeeping {
    /// Runs `spawn` so that the threads it starts inherit the housekeeping CPUs.
    fn spawn<T>(&self, spawn: impl FnOnce() -> T) -> T {
        #[cfg(feature = "xdp")]
        if !self.0.is_empty() {
            return crate::backend::xdp::sys::spawning_on(&self.0, spawn);
        }
        spawn()
    }
}

/// The housekeeping CPUs for `backend`; moves the journal's writer thread (started before the
/// workers, so that replay finishes first) there at once.
fn housekeeping_cpus(backend: &RunningBackend, journal: Option<&Journal>) -> Housekeeping {
    match backend {
        RunningBackend::Socket(_) => Housekeeping(Vec::new()),
        #[cfg(feature = "xdp")]
        RunningBackend::Xdp(b) => {
            let cpus = b.housekeeping_cpus().to_vec();
            let workers: Vec<usize> = b.queues().iter().map(|q| q.cpu).collect();
            if cpus.is_empty() {
                tracing::info!(
                    workers = ?workers,
                    "every allowed CPU has an AF_XDP worker: the journal, reclaim and control threads share them"
                );
                return Housekeeping(cpus);
            }
            if let Some(t) = journal.and_then(Journal::writer_pthread) {
                if let Err(e) = crate::backend::xdp::sys::set_thread_cpus(t, &cpus) {
                    tracing::warn!(?cpus, error = %e, "could not move the journal thread to the housekeeping CPUs");
                }
            }
            tracing::info!(workers = ?workers, housekeeping = ?cpus, "AF_XDP workers pinned; the journal, reclaim and control threads run on the other CPUs");
            Housekeeping(cpus)
        }
    }
}

fn number_of_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Server {
    pub fn start(cfg: Config, backend_override: Option<Backend>) -> anyhow::Result<Server> {
        // Settings both families have come from Dhcp4 when present, else from Dhcp6; the
        // interfaces served are those of both sections.
        let (fam, tuning, lease_db, elp, control_socket) = match (&cfg.dhcp4, &cfg.dhcp6) {
            (Some(d4), _) => (
                "Dhcp4",
                d4.tuning.clone(),
                d4.lease_database.clone(),
                d4.expired_leases,
                d4.control_socket.clone(),
            ),
            (None, Some(d6)) => (
                "Dhcp6",
                d6.tuning.clone(),
                d6.lease_database.clone(),
                d6.expired_leases,
                d6.control_socket.clone(),
            ),
            (None, None) => anyhow::bail!(
                "{}: the configuration has neither a Dhcp4 nor a Dhcp6 section",
                cfg.source.display()
            ),
        };
        let mut names: Vec<String> = Vec::new();
        let specs = cfg
            .dhcp4
            .iter()
            .flat_map(|d| d.interfaces.iter())
            .chain(cfg.dhcp6.iter().flat_map(|d| d.interfaces.iter()));
        for i in specs {
            if !names.contains(&i.name) {
                names.push(i.name.clone());
            }
        }
        if names.is_empty() {
            anyhow::bail!(
                "{}: {fam}.interfaces-config.interfaces is empty: xdhcp serves only interfaces named there",
                cfg.source.display()
            );
        }
        let backend_kind = backend_override.unwrap_or(tuning.backend);
        let workers = match tuning.workers {
            0 => number_of_cpus(),
            n => n as usize,
        };
        let mut ifaces = Vec::new();
        let mut macs = Vec::new();
        for n in &names {
            let i = crate::backend::socket::interface_info(n)?;
            ifaces.push((i.ifindex, i.name.clone()));
            macs.push((i.name, i.mac));
        }
        // The DHCPv6 server DUID is kept across restarts (Kea's server-id persistence).
        let server_duid = match &cfg.dhcp6 {
            Some(d6) => {
                let first6 = d6.interfaces.first().map(|i| i.name.as_str());
                let mac = macs
                    .iter()
                    .find(|(n, _)| Some(n.as_str()) == first6)
                    .map(|(_, m)| *m);
                let d = crate::engine::duid::load_or_create(d6, mac, Now::read().unix_secs)?;
                tracing::info!(duid = %crate::lease::json::hex_colon(&d), "DHCPv6 server DUID");
                Some(d)
            }
            None => None,
        };
        let shared = Arc::new(build_shared_with_duid(
            &cfg,
            workers,
            ifaces.clone(),
            server_duid.clone(),
        )?);
        // Workers, the reclaimer and the control socket follow `current`, where a configuration
        // reload publishes the new state.
        let current = Arc::new(ArcSwap::new(shared.clone()));

        // Durable state first: replay the journal (or import Kea's CSV once) before serving.
        let journal = match JournalConfig::from_lease_database(&lease_db, tuning.journal_queue) {
            Some(mut jc) => {
                if tuning.replication == xdhcp_config::model::Replication::Synchronous {
                    // Replies wait until their change is written and acknowledged by the peers.
                    jc.idle_park = Duration::from_millis(1);
                }
                let fresh = !jc.dir.exists();
                let (j, replayed) = Journal::open(jc).context("opening the lease journal")?;
                let n = replayed.leases4.len();
                for l in replayed.leases4 {
                    shared.store.put4(l);
                }
                for l in replayed.leases6 {
                    shared.store.put6(l);
                }
                tracing::info!(
                    leases = n,
                    last_seq = replayed.last_seq,
                    "lease journal replayed"
                );
                let j = Arc::new(j);
                if fresh {
                    if let Some(csv) = cfg
                        .dhcp4
                        .as_ref()
                        .and_then(|d| d.lease_database.path.as_ref())
                        .filter(|p| p.exists())
                    {
                        import_kea_csv(&shared, &j, csv)?;
                    }
                    if let Some(csv) = cfg
                        .dhcp6
                        .as_ref()
                        .and_then(|d| d.lease_database.path.as_ref())
                        .filter(|p| p.exists())
                    {
                        import_kea_csv6(&shared, &j, csv)?;
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
        // Synchronous replication: workers park replies until control, through the gate page,
        // reports the peers' acknowledgement (crate::syncrepl).
        let sync_gate = match (&journal, tuning.replication) {
            (Some(j), xdhcp_config::model::Replication::Synchronous) => {
                let p = crate::syncrepl::gate::gate_path(j.dir());
                let g = crate::syncrepl::gate::Gate::open(&p)?;
                tracing::info!(gate = %p.display(), parked_packet_limit = tuning.parked_packet_limit, timeout_ms = tuning.sync_ack_timeout_ms, "synchronous replication: replies that change a lease wait for the HA peers' acknowledgement");
                Some(Arc::new(g))
            }
            _ => None,
        };
        let make_handler = |i: usize| -> Box<dyn FrameHandler> {
            let mut w = Worker::following(current.clone(), i, sink_for(&journal));
            if let Some(g) = &sync_gate {
                w.sync = Some(crate::engine::WorkerSync {
                    gate: g.clone(),
                    timeout_ns: u64::from(tuning.sync_ack_timeout_ms) * 1_000_000,
                    // Kea's 0 means no limit; xdhcp bounds every queue.
                    capacity: match tuning.parked_packet_limit {
                        0 => 4096,
                        n => n as usize,
                    },
                });
            }
            Box::new(w)
        };
        let backend = match backend_kind {
            Backend::Socket => {
                let cfgb = crate::backend::socket::SocketBackendConfig {
                    interfaces: names.clone(),
                    workers,
                    v6: cfg.dhcp6.is_some(),
                };
                let b = crate::backend::socket::SocketBackend::start(&cfgb, &make_handler)?;
                tracing::info!(interfaces = ?names, workers, v4 = cfg.dhcp4.is_some(), v6 = cfg.dhcp6.is_some(), "serving DHCP with the socket backend");
                RunningBackend::Socket(b)
            }
            #[cfg(feature = "xdp")]
            Backend::Xdp => {
                let xc = crate::backend::xdp::XdpBackendConfig::from_tuning(names.clone(), &tuning);
                let b = crate::backend::xdp::XdpBackend::start(&xc, &make_handler)?;
                // Socket and XDP program counters join statistic-get-all (kept across reloads).
                current.load().stats.add_source(b.stats_source());
                tracing::info!(interfaces = ?names, modes = ?b.attached(), queues = b.queues().len(), v4 = cfg.dhcp4.is_some(), v6 = cfg.dhcp6.is_some(), "serving DHCP with the AF_XDP backend");
                RunningBackend::Xdp(b)
            }
            #[cfg(not(feature = "xdp"))]
            Backend::Xdp => {
                anyhow::bail!("this build has no AF_XDP backend (feature `xdp` disabled)")
            }
        };
        let housekeeping = housekeeping_cpus(&backend, journal.as_deref());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Reclamation: Kea's expired-leases-processing, plus prompt release of expired offers.
        {
            let current = current.clone();
            let sink = sink_for(&journal);
            let stop = stop.clone();
            threads.push(housekeeping.spawn(|| {
                std::thread::Builder::new()
                    .name("xdhcp-reclaim".into())
                    .spawn(move || {
                        let mut cursor4 = 0;
                        let mut cursor6 = 0;
                        let wait =
                            Duration::from_secs(u64::from(elp.reclaim_timer_wait_time_secs.max(1)));
                        let max = if elp.max_reclaim_leases == 0 {
                            usize::MAX
                        } else {
                            elp.max_reclaim_leases as usize
                        };
                        let mut last = std::time::Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(200));
                            // Kea's reclaim-timer-wait-time (10 s by default) runs from the end of
                            // one pass to the start of the next. (This used to cap it at 1 s: a
                            // full pass over a million-address pool every second was 1.2% of the
                            // worker's core at peak load, for leases allocation can reuse anyway.)
                            if last.elapsed() < wait {
                                continue;
                            }
                            let now = Now::read().unix_secs;
                            let mut push = |c: LeaseChange| {
                                // The journal queue is bounded; a reclaim that cannot be journaled now is
                                // harmless (replay yields an expired lease, reclaimed again later).
                                let _ = sink.push(c);
                            };
                            let shared = current.load();
                            reclaim_in_slices(
                                &shared.store,
                                now,
                                max,
                                (&mut cursor4, &mut cursor6),
                                &stop,
                                &mut push,
                            );
                            last = std::time::Instant::now();
                        }
                    })
            })?);
        }
        let config = Arc::new(parking_lot::Mutex::new(cfg.clone()));
        if let Some(cs) = &control_socket {
            let h = housekeeping.spawn(|| {
                crate::control_socket::spawn(
                    cs.socket_name.clone(),
                    crate::control_socket::Context {
                        shared: shared.clone(),
                        current: Some(current.clone()),
                        reload: Some(Box::new({
                            let (current, config) = (current.clone(), config.clone());
                            move |path: Option<&std::path::Path>| {
                                reload(
                                    &current,
                                    &config,
                                    path,
                                    workers,
                                    &ifaces,
                                    server_duid.clone(),
                                )
                            }
                        })),
                        journal: journal.clone(),
                        sink: parking_lot::Mutex::new(sink_for(&journal)),
                        config: config.clone(),
                        stop: stop.clone(),
                    },
                )
            })?;
            threads.push(h);
        } else {
            tracing::warn!(
                "no control-socket configured: lease and statistics commands are unavailable"
            );
        }
        Ok(Server {
            shared,
            current,
            config,
            journal,
            backend: Some(backend),
            stop,
            threads,
        })
    }

    /// The state workers currently use (changes on configuration reload).
    pub fn current(&self) -> Arc<Shared> {
        self.current.load_full()
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
            Some(RunningBackend::Xdp(b)) => {
                // Frames the kernel dropped before a worker saw them (rx ring full, fill ring
                // empty) are the one loss the engine's statistics cannot show: say it on the way
                // out, so a load test can tell its own losses from the server's.
                if let Ok(s) = b.stats() {
                    for (q, c) in &s.queues {
                        tracing::info!(
                            iface = %q.iface,
                            queue = q.queue,
                            rx_frames = c.rx_frames,
                            replies = c.replies,
                            kernel_rx_ring_full = c.kernel_rx_ring_full,
                            kernel_rx_dropped = c.kernel_rx_dropped,
                            kernel_fill_empty = c.kernel_fill_empty,
                            tx_ring_full = c.tx_ring_full,
                            tx_no_frame = c.tx_no_frame,
                            "AF_XDP queue totals"
                        );
                    }
                }
                b.stop()?
            }
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

/// Queue a change on a journal producer, waiting while its queue is full. Only for bulk loads
/// (CSV import), never on the hot path: the journal thread drains the queue continuously.
pub fn push_waiting(p: &crate::lease::journal::JournalProducer, change: LeaseChange) {
    let mut c = change;
    while let Err(back) = p.try_push(c) {
        c = back;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// On first start with a new journal, load Kea's memfile CSV (lease4 or lease6) into the store
/// and the journal, so a Kea user keeps every lease.
fn import_kea_csv_family(
    shared: &Shared,
    journal: &Journal,
    csv: &std::path::Path,
    v6: bool,
) -> anyhow::Result<()> {
    let f = std::fs::File::open(csv).with_context(|| format!("opening {}", csv.display()))?;
    let rd = std::io::BufReader::new(f);
    let context = || format!("importing Kea memfile {}", csv.display());
    let changes: Vec<LeaseChange> = if v6 {
        crate::lease::csv::read_lease6_csv(rd)
            .with_context(context)?
            .into_iter()
            .map(LeaseChange::Put6)
            .collect()
    } else {
        crate::lease::csv::read_lease4_csv(rd)
            .with_context(context)?
            .into_iter()
            .map(LeaseChange::Put4)
            .collect()
    };
    let p = journal.producer();
    let n = changes.len();
    for c in changes {
        shared.store.apply(c.clone());
        push_waiting(&p, c);
    }
    journal.flush_blocking(Duration::from_secs(30))?;
    tracing::info!(leases = n, v6, file = %csv.display(), "imported Kea memfile leases into a new journal");
    Ok(())
}

fn import_kea_csv(shared: &Shared, journal: &Journal, csv: &std::path::Path) -> anyhow::Result<()> {
    import_kea_csv_family(shared, journal, csv, false)
}

fn import_kea_csv6(
    shared: &Shared,
    journal: &Journal,
    csv: &std::path::Path,
) -> anyhow::Result<()> {
    import_kea_csv_family(shared, journal, csv, true)
}

/// `config-reload`: validate the file (the current one, or `path`), build the new state, copy
/// the leases across and publish it. A configuration with errors is refused and the running
/// one keeps serving. Interfaces and the backend are fixed at start: changing them needs a
/// restart, and a reload that changes them is refused rather than half-applied.
pub fn reload(
    current: &ArcSwap<Shared>,
    config: &parking_lot::Mutex<Config>,
    path: Option<&std::path::Path>,
    workers: usize,
    ifaces: &[(u32, String)],
    server_duid: Option<Vec<u8>>,
) -> Result<String, String> {
    let mut cfg_guard = config.lock();
    let path = path
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| cfg_guard.source.clone());
    let loaded = xdhcp_config::load_file(&path).map_err(|e| e.to_string())?;
    let new_cfg = loaded.config;
    let names = |c: &Config| -> Vec<String> {
        let mut v: Vec<String> = c
            .dhcp4
            .iter()
            .flat_map(|d| d.interfaces.iter())
            .chain(c.dhcp6.iter().flat_map(|d| d.interfaces.iter()))
            .map(|i| i.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if names(&new_cfg) != names(&cfg_guard) {
        return Err(format!(
            "{}: interfaces-config.interfaces changed ({:?} → {:?}): restart xdhcp to change interfaces; the running configuration is kept",
            path.display(),
            names(&cfg_guard),
            names(&new_cfg)
        ));
    }
    let new = build_shared_with_duid(&new_cfg, workers, ifaces.to_vec(), server_duid)
        .map_err(|e| format!("{e:#}"))?;
    let old = current.load_full();
    new.stats.adopt(&old.stats);
    new.gate4.adopt(&old.gate4);
    new.gate6.adopt(&old.gate6);
    new.enabled
        .store(old.enabled.load(Ordering::Relaxed), Ordering::Relaxed);
    // Quiesce: workers see `retired` on their next frame and drop it (counted) until they pick
    // up the new state; a frame already in flight finishes within microseconds.
    old.retired.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    let mut copied = 0usize;
    let mut outside = 0usize;
    old.store.for_each4(&mut |l| {
        copied += 1;
        if new
            .store
            .pool_of(u128::from(u32::from(l.addr)), None)
            .is_none()
        {
            outside += 1;
        }
        new.store.put4(l.clone());
    });
    old.store.for_each6(&mut |l| {
        copied += 1;
        new.store.put6(l.clone());
    });
    // Workers look for a new state only once theirs is retired (engine::Worker::handle).
    current.store(Arc::new(new));
    *cfg_guard = new_cfg;
    tracing::info!(leases = copied, outside_new_pools = outside, file = %path.display(), "configuration reloaded");
    Ok(format!("Configuration successfully reloaded from {} ({copied} leases kept, {outside} outside the new pools).", path.display()))
}

/// Longest stretch the reclaimer runs before it pauses. It shares its CPU with workers (on a small
/// box, or when the process is confined to one core): a pass over millions of leases takes
/// milliseconds, and a worker preempted for that long answers late; the scheduler does not give the
/// CPU back to it before the reclaimer's slice ends (measured: 3.1 ms stalls every second at 2M leases).
const RECLAIM_SLICE: Duration = Duration::from_micros(50);
/// Pause between two slices of a reclaim pass: the CPU goes to whoever waits for it.
const RECLAIM_PAUSE: Duration = Duration::from_micros(500);

/// One reclaim pass (Kea's expired-leases-processing run: at most `max` leases) over both families,
/// in slices of [`RECLAIM_SLICE`] separated by [`RECLAIM_PAUSE`].
fn reclaim_in_slices(
    store: &LeaseStore,
    now: u64,
    max: usize,
    (cursor4, cursor6): (&mut usize, &mut usize),
    stop: &AtomicBool,
    push: &mut dyn FnMut(LeaseChange),
) {
    let mut reclaimed = 0;
    for v6 in [false, true] {
        let positions = if v6 {
            store.reclaim_positions6()
        } else {
            store.reclaim_positions4()
        };
        let mut visited = 0;
        while visited < positions && reclaimed < max && !stop.load(Ordering::Relaxed) {
            let until = std::time::Instant::now() + RECLAIM_SLICE;
            let mut keep_going = || std::time::Instant::now() < until;
            let left = max - reclaimed;
            let p = if v6 {
                store.reclaim6_within(now, left, cursor6, &mut keep_going, push)
            } else {
                store.reclaim4_within(now, left, cursor4, &mut keep_going, push)
            };
            visited += p.visited;
            reclaimed += p.reclaimed;
            if visited < positions {
                std::thread::sleep(RECLAIM_PAUSE);
            }
        }
    }
}
