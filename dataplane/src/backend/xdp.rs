//! The AF_XDP backend: attaches the XDP program to every configured interface (native mode, else
//! generic), opens one AF_XDP socket per rx queue (zero-copy where the driver allows, else copy
//! mode), and runs one pinned worker thread per socket. A worker receives a batch, hands every
//! frame to its [`FrameHandler`] together with a free UMEM frame to write the reply into (no copy
//! in user space), sends the batch with one wakeup, and recycles frames through the completion and
//! fill rings. It owns sockets, rings, threads and the XDP attachment; the DHCP logic is the
//! handler's. On stop the workers exit and the program is detached.
//!
//! Submodules are reusable on their own: [`xsk`] (AF_XDP sockets and rings, used by the load
//! generator and the echo responder too), [`loader`] (the XDP program and its counters) and
//! [`sys`] (interface facts, rtnetlink, bpf links, affinity).

pub mod loader;
pub mod sys;
pub mod xsk;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use self::loader::{
    AttachMode, AttachedMode, Counter, CountersReader, LoaderError, ProgramCounters, SteerPorts,
    XdpProgram,
};
use self::sys::InterfaceInfo;
use self::xsk::{BindMode, Frame, XdpDesc, XskConfig, XskError, XskSocket, XskStatsReader};
use super::{FrameHandler, Now, RxContext};

/// Ethernet header plus one VLAN tag: what a frame adds on top of the MTU.
const L2_OVERHEAD: u32 = 18;

/// What the backend needs to run. Build it with [`XdpBackendConfig::new`] from the config's
/// `Tuning` and adjust the rest if needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpBackendConfig {
    /// Interfaces to serve (never a wildcard: DHCP answers only where configured).
    pub interfaces: Vec<String>,
    /// Entries in each of the four rings of every socket (power of two).
    pub ring_size: u32,
    /// UMEM frames per socket (at least 2 × `ring_size`).
    pub frame_count: u32,
    /// Frames taken from the RX ring per iteration.
    pub batch_size: u32,
    pub attach_mode: AttachMode,
    pub bind_mode: BindMode,
    /// CPUs to pin workers to, in worker order (wrapping). Empty: the CPUs this process may use.
    pub cpus: Vec<usize>,
    /// How long a worker keeps polling its empty RX ring before it sleeps in `poll(2)`
    /// (`idle-spin-us`). Spinning lowers latency and spares senders a wake-up per burst, but
    /// burns a core another process may need.
    pub idle_spin: Duration,
    /// Longest sleep in `poll(2)`: bounds how late a worker notices `stop` and runs `tick`.
    pub poll_timeout_ms: i32,
    /// Steered UDP ports (the server ports unless the program serves a load generator).
    pub ports: SteerPorts,
    /// Join ff02::1:2 on every interface so the NIC's multicast filter lets DHCPv6 through
    /// (no kernel socket listens on 547 while AF_XDP serves it).
    pub join_dhcpv6_multicast: bool,
}

impl XdpBackendConfig {
    /// Ring and UMEM sizes from the config's `user-context.xdhcp` tuning.
    pub fn from_tuning(
        interfaces: Vec<String>,
        tuning: &xdhcp_config::model::Tuning,
    ) -> XdpBackendConfig {
        let mut c = XdpBackendConfig::new(interfaces, tuning.ring_size, tuning.frame_count);
        c.idle_spin = Duration::from_micros(u64::from(tuning.idle_spin_us));
        c
    }

    /// Defaults for everything but the interfaces and sizes: native-else-generic attach,
    /// zero-copy-else-copy sockets, batches of 64, workers on the process's CPUs.
    pub fn new(interfaces: Vec<String>, ring_size: u32, frame_count: u32) -> XdpBackendConfig {
        XdpBackendConfig {
            interfaces,
            ring_size,
            frame_count,
            batch_size: 64.min(ring_size),
            attach_mode: AttachMode::Auto,
            bind_mode: BindMode::Auto,
            cpus: Vec::new(),
            idle_spin: Duration::from_micros(u64::from(xdhcp_config::model::DEFAULT_IDLE_SPIN_US)),
            poll_timeout_ms: 100,
            ports: SteerPorts::SERVER,
            join_dhcpv6_multicast: true,
        }
    }

    fn xsk_config(&self) -> XskConfig {
        let mut c = XskConfig::new(self.ring_size, self.frame_count);
        c.bind_mode = self.bind_mode;
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "no interface is configured for the AF_XDP backend (interfaces-config.interfaces is empty)"
    )]
    NoInterfaces,
    #[error("interface `{0}` does not exist (check interfaces-config.interfaces and `ip link`)")]
    UnknownInterface(String),
    #[error("reading the settings of interface `{iface}` failed: {source}")]
    Interface {
        iface: String,
        source: std::io::Error,
    },
    #[error(
        "interface `{iface}` has MTU {mtu}, too large for XDP with {frame_size}-byte UMEM frames: the largest \
         MTU is {max}. Lower it (`ip link set dev {iface} mtu {max}`) — DHCP never needs more"
    )]
    MtuTooLarge {
        iface: String,
        mtu: u32,
        max: u32,
        frame_size: u32,
    },
    #[error("invalid AF_XDP settings: {0}")]
    Config(String),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error("interface `{iface}` queue {queue}: {source}")]
    Socket {
        iface: String,
        queue: u32,
        source: XskError,
    },
    #[error(
        "interface `{iface}` queue {queue}: creating the AF_XDP socket was refused: {source}. {}",
        loader::PRIVILEGE_HINT
    )]
    Permission {
        iface: String,
        queue: u32,
        source: XskError,
    },
    #[error("starting worker thread {worker} failed: {source}")]
    Spawn {
        worker: usize,
        source: std::io::Error,
    },
    #[error("worker {worker} (interface `{iface}` queue {queue}) panicked")]
    WorkerPanicked {
        worker: usize,
        iface: String,
        queue: u32,
    },
}

/// One worker: which socket it serves and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Index passed to `make_handler`, 0..worker count, interfaces in config order, queues in order.
    pub worker: usize,
    pub iface: String,
    pub ifindex: u32,
    pub queue: u32,
    pub cpu: usize,
    pub zero_copy: bool,
}

/// Live counters of one worker. Single writer (the worker) with relaxed stores; readers may see
/// values a batch old.
#[derive(Debug, Default)]
#[repr(align(128))] // one cache line pair per worker: no false sharing between workers
pub struct QueueStats {
    rx_frames: AtomicU64,
    replies: AtomicU64,
    no_reply: AtomicU64,
    bad_reply_len: AtomicU64,
    tx_ring_full: AtomicU64,
    tx_no_frame: AtomicU64,
    tx_wakeups: AtomicU64,
    tx_wakeup_errors: AtomicU64,
    tx_wakeup_busy: AtomicU64,
    ticks: AtomicU64,
    kernel_rx_dropped: AtomicU64,
    kernel_rx_ring_full: AtomicU64,
    kernel_fill_empty: AtomicU64,
    worker_stalls: AtomicU64,
    worker_stalled_us: AtomicU64,
}

/// A reading of [`QueueStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub rx_frames: u64,
    /// Replies queued for transmission.
    pub replies: u64,
    /// Frames the handler answered with nothing (not for us, malformed, or no reply due).
    pub no_reply: u64,
    /// The handler returned a length larger than the frame: dropped (a handler bug).
    pub bad_reply_len: u64,
    /// Replies dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// Requests dropped because no UMEM frame was free for the reply.
    pub tx_no_frame: u64,
    pub tx_wakeups: u64,
    pub tx_wakeup_errors: u64,
    /// TX wakeups the kernel answered EBUSY/ENOBUFS: a frame dropped on the way out.
    pub tx_wakeup_busy: u64,
    pub ticks: u64,
    /// The kernel's drops on this socket (`XDP_STATISTICS`), read once a second.
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_empty: u64,
    /// Times the worker lost its core for at least half a millisecond while busy-polling (see
    /// [`super::StallMeter`]), and their total length.
    pub worker_stalls: u64,
    pub worker_stalled_us: u64,
}

impl QueueSnapshot {
    fn count_stalls(&mut self, m: &super::StallMeter) {
        self.worker_stalls = m.stalls;
        self.worker_stalled_us = m.stalled_ns / 1000;
    }
}

impl QueueStats {
    pub fn snapshot(&self) -> QueueSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueueSnapshot {
            rx_frames: r(&self.rx_frames),
            replies: r(&self.replies),
            no_reply: r(&self.no_reply),
            bad_reply_len: r(&self.bad_reply_len),
            tx_ring_full: r(&self.tx_ring_full),
            tx_no_frame: r(&self.tx_no_frame),
            tx_wakeups: r(&self.tx_wakeups),
            tx_wakeup_errors: r(&self.tx_wakeup_errors),
            tx_wakeup_busy: r(&self.tx_wakeup_busy),
            ticks: r(&self.ticks),
            kernel_rx_dropped: r(&self.kernel_rx_dropped),
            kernel_rx_ring_full: r(&self.kernel_rx_ring_full),
            kernel_fill_empty: r(&self.kernel_fill_empty),
            worker_stalls: r(&self.worker_stalls),
            worker_stalled_us: r(&self.worker_stalled_us),
        }
    }

    fn publish(&self, s: &QueueSnapshot) {
        let w = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        w(&self.rx_frames, s.rx_frames);
        w(&self.replies, s.replies);
        w(&self.no_reply, s.no_reply);
        w(&self.bad_reply_len, s.bad_reply_len);
        w(&self.tx_ring_full, s.tx_ring_full);
        w(&self.tx_no_frame, s.tx_no_frame);
        w(&self.tx_wakeups, s.tx_wakeups);
        w(&self.tx_wakeup_errors, s.tx_wakeup_errors);
        w(&self.tx_wakeup_busy, s.tx_wakeup_busy);
        w(&self.ticks, s.ticks);
        w(&self.kernel_rx_dropped, s.kernel_rx_dropped);
        w(&self.kernel_rx_ring_full, s.kernel_rx_ring_full);
        w(&self.kernel_fill_empty, s.kernel_fill_empty);
        w(&self.worker_stalls, s.worker_stalls);
        w(&self.worker_stalled_us, s.worker_stalled_us);
    }
}

/// Everything the backend counts: per worker, and per interface what the XDP program steered or
/// passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpStats {
    pub queues: Vec<(QueueInfo, QueueSnapshot)>,
    pub programs: Vec<(String, ProgramCounters)>,
}

struct Worker {
    info: QueueInfo,
    handle: Option<JoinHandle<()>>,
}

/// A running AF_XDP backend. Dropping it stops the workers and detaches the XDP programs.
pub struct XdpBackend {
    workers: Vec<Worker>,
    stats: Arc<[QueueStats]>,
    /// What `statistic-get-all` reads (see [`XdpBackend::stats_source`]).
    source: Arc<XdpStatsSource>,
    stop: Arc<AtomicBool>,
    /// CPUs this process may use that no worker is pinned to (see [`XdpBackend::housekeeping_cpus`]).
    housekeeping: Vec<usize>,
    /// Declared after the workers so that, on drop, threads are joined (sockets closed) before
    /// the programs are detached and their maps freed.
    programs: Vec<XdpProgram>,
    /// Sockets holding the DHCPv6 multicast membership of each interface.
    _memberships: Vec<std::os::fd::OwnedFd>,
}

impl std::fmt::Debug for XdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpBackend")
            .field(
                "queues",
                &self.workers.iter().map(|w| &w.info).collect::<Vec<_>>(),
            )
            .field("programs", &self.programs)
            .finish()
    }
}

/// Resolves and checks the configured interfaces without touching them: their indexes, queue
/// counts (the worker count is their sum) and MTUs. [`XdpBackend::start`] does the same first.
pub fn plan(cfg: &XdpBackendConfig) -> Result<Vec<InterfaceInfo>, XdpError> {
    if cfg.interfaces.is_empty() {
        return Err(XdpError::NoInterfaces);
    }
    let xcfg = cfg.xsk_config();
    xcfg.validate()
        .map_err(|e| XdpError::Config(e.to_string()))?;
    for (i, name) in cfg.interfaces.iter().enumerate() {
        // A second attach to the same interface would replace the first as "stale".
        if cfg.interfaces[..i].contains(name) {
            return Err(XdpError::Config(format!(
                "interface `{name}` is listed twice"
            )));
        }
    }
    let max_mtu = xcfg.max_rx_frame().saturating_sub(L2_OVERHEAD);
    let mut out = Vec::with_capacity(cfg.interfaces.len());
    for name in &cfg.interfaces {
        let info = sys::interface_info(name)
            .map_err(|source| XdpError::Interface {
                iface: name.clone(),
                source,
            })?
            .ok_or_else(|| XdpError::UnknownInterface(name.clone()))?;
        if info.mtu > max_mtu {
            return Err(XdpError::MtuTooLarge {
                iface: name.clone(),
                mtu: info.mtu,
                max: max_mtu,
                frame_size: xcfg.frame_size,
            });
        }
        if info.rx_queues > loader::MAX_QUEUES {
            return Err(LoaderError::TooManyQueues {
                iface: name.clone(),
                queues: info.rx_queues,
            }
            .into());
        }
        if info.ipv4.is_unspecified() {
            tracing::warn!(iface = %name, "interface has no IPv4 address");
        }
        out.push(info);
    }
    Ok(out)
}

impl XdpBackend {
    /// Starts serving: checks interfaces, loads and attaches the program, opens one socket per
    /// rx queue and starts one worker per socket, whose handler comes from
    /// `make_handler(worker_index)` (called here, on the calling thread, in worker order).
    pub fn start(
        cfg: &XdpBackendConfig,
        make_handler: &dyn Fn(usize) -> Box<dyn FrameHandler>,
    ) -> Result<XdpBackend, XdpError> {
        if cfg.batch_size == 0 || cfg.batch_size > cfg.ring_size {
            return Err(XdpError::Config(format!(
                "batch size {} must be in 1..=ring size {}",
                cfg.batch_size, cfg.ring_size
            )));
        }
        let ifaces = plan(cfg)?;
        match sys::raise_memlock() {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not raise RLIMIT_MEMLOCK; UMEM registration may fail")
            }
        }
        let xcfg = cfg.xsk_config();
        let allowed = sys::allowed_cpus();
        let cpus = if cfg.cpus.is_empty() {
            allowed.clone()
        } else {
            cfg.cpus.clone()
        };

        let mut memberships = Vec::new();
        if cfg.join_dhcpv6_multicast {
            for iface in &ifaces {
                match sys::join_ipv6_multicast(
                    iface.ifindex,
                    sys::ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
                ) {
                    Ok(fd) => memberships.push(fd),
                    // IPv6 disabled on the interface: DHCPv6 cannot arrive there anyway.
                    Err(e) => {
                        tracing::warn!(iface = %iface.name, error = %e, "could not join ff02::1:2")
                    }
                }
            }
        }
        let mut programs = Vec::with_capacity(ifaces.len());
        let mut sockets = Vec::new();
        let mut infos = Vec::new();
        let mut sock_readers = Vec::new();
        let mut prog_readers = Vec::new();
        for iface in &ifaces {
            let mut prog = XdpProgram::load(iface.rx_queues, cfg.ports)?;
            for queue in 0..iface.rx_queues {
                let sock = XskSocket::new(iface.ifindex, queue, &xcfg).map_err(|source| {
                    let perm = matches!(&source, XskError::Socket(e) | XskError::Bind { source: e, .. }
                        if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)));
                    if perm {
                        XdpError::Permission { iface: iface.name.clone(), queue, source }
                    } else {
                        XdpError::Socket { iface: iface.name.clone(), queue, source }
                    }
                })?;
                prog.register_socket(queue, std::os::fd::AsRawFd::as_raw_fd(&sock))?;
                sock_readers.push(sock.stats_reader().map_err(|e| XdpError::Socket {
                    iface: iface.name.clone(),
                    queue,
                    source: XskError::Socket(e),
                })?);
                let worker = infos.len();
                infos.push(QueueInfo {
                    worker,
                    iface: iface.name.clone(),
                    ifindex: iface.ifindex,
                    queue,
                    cpu: cpus[worker % cpus.len()],
                    zero_copy: sock.is_zero_copy(),
                });
                sockets.push((
                    sock,
                    RxContext {
                        ifindex: iface.ifindex,
                        queue,
                        if_mac: iface.mac,
                        if_ipv4: iface.ipv4,
                    },
                ));
            }
            // Sockets are in the map before the program sees the first frame, so no DHCP leaks
            // to the kernel at startup.
            let mode = prog.attach(&iface.name, iface.ifindex, cfg.attach_mode)?;
            let zc = infos
                .iter()
                .filter(|q| q.ifindex == iface.ifindex && q.zero_copy)
                .count();
            tracing::info!(
                iface = %iface.name,
                queues = iface.rx_queues,
                xdp_mode = %mode,
                socket_mode = if zc as u32 == iface.rx_queues { "zero-copy" } else if zc == 0 { "copy" } else { "mixed" },
                "AF_XDP backend ready on interface"
            );
            prog_readers.push((iface.name.clone(), prog.counters_reader()?));
            programs.push(prog);
        }

        let housekeeping: Vec<usize> = allowed
            .into_iter()
            .filter(|c| !infos.iter().any(|q| q.cpu == *c))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<[QueueStats]> = (0..infos.len()).map(|_| QueueStats::default()).collect();
        let source = Arc::new(XdpStatsSource {
            queues: infos.iter().cloned().zip(sock_readers).collect(),
            stats: Arc::clone(&stats),
            programs: prog_readers,
        });
        let mut backend = XdpBackend {
            workers: Vec::with_capacity(infos.len()),
            stats,
            source,
            stop,
            housekeeping,
            programs,
            _memberships: memberships,
        };
        for ((sock, ctx), info) in sockets.into_iter().zip(infos) {
            let handler = make_handler(info.worker);
            let params = WorkerParams {
                batch: cfg.batch_size as usize,
                idle_spin_ns: cfg.idle_spin.as_nanos() as u64,
                poll_timeout_ms: cfg.poll_timeout_ms.clamp(1, 1000),
                cpu: info.cpu,
                // Parked replies hold UMEM frames: keep three quarters for the rings.
                max_parked: (cfg.frame_count as usize / 4).max(1),
            };
            let stop = Arc::clone(&backend.stop);
            let stats = Arc::clone(&backend.stats);
            let w = info.worker;
            let handle = std::thread::Builder::new()
                .name(format!("xdhcp-xdp-{}-q{}", info.iface, info.queue))
                .spawn(move || run_worker(sock, handler, ctx, &stop, &stats[w], params))
                // Dropping `backend` on this error stops and joins the workers already started.
                .map_err(|source| XdpError::Spawn { worker: w, source })?;
            backend.workers.push(Worker {
                info,
                handle: Some(handle),
            });
        }
        Ok(backend)
    }

    /// The CPUs this process was allowed at start that no worker is pinned to: where the
    /// server's other threads (journal, reclaim, control) belong, so that a worker never waits
    /// behind them (measured on one shared core: the journal thread's write and fsync ran for up
    /// to 5 ms at a time while the worker was runnable). Empty when every allowed CPU has a worker,
    /// as under `taskset -c 0` with one worker.
    pub fn housekeeping_cpus(&self) -> &[usize] {
        &self.housekeeping
    }

    /// The workers, in worker order.
    pub fn queues(&self) -> Vec<QueueInfo> {
        self.workers.iter().map(|w| w.info.clone()).collect()
    }

    /// Interfaces and the XDP mode each is attached in.
    pub fn attached(&self) -> Vec<(String, AttachedMode)> {
        self.programs
            .iter()
            .filter_map(|p| p.attached().map(|(i, m)| (i.to_string(), m)))
            .collect()
    }

    /// Counters of every worker and of every interface's XDP program.
    pub fn stats(&self) -> Result<XdpStats, XdpError> {
        let queues = self
            .workers
            .iter()
            .map(|w| (w.info.clone(), self.stats[w.info.worker].snapshot()))
            .collect();
        let mut programs = Vec::with_capacity(self.programs.len());
        for p in &self.programs {
            let name = p.attached().map(|(i, _)| i.to_string()).unwrap_or_default();
            programs.push((name, p.counters()?));
        }
        Ok(XdpStats { queues, programs })
    }

    /// The backend's counters for `statistic-get-all` (register with
    /// [`crate::engine::stats::Stats::add_source`]): per socket the kernel's `XDP_STATISTICS`
    /// and the worker's own counters, per interface the XDP program's per-CPU counters, each
    /// also summed, so every drop between the wire and the engine has a name.
    pub fn stats_source(&self) -> Arc<dyn crate::engine::stats::StatsSource> {
        self.source.clone()
    }

    /// Whether every worker is still running (a worker only ends early by panicking).
    pub fn is_healthy(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.handle.as_ref().is_some_and(|h| !h.is_finished()))
    }

    /// Stops the workers, waits for them, and detaches the XDP programs. Reports a worker that
    /// panicked.
    pub fn stop(mut self) -> Result<(), XdpError> {
        let r = self.join_all();
        self.programs.clear(); // detach now, not at some later drop
        r
    }

    fn join_all(&mut self) -> Result<(), XdpError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                if h.join().is_err() && result.is_ok() {
                    result = Err(XdpError::WorkerPanicked {
                        worker: w.info.worker,
                        iface: w.info.iface.clone(),
                        queue: w.info.queue,
                    });
                }
            }
        }
        result
    }
}

impl Drop for XdpBackend {
    fn drop(&mut self) {
        if let Err(e) = self.join_all() {
            tracing::error!(error = %e, "AF_XDP worker failed");
        }
    }
}

/// Runs the backend until `stop` becomes true (checked every 100 ms), calling `on_stats` about
/// once a second. Returns early with an error if a worker dies. The programs are detached
/// before this returns.
pub fn run(
    cfg: &XdpBackendConfig,
    make_handler: &dyn Fn(usize) -> Box<dyn FrameHandler>,
    stop: &AtomicBool,
    on_stats: &mut dyn FnMut(&XdpStats),
) -> Result<(), XdpError> {
    let backend = XdpBackend::start(cfg, make_handler)?;
    let mut since_stats = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if !backend.is_healthy() {
            break;
        }
        since_stats += 1;
        if since_stats >= 10 {
            since_stats = 0;
            match backend.stats() {
                Ok(s) => on_stats(&s),
                Err(e) => tracing::warn!(error = %e, "reading AF_XDP statistics failed"),
            }
        }
    }
    backend.stop()
}

#[derive(Debug, Clone, Copy)]
struct WorkerParams {
    batch: usize,
    idle_spin_ns: u64,
    poll_timeout_ms: i32,
    cpu: usize,
    max_parked: usize,
}

/// Synchronous replication on AF_XDP: a parked reply stays in its UMEM frame (no copy) until the
/// peers acknowledged its lease change; the frame goes to the TX ring then, or back to the free
/// list when the reply is dropped.
struct XdpParking {
    link: crate::syncrepl::SyncLink,
    q: crate::syncrepl::ParkQueue<(Frame, u32)>,
}

impl XdpParking {
    fn release(&mut self, sock: &mut XskSocket, local: &mut QueueSnapshot) {
        if self.q.is_empty() {
            return;
        }
        let view = self.link.view();
        let link = &self.link;
        let mut sent = false;
        self.q.poll(Now::read().mono_ns, &view, |(f, len), v| {
            link.count(v);
            if v != crate::syncrepl::Verdict::Send {
                sock.free_frame(f);
            } else if let Err(f) = sock.tx_push(f, len) {
                local.tx_ring_full += 1;
                sock.free_frame(f);
            } else {
                local.replies += 1;
                sent = true;
            }
        });
        if sent {
            sock.tx_flush();
        }
    }
}

const TICK_NS: u64 = 1_000_000_000;

fn run_worker(
    mut sock: XskSocket,
    mut handler: Box<dyn FrameHandler>,
    ctx: RxContext,
    stop: &AtomicBool,
    stats: &QueueStats,
    p: WorkerParams,
) {
    if let Err(e) = sys::pin_current_thread(p.cpu) {
        tracing::warn!(cpu = p.cpu, queue = ctx.queue, error = %e, "could not pin AF_XDP worker");
    }
    if let Err(e) = super::request_short_slice(super::WORKER_SLICE) {
        tracing::debug!(queue = ctx.queue, error = %e, "no short scheduler slice for the AF_XDP worker");
    }
    // The only allocation of the worker: its descriptor batch, made once.
    let mut descs = vec![XdpDesc::default(); p.batch];
    let mut local = QueueSnapshot::default();
    let mut now = Now::read();
    handler.tick(now);
    local.ticks += 1;
    let mut last_tick = now.mono_ns;
    // When the RX ring was first seen empty in the current idle stretch.
    let mut idle_since: Option<u64> = None;
    let mut stalls = super::StallMeter::default();
    let mut parking = handler.sync_link().map(|link| XdpParking {
        q: crate::syncrepl::ParkQueue::new(link.capacity.min(p.max_parked), link.timeout_ns),
        link,
    });

    while !stop.load(Ordering::Relaxed) {
        if let Some(pk) = parking.as_mut() {
            pk.release(&mut sock, &mut local);
        }
        let n = sock.recv(&mut descs);
        if n == 0 {
            let t = super::mono_ns();
            if stalls.observe(t) {
                local.count_stalls(&stalls);
                stats.publish(&local);
            }
            let since = *idle_since.get_or_insert(t);
            if t - since >= p.idle_spin_ns {
                idle_since = None;
                // Also pushes out TX the kernel has not taken yet and returns completed frames.
                sock.tx_flush();
                sock.refill();
                // Acks for parked replies arrive through shared memory, not the socket: sleep
                // at most a millisecond while some wait.
                let timeout = if parking.as_ref().is_some_and(|pk| !pk.q.is_empty()) {
                    1
                } else {
                    p.poll_timeout_ms
                };
                stalls.sleeping();
                if let Err(e) = sock.poll_rx(timeout) {
                    tracing::warn!(queue = ctx.queue, error = %e, "poll on AF_XDP socket failed");
                    std::thread::sleep(Duration::from_millis(p.poll_timeout_ms as u64));
                }
                now = Now::read();
                maybe_tick(&mut *handler, &sock, now, &mut last_tick, &mut local, stats);
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        idle_since = None;
        now = Now::read();
        if stalls.observe(now.mono_ns) {
            local.count_stalls(&stalls);
        }
        // The kernel copied these frames in on another CPU (the sender's, in copy mode): start
        // pulling every frame's headers and first options into this core's cache now, so the
        // misses overlap instead of stalling each frame's parse in turn.
        for d in &descs[..n] {
            sock.prefetch_rx(d);
        }
        // Then let the handler start loading the lease state each frame will need (the client
        // index is far larger than the caches).
        for d in &descs[..n] {
            handler.prefetch(&ctx, sock.rx_frame(d));
        }
        for d in &descs[..n] {
            match sock.alloc_frame() {
                None => local.tx_no_frame += 1,
                Some(tx) => {
                    let (rx, buf) = sock.rx_and_tx(d, tx);
                    let cap = buf.len();
                    match handler.handle_frame(now, &ctx, rx, buf) {
                        Some(len) if len > 0 && len <= cap => {
                            if let (Some(pk), Some(t)) = (parking.as_mut(), handler.park_ticket()) {
                                let g = pk.link.gate.fail_gen();
                                match pk.q.park(t, now.mono_ns, g, (tx, len as u32)) {
                                    Ok(()) => pk.link.count_parked(),
                                    Err((f, _)) => {
                                        pk.link.count_full();
                                        sock.free_frame(f);
                                    }
                                }
                            } else if let Err(f) = sock.tx_push(tx, len as u32) {
                                local.tx_ring_full += 1;
                                sock.free_frame(f);
                            } else {
                                local.replies += 1;
                            }
                        }
                        Some(_) => {
                            local.bad_reply_len += 1;
                            sock.free_frame(tx);
                        }
                        None => {
                            local.no_reply += 1;
                            sock.free_frame(tx);
                        }
                    }
                }
            }
            sock.release_rx(d);
        }
        local.rx_frames += n as u64;
        sock.tx_flush();
        sock.refill();
        let c = sock.counters();
        local.tx_wakeups = c.tx_wakeups;
        local.tx_wakeup_errors = c.tx_wakeup_errors;
        local.tx_wakeup_busy = c.tx_wakeup_busy;
        stats.publish(&local);
        maybe_tick(&mut *handler, &sock, now, &mut last_tick, &mut local, stats);
    }
    if let Some(pk) = parking.as_mut() {
        let link = pk.link.clone();
        pk.q.drain(|(f, _)| {
            link.count(crate::syncrepl::Verdict::DropFailed);
            sock.free_frame(f);
        });
    }
    handler.tick(Now::read());
    local.ticks += 1;
    stats.publish(&local);
}

fn maybe_tick(
    handler: &mut dyn FrameHandler,
    sock: &XskSocket,
    now: Now,
    last_tick: &mut u64,
    local: &mut QueueSnapshot,
    stats: &QueueStats,
) {
    if now.mono_ns.saturating_sub(*last_tick) < TICK_NS {
        return;
    }
    *last_tick = now.mono_ns;
    handler.tick(now);
    local.ticks += 1;
    if let Ok(k) = sock.kernel_stats() {
        local.kernel_rx_dropped = k.rx_dropped;
        local.kernel_rx_ring_full = k.rx_ring_full;
        local.kernel_fill_empty = k.rx_fill_ring_empty_descs;
    }
    stats.publish(local);
}

/// The names [`XdpBackend::stats_source`] reports. Totals are `xdhcp-xsk-<counter>` and
/// `xdhcp-xdp-<counter>`; per socket `xsk[<iface>/<queue>].<counter>`, per interface
/// `xdp[<iface>].<counter>` (Kea's `subnet[1].<name>` style).
struct XdpStatsSource {
    queues: Vec<(QueueInfo, XskStatsReader)>,
    stats: Arc<[QueueStats]>,
    programs: Vec<(String, CountersReader)>,
}

/// `(name, value)` of every socket counter: the kernel's first, then the worker's.
fn queue_counters(k: &xsk::XskKernelStats, q: &QueueSnapshot) -> [(&'static str, u64); 16] {
    [
        ("rx-dropped", k.rx_dropped),
        ("rx-invalid-descs", k.rx_invalid_descs),
        ("tx-invalid-descs", k.tx_invalid_descs),
        ("rx-ring-full", k.rx_ring_full),
        ("rx-fill-ring-empty-descs", k.rx_fill_ring_empty_descs),
        ("tx-ring-empty-descs", k.tx_ring_empty_descs),
        ("rx-frames", q.rx_frames),
        ("replies", q.replies),
        ("no-reply", q.no_reply),
        ("bad-reply-len", q.bad_reply_len),
        ("tx-ring-full", q.tx_ring_full),
        ("tx-no-frame", q.tx_no_frame),
        ("tx-wakeups", q.tx_wakeups),
        ("tx-wakeup-busy", q.tx_wakeup_busy),
        ("worker-stalls", q.worker_stalls),
        ("worker-stalled-us", q.worker_stalled_us),
    ]
}

impl crate::engine::stats::StatsSource for XdpStatsSource {
    fn collect(&self, out: &mut Vec<(String, u64)>) {
        let mut totals: Vec<(&'static str, u64)> = Vec::new();
        for (info, reader) in &self.queues {
            // A failed read (the socket is closing) reports zeros rather than nothing, so the
            // set of names never changes under a reader.
            let k = reader.read().unwrap_or_default();
            let q = self.stats[info.worker].snapshot();
            let cs = queue_counters(&k, &q);
            if totals.is_empty() {
                totals = cs.iter().map(|(n, _)| (*n, 0)).collect();
            }
            for ((name, v), t) in cs.iter().zip(totals.iter_mut()) {
                t.1 += v;
                out.push((format!("xsk[{}/{}].{name}", info.iface, info.queue), *v));
            }
        }
        for (name, v) in totals {
            out.push((format!("xdhcp-xsk-{name}"), v));
        }
        let mut prog_totals = [0u64; loader::COUNTER_COUNT];
        for (iface, reader) in &self.programs {
            let c = reader.read().unwrap_or_default();
            for cnt in Counter::ALL {
                let v = c.get(cnt);
                prog_totals[cnt as usize] += v;
                out.push((format!("xdp[{iface}].{}", cnt.name().replace('_', "-")), v));
            }
        }
        for cnt in Counter::ALL {
            out.push((
                format!("xdhcp-xdp-{}", cnt.name().replace('_', "-")),
                prog_totals[cnt as usize],
            ));
        }
    }
}
