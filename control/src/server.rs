//! The control process shell: one core thread owns every relationship's [`HaMachine`] and drives
//! it with the real clock; short-lived threads do the peer HTTP requests and report back on a
//! bounded channel; an HTTP listener (tiny_http) on this server's peer URL serves the peers' and
//! the operator's commands and `GET /metrics`; a UNIX socket serves the same admin API; a
//! replicator thread per peer tails the lease journal and ships changes as Kea's `lease4-update` /
//! `lease4-del` (DHCPv6: one `lease6-bulk-apply` per batch), remembering the last acknowledged
//! sequence number in a small state file.
//!
//! Commands that are not HA's (lease*, statistic-get-all, config-*, user dhcp-disable/enable,
//! version-get, shutdown) are forwarded to the dataplane's control socket unchanged.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use xdhcp_config::model::{HaMode, HaRelationship, HaRole, Replication};
use xdhcp_dataplane::lease::LeaseChange;

use crate::dataplane::{self as dpc, Dataplane, Serving};
use crate::ha::commands::{self as wire, answer_list, answer_map, Family};
use crate::ha::state::{
    mode_name, role_name, v4_secs_unacked, v6_elapsed_unacked, Action, Answer as HaAnswer,
    HaMachine, HaParams, Now, Outcome,
};
use crate::peer::{basic_auth_value, PeerClient, REQUEST_TIMEOUT};
use crate::syncgate::{AckWindow, SyncPublisher};

/// Bound on messages waiting for the core thread; senders block briefly when it is full (peer
/// requests are few per second, so this only bites when the core is stuck).
const CORE_QUEUE: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelLabels {
    relationship: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    relationship: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Prometheus metrics of the control process.
pub struct Metrics {
    registry: Registry,
    state: MetricFamily<StateLabels, Gauge>,
    transitions: MetricFamily<RelLabels, Counter>,
    heartbeats_ok: MetricFamily<RelLabels, Counter>,
    heartbeats_failed: MetricFamily<RelLabels, Counter>,
    in_touch: MetricFamily<RelLabels, Gauge>,
    unacked: MetricFamily<RelLabels, Gauge>,
    shipped: MetricFamily<PeerLabels, Counter>,
    ship_failures: MetricFamily<PeerLabels, Counter>,
    acked_seq: MetricFamily<PeerLabels, Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("xdhcp_control");
        let m = Metrics {
            state: Default::default(),
            transitions: Default::default(),
            heartbeats_ok: Default::default(),
            heartbeats_failed: Default::default(),
            in_touch: Default::default(),
            unacked: Default::default(),
            shipped: Default::default(),
            ship_failures: Default::default(),
            acked_seq: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ha_state",
            "1 for the current HA state of the relationship",
            m.state.clone(),
        );
        registry.register(
            "ha_transitions",
            "HA state transitions",
            m.transitions.clone(),
        );
        registry.register(
            "ha_heartbeats_ok",
            "successful heartbeats to the partner",
            m.heartbeats_ok.clone(),
        );
        registry.register(
            "ha_heartbeats_failed",
            "failed heartbeats to the partner",
            m.heartbeats_failed.clone(),
        );
        registry.register(
            "ha_partner_in_touch",
            "1 when the partner answers heartbeats",
            m.in_touch.clone(),
        );
        registry.register(
            "ha_unacked_clients",
            "clients the partner did not answer",
            m.unacked.clone(),
        );
        registry.register(
            "replication_shipped",
            "lease changes acknowledged by the peer",
            m.shipped.clone(),
        );
        registry.register(
            "replication_failures",
            "lease change deliveries that failed",
            m.ship_failures.clone(),
        );
        registry.register(
            "replication_acked_seq",
            "last journal sequence acknowledged by the peer",
            m.acked_seq.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// How the replicator treats one peer now (from the state machine's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShipPolicy {
    Send,
    /// Hold back (communication-recovery): keep the cursor, send later.
    Queue,
    /// Do not send, count as unsent (partner-down): the partner resyncs.
    Skip,
}

/// State shared between the core, the HTTP threads and the replicators.
pub struct Shared {
    pub metrics: Metrics,
    policies: Mutex<HashMap<String, ShipPolicy>>,
    /// Changes recently applied from peers (fingerprints), so the replicator does not echo them
    /// back. Bounded FIFO.
    echo: Mutex<EchoSet>,
    pub stop: AtomicBool,
    unsent: AtomicU64,
    /// Synchronous replication: the gate the dataplane's parked replies wait on.
    pub sync: SyncPublisher,
}

const ECHO_MAX: usize = 65_536;

/// Fingerprints of changes applied from peers, oldest evicted first past [`ECHO_MAX`]. Both
/// operations are O(1): every journal entry is looked up here, at the lease rate, under a lock
/// the peer listener also takes (a linear scan of 65,536 strings per entry starved the listener
/// of a standby taking synchronous updates).
#[derive(Default)]
struct EchoSet {
    order: VecDeque<String>,
    /// Fingerprint → how many applied changes with it are not consumed yet.
    pending: HashMap<String, u32>,
}

impl EchoSet {
    fn insert(&mut self, f: String) {
        if self.order.len() >= ECHO_MAX {
            if let Some(old) = self.order.pop_front() {
                if let Some(n) = self.pending.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.pending.remove(&old);
                    }
                }
            }
        }
        *self.pending.entry(f.clone()).or_insert(0) += 1;
        self.order.push_back(f);
    }

    /// Whether `f` was applied from a peer (and not consumed yet); consumes one.
    fn take(&mut self, f: &str) -> bool {
        match self.pending.get_mut(f) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.pending.remove(f);
                }
                true
            }
            None => false,
        }
    }
}

fn fingerprint(c: &LeaseChange) -> String {
    match c {
        LeaseChange::Put4(l) => format!(
            "p4 {} {} {} {}",
            l.addr,
            l.cltt,
            l.valid_lft,
            wire::hex_colon(l.hwaddr.as_slice())
        ),
        LeaseChange::Del4(a) => format!("d4 {a}"),
        LeaseChange::Put6(l) => format!("p6 {} {} {}", l.addr, l.cltt, l.valid_lft),
        LeaseChange::Del6(a, _) => format!("d6 {a}"),
    }
}

impl Shared {
    fn remember_applied(&self, c: &LeaseChange) {
        let mut e = self.echo.lock().unwrap_or_else(|p| p.into_inner());
        e.insert(fingerprint(c));
    }
    fn is_echo(&self, c: &LeaseChange) -> bool {
        let f = fingerprint(c);
        let mut e = self.echo.lock().unwrap_or_else(|p| p.into_inner());
        e.take(&f)
    }
    fn policy(&self, peer: &str) -> ShipPolicy {
        *self
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .unwrap_or(&ShipPolicy::Queue)
    }
}

enum Msg {
    /// An HA command for the core; the answer map goes back on `reply`.
    Command {
        cmd: Value,
        reply: SyncSender<Value>,
    },
    Heartbeat {
        rel: usize,
        r: Result<crate::ha::state::HeartbeatInfo, String>,
    },
    SyncDone {
        rel: usize,
        ok: bool,
        reply: Option<SyncSender<Value>>,
        text: String,
    },
    ResetDone {
        rel: usize,
        ok: bool,
    },
    Maintenance {
        rel: usize,
        start: bool,
        outcome: Outcome,
        reply: SyncSender<Value>,
    },
    RequestFailed {
        rel: usize,
    },
}

struct Rel {
    cfg: HaRelationship,
    m: HaMachine,
    partner: Option<PeerClient>,
}

/// Everything the process needs, from the config file and the command line.
pub struct Options {
    pub config: PathBuf,
    pub admin_socket: Option<PathBuf>,
    pub dataplane_socket: PathBuf,
    pub journal_dir: Option<PathBuf>,
    pub family: Family,
    pub relationships: Vec<HaRelationship>,
    /// DESIGN.md safety period before taking the partner's free addresses.
    pub partner_free_delay_ms: u64,
    /// A control-agent style API listener of its own (Kea's `Control-agent` map).
    pub agent: Option<xdhcp_config::agent::ControlAgent>,
    /// `user-context.xdhcp.replication`: whether the dataplane's replies wait for the peers.
    pub replication: Replication,
}

fn clock(start: Instant) -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Now {
        mono_ms: start.elapsed().as_millis() as u64,
        wall_secs: wall,
    }
}

/// Runs the control process until `shutdown`.
pub fn run(opts: Options, dp: Arc<dyn Dataplane>) -> anyhow::Result<()> {
    let start = Instant::now();
    let sync = match (&opts.journal_dir, opts.replication) {
        (Some(dir), Replication::Synchronous) => {
            let p = xdhcp_dataplane::syncrepl::gate::gate_path(dir);
            let g = xdhcp_dataplane::syncrepl::gate::Gate::open(&p)?;
            tracing::info!(gate = %p.display(), "synchronous replication: the dataplane's replies wait for the peers' acknowledgement");
            let slot = match opts.family {
                Family::V4 => xdhcp_dataplane::syncrepl::gate::Slot::V4,
                Family::V6 => xdhcp_dataplane::syncrepl::gate::Slot::V6,
            };
            SyncPublisher::new(g, slot)
        }
        _ => SyncPublisher::disabled(),
    };
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        policies: Mutex::new(HashMap::new()),
        echo: Mutex::new(EchoSet::default()),
        stop: AtomicBool::new(false),
        unsent: AtomicU64::new(0),
        sync,
    });
    let _ = METRICS.set(shared.clone());
    crate::tls::check(&opts.relationships)?;
    match dpc::hello(dp.as_ref()) {
        Ok(v) => tracing::info!(version = v, "dataplane IPC handshake done"),
        Err(e) => tracing::warn!("dataplane not reachable yet ({e}); will keep trying"),
    }
    let now = clock(start);
    let mut rels: Vec<Rel> = opts
        .relationships
        .iter()
        .map(|r| {
            let p = HaParams::from_config(r, opts.partner_free_delay_ms);
            let partner = p
                .partner()
                .and_then(|pi| r.peers.iter().find(|x| x.name == pi.name))
                .map(PeerClient::new);
            Rel {
                cfg: r.clone(),
                m: HaMachine::new(p, now),
                partner,
            }
        })
        .collect();
    let (tx, rx) = sync_channel::<Msg>(CORE_QUEUE);

    // Listeners: this server's peer URL (first relationship's) and the admin UNIX socket.
    if let Some(r) = opts.relationships.first() {
        let me = r.this_peer();
        let addr = format!(
            "{}:{}",
            me.host.trim_start_matches('[').trim_end_matches(']'),
            me.port
        );
        let server =
            crate::tls::listen(&addr, r, opts.admin_socket.as_ref(), &opts.dataplane_socket)?;
        let server = Arc::new(server);
        let expect_auth: Vec<String> = me
            .basic_auth_user
            .as_ref()
            .map(|u| basic_auth_value(u, me.basic_auth_password.as_deref().unwrap_or("")))
            .into_iter()
            .collect();
        tracing::info!(%addr, "HA peer listener");
        for _ in 0..4 {
            let (server, tx, dp, shared, expect_auth) = (
                server.clone(),
                tx.clone(),
                dp.clone(),
                shared.clone(),
                expect_auth.clone(),
            );
            let family = opts.family;
            std::thread::spawn(move || {
                http_loop(&server, &tx, dp.as_ref(), &shared, &expect_auth, family)
            });
        }
    }
    // The control API as Kea's control agent would serve it: its own address, TLS and users.
    if let Some(a) = &opts.agent {
        let server = Arc::new(crate::tls::listen_agent(
            a,
            opts.admin_socket.as_ref(),
            &opts.dataplane_socket,
        )?);
        let users: Vec<String> = a
            .clients
            .iter()
            .map(|(u, p)| basic_auth_value(u, p))
            .collect();
        for _ in 0..2 {
            let (server, tx, dp, shared, users) = (
                server.clone(),
                tx.clone(),
                dp.clone(),
                shared.clone(),
                users.clone(),
            );
            let family = opts.family;
            std::thread::spawn(move || {
                http_loop(&server, &tx, dp.as_ref(), &shared, &users, family)
            });
        }
    }
    if let Some(path) = &opts.admin_socket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", path.display()))?;
        let (tx, dp, shared) = (tx.clone(), dp.clone(), shared.clone());
        let family = opts.family;
        std::thread::spawn(move || unix_loop(l, &tx, dp.as_ref(), &shared, family));
    }
    // Replicators: one per other peer of each relationship, when the journal is on disk.
    if let Some(dir) = &opts.journal_dir {
        for r in &opts.relationships {
            for p in r.peers.iter().filter(|p| p.name != r.this_server_name) {
                // Synchronous mode keeps several updates in flight, each lane on its own
                // persistent connection (one sequential connection caps it at 1/RTT).
                let lanes = if shared.sync.enabled() { SYNC_LANES } else { 1 };
                let (dir, peer, shared, tx) = (
                    dir.clone(),
                    (0..lanes)
                        .map(|_| PeerClient::new(p).with_keep_alive(REQUEST_TIMEOUT))
                        .collect::<Vec<_>>(),
                    shared.clone(),
                    tx.clone(),
                );
                let is_backup = p.role == HaRole::Backup;
                std::thread::spawn(move || replicate(&dir, peer, is_backup, &shared, &tx));
            }
        }
    } else {
        tracing::warn!("no lease journal on disk (lease-database persist false or no name): nothing to replicate");
    }

    let mut last_serving_push = Instant::now() - Duration::from_secs(60);
    let mut serving_dirty = true;
    let mut last_obs = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = clock(start);
        let next = rels.iter().filter_map(|r| r.m.poll_timeout()).min();
        let wait_ms = next
            .map_or(500, |t| t.saturating_sub(now.mono_ms))
            .clamp(1, 500);
        match rx.recv_timeout(Duration::from_millis(wait_ms)) {
            Ok(msg) => handle_msg(msg, &mut rels, &tx, dp.as_ref(), start),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = clock(start);
        for r in rels.iter_mut() {
            if r.m.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
                r.m.handle_timeout(now);
            }
        }
        // Out-of-scope packets from the dataplane feed the unacked-clients test.
        if last_obs.elapsed() >= Duration::from_millis(500) {
            last_obs = Instant::now();
            if let Ok(obs) = dpc::observations(dp.as_ref(), opts.family) {
                for o in obs {
                    if let Some(r) = rels
                        .iter_mut()
                        .find(|r| r.cfg.this_server_name == o.this_server_name)
                    {
                        let n = o.unanswered.len() as u64;
                        let mad = r.m.params().max_ack_delay_ms;
                        for (k, secs) in o.unanswered {
                            // v4 `secs` are seconds, v6 elapsed-time hundredths (Kea's rules).
                            let unacked = match opts.family {
                                Family::V4 => v4_secs_unacked(secs, mad),
                                Family::V6 => v6_elapsed_unacked(secs, mad),
                            };
                            r.m.observe_out_of_scope(now, k, unacked);
                        }
                        r.m.add_analyzed(now, o.analyzed.saturating_sub(n));
                    }
                }
            }
        }
        let unsent = shared.unsent.swap(0, Ordering::Relaxed);
        for (i, r) in rels.iter_mut().enumerate() {
            if unsent > 0 && i == 0 {
                r.m.note_unsent_updates(unsent);
            }
            while let Some(a) = r.m.poll_action() {
                serving_dirty |= dispatch(i, r, a, now, &tx, dp.as_ref(), &shared, opts.family);
            }
            update_policies(r, &shared);
            let l = RelLabels {
                relationship: r.cfg.this_server_name.clone(),
            };
            shared
                .metrics
                .in_touch
                .get_or_create(&l)
                .set(i64::from(r.m.in_touch()));
            shared
                .metrics
                .unacked
                .get_or_create(&l)
                .set(r.m.unacked_clients() as i64);
            for s in crate::ha::state::State::ALL {
                let sl = StateLabels {
                    relationship: r.cfg.this_server_name.clone(),
                    state: s.name().into(),
                };
                shared
                    .metrics
                    .state
                    .get_or_create(&sl)
                    .set(i64::from(r.m.state() == s));
            }
        }
        // The dataplane may have restarted: push the serving state again every few seconds.
        if serving_dirty || last_serving_push.elapsed() >= Duration::from_secs(3) {
            let list: Vec<Serving> = rels
                .iter()
                .map(|r| Serving {
                    this_server_name: r.cfg.this_server_name.clone(),
                    enabled: r.m.dhcp_enabled(),
                    scopes: r.m.served_scopes(),
                })
                .collect();
            match dpc::ha_serving(dp.as_ref(), opts.family, &list) {
                Ok(()) => serving_dirty = false,
                Err(e) => tracing::debug!("xdhcp-ha-serving: {e}"),
            }
            last_serving_push = Instant::now();
        }
    }
    Ok(())
}

fn update_policies(r: &Rel, shared: &Shared) {
    let mut p = shared.policies.lock().unwrap_or_else(|e| e.into_inner());
    for peer in r
        .cfg
        .peers
        .iter()
        .filter(|p| p.name != r.cfg.this_server_name)
    {
        let pol = if r.m.should_send_lease_updates(peer.role) {
            ShipPolicy::Send
        } else if r.m.should_queue_lease_updates(peer.role) {
            ShipPolicy::Queue
        } else if matches!(r.m.state(), crate::ha::state::State::PartnerDown) {
            ShipPolicy::Skip
        } else {
            ShipPolicy::Queue
        };
        p.insert(peer.name.clone(), pol);
        // Kea parks a reply for the peers it sends updates to, backups only with
        // wait-backup-ack (passive-backup).
        let must_ack = pol == ShipPolicy::Send
            && (peer.role != HaRole::Backup
                || (r.cfg.mode == HaMode::PassiveBackup && r.cfg.wait_backup_ack));
        shared.sync.set_must_ack(&peer.name, must_ack);
    }
}

/// Carries out one action; returns whether the serving state must be pushed.
#[allow(clippy::too_many_arguments)] // the core loop's handles, passed as they are
fn dispatch(
    i: usize,
    r: &mut Rel,
    a: Action,
    now: Now,
    tx: &SyncSender<Msg>,
    dp: &dyn Dataplane,
    shared: &Shared,
    family: Family,
) -> bool {
    let l = RelLabels {
        relationship: r.cfg.this_server_name.clone(),
    };
    match a {
        Action::SendHeartbeat => {
            let Some(p) = r.partner.clone() else {
                return false;
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let res = p
                    .post(&wire::ha_heartbeat(family), REQUEST_TIMEOUT)
                    .and_then(|a| wire::parse_heartbeat(&a).map_err(|e| e.to_string()));
                let _ = tx.send(Msg::Heartbeat { rel: i, r: res });
            });
        }
        Action::Sync {
            max_period_secs, ..
        } => {
            let Some(p) = r.partner.clone() else {
                return false;
            };
            let (tx, limit, timeout) = (
                tx.clone(),
                r.cfg.sync_page_limit,
                Duration::from_millis(u64::from(r.cfg.sync_timeout_ms)),
            );
            let dp = DpHandle::current();
            std::thread::spawn(move || {
                let res = sync_from(&p, dp.as_ref(), family, max_period_secs, limit, timeout);
                let (ok, text) = match res {
                    Ok(n) => (
                        true,
                        format!("Lease database synchronization complete ({n} leases)."),
                    ),
                    Err(e) => (false, e),
                };
                let _ = tx.send(Msg::SyncDone {
                    rel: i,
                    ok,
                    reply: None,
                    text,
                });
            });
        }
        Action::ReplayBacklog => {
            // Replication is the journal: switching the policy back to Send replays what was held.
            r.m.handle_backlog_result(now, true);
        }
        Action::SendHaReset => {
            let Some(p) = r.partner.clone() else {
                return false;
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let ok = p
                    .post(&wire::ha_reset(family), REQUEST_TIMEOUT)
                    .map(|a| a.is_success())
                    .unwrap_or(false);
                let _ = tx.send(Msg::ResetDone { rel: i, ok });
            });
        }
        Action::Serving { .. } => return true,
        Action::AllocPartnerFree(on) => {
            if let Err(e) = dpc::alloc_policy(dp, family, &r.cfg.this_server_name, on) {
                tracing::warn!("xdhcp-alloc-policy: {e}");
            }
        }
        Action::StateChanged { from, to } => {
            tracing::info!(relationship = %r.cfg.this_server_name, "HA state {} -> {} (partner {})", from, to, r.m.partner_state().name());
            shared.metrics.transitions.get_or_create(&l).inc();
        }
        Action::ClockSkewWarning { skew_secs } => {
            tracing::warn!("clock skew with the partner is {skew_secs} s")
        }
        Action::ClockSkewTerminate { skew_secs } => {
            tracing::error!("clock skew with the partner is {skew_secs} s: terminating HA")
        }
        Action::ReplicationReset => {}
    }
    false
}

/// A way for worker threads to reach the dataplane without borrowing the core's handle.
struct DpHandle;
static DP: Mutex<Option<Arc<dyn Dataplane>>> = Mutex::new(None);
impl DpHandle {
    fn current() -> Arc<dyn Dataplane> {
        DP.lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("dataplane handle set at start")
    }
}

fn handle_msg(
    msg: Msg,
    rels: &mut [Rel],
    tx: &SyncSender<Msg>,
    dp: &dyn Dataplane,
    start: Instant,
) {
    let now = clock(start);
    match msg {
        Msg::Heartbeat { rel, r } => {
            if let Some(x) = rels.get_mut(rel) {
                let l = RelLabels {
                    relationship: x.cfg.this_server_name.clone(),
                };
                let m = if r.is_ok() {
                    &x_metrics().heartbeats_ok
                } else {
                    &x_metrics().heartbeats_failed
                };
                m.get_or_create(&l).inc();
                if let Err(e) = &r {
                    tracing::debug!("heartbeat failed: {e}");
                }
                x.m.handle_heartbeat_response(now, r);
            }
        }
        Msg::SyncDone {
            rel,
            ok,
            reply,
            text,
        } => {
            if let Some(x) = rels.get_mut(rel) {
                if reply.is_none() {
                    x.m.handle_sync_result(now, ok);
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(answer_map(if ok { 0 } else { 1 }, &text, None));
            } else if !ok {
                tracing::warn!("lease sync failed: {text}");
            }
        }
        Msg::ResetDone { rel, ok } => {
            if let Some(x) = rels.get_mut(rel) {
                x.m.handle_ha_reset_result(now, ok);
            }
        }
        Msg::RequestFailed { rel } => {
            if let Some(x) = rels.get_mut(rel) {
                x.m.handle_request_failed(now);
            }
        }
        Msg::Maintenance {
            rel,
            start: st,
            outcome,
            reply,
        } => {
            if let Some(x) = rels.get_mut(rel) {
                let a = if st {
                    x.m.maintenance_start_result(now, outcome)
                } else {
                    x.m.maintenance_cancel_result(now, outcome)
                };
                let _ = reply.send(answer_map(a.result, &a.text, None));
            }
        }
        Msg::Command { cmd, reply } => {
            let v = ha_command(&cmd, rels, tx, dp, now, reply.clone());
            if let Some(v) = v {
                let _ = reply.send(v);
            }
        }
    }
}

static METRICS: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();
fn x_metrics() -> &'static Metrics {
    &METRICS.get().expect("metrics set at start").metrics
}

fn ans(a: HaAnswer) -> Value {
    answer_map(a.result, &a.text, None)
}

/// The relationship a command is for: `server-name` (Kea 2.6 style) or the first one.
fn pick_rel(cmd: &Value, rels: &[Rel]) -> Option<usize> {
    let name = cmd
        .get("arguments")
        .and_then(|a| a.get("server-name"))
        .and_then(Value::as_str);
    match name {
        Some(n) => rels
            .iter()
            .position(|r| r.cfg.this_server_name == n || r.cfg.peers.iter().any(|p| p.name == n)),
        None if rels.is_empty() => None,
        None => Some(0),
    }
}

/// HA commands handled by the core. None: the answer is sent later on `reply`.
fn ha_command(
    cmd: &Value,
    rels: &mut [Rel],
    tx: &SyncSender<Msg>,
    dp: &dyn Dataplane,
    now: Now,
    reply: SyncSender<Value>,
) -> Option<Value> {
    let name = cmd.get("command").and_then(Value::as_str).unwrap_or("");
    let args = cmd.get("arguments").cloned().unwrap_or(Value::Null);
    if name == "status-get" {
        let mut base = dp
            .call(&dpc::cmd("status-get", None))
            .ok()
            .and_then(|a| a.arguments)
            .unwrap_or_else(|| json!({}));
        base["high-availability"] = Value::Array(rels.iter().map(|r| status_of(r, now)).collect());
        return Some(answer_map(0, "", Some(base)));
    }
    let Some(i) = pick_rel(cmd, rels) else {
        return Some(answer_map(
            1,
            "HA is not configured or unknown server-name",
            None,
        ));
    };
    let family = FAMILY.get().copied().unwrap_or(Family::V4);
    let r = &mut rels[i];
    Some(match name {
        "ha-heartbeat" => {
            let (st, scopes, unsent) = r.m.heartbeat_reply();
            answer_map(
                0,
                "HA peer status returned.",
                Some(wire::heartbeat_args(st, &scopes, unsent, SystemTime::now())),
            )
        }
        "ha-reset" => ans(r.m.cmd_ha_reset(now)),
        "ha-continue" => ans(r.m.cmd_continue(now)),
        "ha-sync-complete-notify" => ans(r.m.cmd_sync_complete_notify(now)),
        "ha-maintenance-notify" => {
            let cancel = args.get("cancel").and_then(Value::as_bool).unwrap_or(false);
            ans(r.m.cmd_maintenance_notify(now, cancel))
        }
        "ha-scopes" => {
            let Some(list) = args.get("scopes").and_then(Value::as_array) else {
                return Some(answer_map(
                    1,
                    "'scopes' is mandatory for the 'ha-scopes' command",
                    None,
                ));
            };
            let scopes: Vec<String> = list
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            ans(r.m.cmd_scopes(now, &scopes))
        }
        "dhcp-disable" => {
            let mp = args.get("max-period").and_then(Value::as_u64);
            r.m.cmd_dhcp_disable(now, mp);
            answer_map(0, "DHCPv4 service disabled", None)
        }
        "dhcp-enable" => {
            r.m.cmd_dhcp_enable(now);
            answer_map(0, "DHCP service successfully enabled", None)
        }
        "ha-maintenance-start" | "ha-maintenance-cancel" => {
            let start = name == "ha-maintenance-start";
            let chk = if start {
                r.m.maintenance_start_check()
            } else {
                r.m.maintenance_cancel_check()
            };
            if let Err(a) = chk {
                return Some(ans(a));
            }
            let Some(p) = r.partner.clone() else {
                return Some(answer_map(1, "no partner", None));
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let outcome = match p.post(
                    &wire::ha_maintenance_notify(family, !start),
                    REQUEST_TIMEOUT,
                ) {
                    Ok(a) => Outcome::Answered {
                        result: a.result,
                        text: a.text,
                    },
                    Err(e) => Outcome::CommError(e),
                };
                let _ = tx.send(Msg::Maintenance {
                    rel: i,
                    start,
                    outcome,
                    reply,
                });
            });
            return None;
        }
        "ha-sync" => {
            let server = args
                .get("server-name")
                .and_then(Value::as_str)
                .map(String::from);
            let peer = r
                .cfg
                .peers
                .iter()
                .find(|p| Some(&p.name) == server.as_ref())
                .or_else(|| {
                    r.cfg
                        .peers
                        .iter()
                        .find(|p| p.name != r.cfg.this_server_name)
                });
            let Some(peer) = peer.map(PeerClient::new) else {
                return Some(answer_map(1, "unknown server-name", None));
            };
            let mp = args
                .get("max-period")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(r.cfg.sync_timeout_ms / 1000).max(1))
                as u32;
            let (tx, limit, timeout) = (
                tx.clone(),
                r.cfg.sync_page_limit,
                Duration::from_millis(u64::from(r.cfg.sync_timeout_ms)),
            );
            let dp = DpHandle::current();
            std::thread::spawn(move || {
                let (ok, text) = match sync_from(&peer, dp.as_ref(), family, mp, limit, timeout) {
                    Ok(_) => (true, "Lease database synchronization complete.".to_string()),
                    Err(e) => (false, e),
                };
                let _ = tx.send(Msg::SyncDone {
                    rel: i,
                    ok,
                    reply: Some(reply),
                    text,
                });
            });
            return None;
        }
        _ => answer_map(2, &format!("'{name}' command not supported."), None),
    })
}

static FAMILY: std::sync::OnceLock<Family> = std::sync::OnceLock::new();

/// Kea 2.2's status-get HA section for one relationship.
fn status_of(r: &Rel, now: Now) -> Value {
    let mut servers = json!({
        "local": {
            "role": role_name(r.m.role()),
            "scopes": r.m.served_scopes(),
            "state": r.m.state().name(),
        }
    });
    let passive = r.m.params().mode == xdhcp_config::model::HaMode::PassiveBackup;
    if !passive && r.m.role() != HaRole::Backup {
        let partner_role =
            r.m.params()
                .partner()
                .map(|p| role_name(p.role))
                .unwrap_or("");
        servers["remote"] = json!({
            "age": r.m.age_secs(now),
            "in-touch": r.m.in_touch(),
            "last-state": r.m.partner_state().name(),
            "last-scopes": r.m.partner_scopes(),
            "communication-interrupted": r.m.is_communication_interrupted(now),
            "connecting-clients": r.m.connecting_clients(),
            "unacked-clients": r.m.unacked_clients(),
            "unacked-clients-left": r.m.unacked_clients_left(now),
            "analyzed-packets": r.m.analyzed_packets(),
            "role": partner_role,
        });
    }
    json!({ "ha-mode": mode_name(r.m.params().mode), "ha-servers": servers })
}

/// Pulls every lease from `peer` (Kea's sync): dhcp-disable before every page, pages merged into
/// the dataplane (insert missing, overwrite only when ours is older), then
/// ha-sync-complete-notify (or dhcp-enable when the peer does not know it).
pub fn sync_from(
    peer: &PeerClient,
    dp: &dyn Dataplane,
    family: Family,
    max_period: u32,
    limit: u32,
    timeout: Duration,
) -> Result<u64, String> {
    let mut from: Option<String> = None;
    let mut n = 0u64;
    let result = (|| -> Result<u64, String> {
        loop {
            peer.post(&wire::dhcp_disable(family, max_period), REQUEST_TIMEOUT)?
                .into_ok()
                .map_err(|e| e.to_string())?;
            let page = peer
                .post(&wire::lease_get_page(family, from.clone(), limit), timeout)?
                .into_ok()
                .map_err(|e| e.to_string())?;
            let leases = page
                .arguments
                .as_ref()
                .and_then(|a| a.get("leases"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for l in &leases {
                if !wire::page_lease_acceptable(l) {
                    continue;
                }
                match family {
                    Family::V4 => merge_lease4(dp, l)?,
                    Family::V6 => merge_lease6(dp, l)?,
                }
                n += 1;
            }
            if (leases.len() as u32) < limit.max(1) {
                return Ok(n);
            }
            from = leases
                .last()
                .and_then(|l| l.get("ip-address"))
                .and_then(Value::as_str)
                .map(String::from);
            if from.is_none() {
                return Ok(n);
            }
        }
    })();
    match &result {
        Ok(_) => {
            let a = peer.post(&wire::ha_sync_complete_notify(family), REQUEST_TIMEOUT)?;
            if a.result == 2 {
                peer.post(&wire::dhcp_enable(family), REQUEST_TIMEOUT)?;
            }
        }
        Err(_) => {
            let _ = peer.post(&wire::dhcp_enable(family), REQUEST_TIMEOUT);
        }
    }
    result
}

fn merge_lease4(dp: &dyn Dataplane, l: &Value) -> Result<(), String> {
    let Ok(theirs) = wire::lease4_from_json(l) else {
        return Ok(());
    };
    let local = dp
        .call(&dpc::cmd(
            "lease4-get",
            Some(json!({ "ip-address": theirs.addr.to_string() })),
        ))
        .map_err(|e| e.to_string())?;
    if local.result == 0 {
        let ours_cltt = local
            .arguments
            .as_ref()
            .and_then(|a| a.get("cltt"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if ours_cltt >= theirs.cltt {
            return Ok(());
        }
    }
    let mut args = wire::lease4_update(&theirs)["arguments"].clone();
    args["force-create"] = json!(true);
    METRICS
        .get()
        .inspect(|s| s.remember_applied(&LeaseChange::Put4(theirs.clone())));
    let a = dp
        .call(&dpc::cmd("lease4-update", Some(args)))
        .map_err(|e| e.to_string())?;
    if !a.is_success() {
        tracing::warn!(
            "lease {} from the partner refused by the dataplane: {}",
            theirs.addr,
            a.text
        );
    }
    Ok(())
}

/// A v6 lease of a sync page: inserted when missing, overwritten only when ours is older.
fn merge_lease6(dp: &dyn Dataplane, l: &Value) -> Result<(), String> {
    let Ok(theirs) = wire::lease6_from_json(l) else {
        return Ok(());
    };
    let local = dp
        .call(&dpc::cmd(
            "lease6-get",
            Some(json!({
                "ip-address": theirs.addr.to_string(),
                "type": wire::lease6_type_name(theirs.lease_type),
            })),
        ))
        .map_err(|e| e.to_string())?;
    if local.result == 0 {
        let ours_cltt = local
            .arguments
            .as_ref()
            .and_then(|a| a.get("cltt"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if ours_cltt >= theirs.cltt {
            return Ok(());
        }
    }
    let mut args = wire::lease6_bulk_apply(std::slice::from_ref(&theirs), &[])["arguments"]
        ["leases"][0]
        .clone();
    args["force-create"] = json!(true);
    METRICS
        .get()
        .inspect(|s| s.remember_applied(&LeaseChange::Put6(theirs.clone())));
    let a = dp
        .call(&dpc::cmd("lease6-update", Some(args)))
        .map_err(|e| e.to_string())?;
    if !a.is_success() {
        tracing::warn!(
            "lease {} from the partner refused by the dataplane: {}",
            theirs.addr,
            a.text
        );
    }
    Ok(())
}

/// Commands the HA core answers; the rest goes to the dataplane.
const HA_COMMANDS: &[&str] = &[
    "status-get",
    "ha-heartbeat",
    "ha-reset",
    "ha-continue",
    "ha-sync-complete-notify",
    "ha-maintenance-notify",
    "ha-maintenance-start",
    "ha-maintenance-cancel",
    "ha-scopes",
    "ha-sync",
];

/// Handles one request body from HTTP or the UNIX socket; returns the answer map.
fn handle_request(body: &[u8], tx: &SyncSender<Msg>, dp: &dyn Dataplane, shared: &Shared) -> Value {
    let Ok(cmd) = serde_json::from_slice::<Value>(body) else {
        return answer_map(1, "request is not valid JSON", None);
    };
    let name = cmd
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let origin_partner = cmd
        .get("arguments")
        .and_then(|a| a.get("origin"))
        .and_then(Value::as_str)
        == Some("ha-partner");
    let to_core = HA_COMMANDS.contains(&name.as_str())
        || ((name == "dhcp-disable" || name == "dhcp-enable") && origin_partner);
    if to_core {
        let (rtx, rrx) = sync_channel(1);
        if tx.send(Msg::Command { cmd, reply: rtx }).is_err() {
            return answer_map(1, "control process is shutting down", None);
        }
        return rrx
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| answer_map(1, "timed out", None));
    }
    if name == "shutdown" {
        shared.stop.store(true, Ordering::Relaxed);
        return answer_map(0, "Control process shutting down.", None);
    }
    // Lease updates from peers: remember them so they are not echoed back by the replicator.
    if name == "lease4-update" || name == "lease4-add" {
        if let Some(l) = cmd
            .get("arguments")
            .and_then(|a| wire::lease4_from_json(a).ok())
        {
            shared.remember_applied(&LeaseChange::Put4(l));
        }
    } else if name == "lease4-del" {
        if let Some(a) = cmd
            .get("arguments")
            .and_then(|a| a.get("ip-address"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        {
            shared.remember_applied(&LeaseChange::Del4(a));
        }
    }
    remember_applied6(&name, &cmd, shared);
    let mut fwd = cmd.clone();
    if let Value::Object(m) = &mut fwd {
        m.remove("service");
    }
    match dp.call(&fwd) {
        Ok(a) => answer_map(a.result, &a.text, a.arguments),
        Err(e) => answer_map(1, &format!("dataplane unavailable: {e}"), None),
    }
}

/// v6 lease changes a peer sends (`lease6-bulk-apply`, `lease6-update`/`-add`/`-del`): remembered
/// so that the replicator does not send them back.
fn remember_applied6(name: &str, cmd: &Value, shared: &Shared) {
    let args = cmd.get("arguments");
    let list = |k: &str| {
        args.and_then(|a| a.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let del = |v: &Value| {
        let a = v.get("ip-address")?.as_str()?.parse().ok()?;
        let t = v.get("type").and_then(Value::as_str).map_or(
            Some(xdhcp_dataplane::lease::Lease6Type::Na),
            wire::lease6_type_from_name,
        )?;
        Some(LeaseChange::Del6(a, t))
    };
    let (puts, dels): (Vec<Value>, Vec<Value>) = match name {
        "lease6-bulk-apply" => (list("leases"), list("deleted-leases")),
        "lease6-update" | "lease6-add" => (args.cloned().into_iter().collect(), Vec::new()),
        "lease6-del" => (Vec::new(), args.cloned().into_iter().collect()),
        _ => return,
    };
    for p in &puts {
        if let Ok(l) = wire::lease6_from_json(p) {
            shared.remember_applied(&LeaseChange::Put6(l));
        }
    }
    for d in &dels {
        if let Some(c) = del(d) {
            shared.remember_applied(&c);
        }
    }
}

fn http_loop(
    server: &tiny_http::Server,
    tx: &SyncSender<Msg>,
    dp: &dyn Dataplane,
    shared: &Shared,
    expect_auth: &[String],
    _family: Family,
) {
    loop {
        let Ok(mut req) = server.recv() else { return };
        if req.method() == &tiny_http::Method::Get && req.url().starts_with("/metrics") {
            let h = tiny_http::Header::from_bytes(
                "Content-Type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .ok();
            let mut resp = tiny_http::Response::from_string(shared.metrics.encode())
                .with_chunked_threshold(usize::MAX);
            if let Some(h) = h {
                resp = resp.with_header(h);
            }
            let _ = req.respond(resp);
            continue;
        }
        if !expect_auth.is_empty() {
            let got = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.as_str().to_string());
            if !got.is_some_and(|g| expect_auth.contains(&g)) {
                // RFC 9110 §11.6.1: a 401 names the scheme it wants, or clients (curl --anyauth,
                // browsers) do not know to retry with credentials.
                let body = answer_list(401, "Unauthorized", None).to_string();
                let mut resp = tiny_http::Response::from_string(body).with_status_code(401);
                for (k, v) in [
                    (
                        "WWW-Authenticate",
                        "Basic realm=\"xdhcp\", charset=\"UTF-8\"",
                    ),
                    ("Content-Type", "application/json"),
                ] {
                    if let Ok(h) = tiny_http::Header::from_bytes(k, v) {
                        resp = resp.with_header(h);
                    }
                }
                let _ = req.respond(resp);
                continue;
            }
        }
        let mut body = Vec::new();
        if req
            .as_reader()
            .take(64 << 20)
            .read_to_end(&mut body)
            .is_err()
        {
            continue;
        }
        let ans = handle_request(&body, tx, dp, shared);
        // Peers (Kea) need a list.
        let out = Value::Array(vec![ans]).to_string();
        // Kea's HTTP client reads Content-Length bodies only; tiny_http would switch a body over
        // 32 KiB (a lease page) to chunked encoding, which Kea rejects ("no body found in the
        // response") and then misreads the rest of the connection.
        let mut resp = tiny_http::Response::from_string(out).with_chunked_threshold(usize::MAX);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
            resp = resp.with_header(h);
        }
        let _ = req.respond(resp);
    }
}

fn unix_loop(
    l: UnixListener,
    tx: &SyncSender<Msg>,
    dp: &dyn Dataplane,
    shared: &Shared,
    _family: Family,
) {
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        // One JSON document per connection; read until it parses or the peer closes.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if serde_json::from_slice::<Value>(&buf).is_ok() || buf.len() > (64 << 20) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let ans = handle_request(&buf, tx, dp, shared);
        let _ = s.write_all(ans.to_string().as_bytes());
    }
}

/// Replication is asynchronous: the dataplane answers without waiting for it, so when it shares
/// a core with the DHCP workers it must not take their CPU (a lag is what async replication is
/// for). The calling thread drops 10 nice levels; the HA core thread (heartbeats, failure
/// detection) and the listeners keep the process's priority.
fn lower_thread_priority() {
    // SAFETY: getpriority/setpriority on the calling thread's own id (Linux: PRIO_PROCESS with a
    // thread id applies to that thread only).
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let cur = libc::getpriority(libc::PRIO_PROCESS, tid);
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, (cur + 10).min(19));
    }
}

/// Seq state file of one peer: the last journal sequence the peer acknowledged. The DHCPv6
/// control process keeps its own (peer names repeat across the families of a dual-stack config).
fn seq_file(dir: &Path, peer: &str, family: Family) -> PathBuf {
    match family {
        Family::V4 => dir.join(format!("control-acked-{peer}.seq")),
        Family::V6 => dir.join(format!("control-acked6-{peer}.seq")),
    }
}

fn load_seq(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn save_seq(p: &Path, seq: u64) {
    let tmp = p.with_extension("tmp");
    if std::fs::write(&tmp, format!("{seq}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, p);
    }
}

/// Lanes (persistent connections, one update in flight each) per peer in synchronous mode. Four:
/// an xdhcp partner's HA listener (tiny_http 0.12) serves only about four persistent connections
/// at once (its task pool can queue a fifth connection behind ones that never close), and a
/// stalled lane holds every parked reply behind it until it times out.
const SYNC_LANES: usize = 4;
/// Most updates in flight per peer (all lanes): bounds what a stuck lane holds back.
const SYNC_WINDOW: usize = 256;

/// Ships journal changes to one peer, forever. The cursor only moves past a change once the peer
/// acknowledged it (or the policy says the partner will resync instead).
///
/// v4 changes go through `lanes` (one thread and persistent connection each): a change goes to
/// the lane of its address, so two changes to one address reach the peer in journal order, and
/// changes to different addresses travel in parallel; completions come back in any order and an
/// [`AckWindow`] turns them into the contiguous cursor. v6 changes are batched into one
/// `lease6-bulk-apply` and shipped inline once the lanes are idle.
fn replicate(
    dir: &Path,
    lanes: Vec<PeerClient>,
    is_backup: bool,
    shared: &Arc<Shared>,
    tx: &SyncSender<Msg>,
) {
    use xdhcp_dataplane::lease::journal::JournalReader;
    // Asynchronous replication yields to the dataplane; synchronous replication is on the path
    // of every reply that waits, so it keeps its priority (a busy worker at a higher priority on
    // the same core would otherwise starve it and throttle every reply to the lanes' CPU share).
    let background = !shared.sync.enabled();
    if background {
        lower_thread_priority();
    }
    let Some(peer) = lanes.first().cloned() else {
        return;
    };
    let family = FAMILY.get().copied().unwrap_or(Family::V4);
    let state = seq_file(dir, &peer.name, family);
    let mut win = AckWindow::new(load_seq(&state));
    shared.sync.peer_acked(&peer.name, win.acked());
    // Entries up to the journal head at start are a backlog left by a crash or a stop. While we
    // were away the partner may have served those addresses itself (partner-down) and we may
    // have synced its newer leases since: shipping a stale backlog entry would overwrite the
    // partner's newer lease (a lease4-update with force-create always wins). So a backlog entry
    // is shipped only while it is still the current lease at its address in our store.
    let backlog_until = journal_head_seq().unwrap_or(u64::MAX);
    let labels = PeerLabels {
        peer: peer.name.clone(),
    };
    // Lanes: bounded queues in, completions out (at most SYNC_WINDOW outstanding).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
    let mut lane_tx = Vec::new();
    for client in lanes {
        let (ltx, lrx) = sync_channel::<(u64, LeaseChange)>(SYNC_WINDOW);
        let (shared, tx, done_tx, labels) =
            (shared.clone(), tx.clone(), done_tx.clone(), labels.clone());
        std::thread::spawn(move || {
            if background {
                lower_thread_priority();
            }
            while let Ok((seq, change)) = lrx.recv() {
                ship_v4(&client, is_backup, &change, &shared, &tx, &labels);
                if done_tx.send(seq).is_err() {
                    return;
                }
            }
        });
        lane_tx.push(ltx);
    }
    drop(done_tx);
    // Synchronous mode: a parked reply waits for this loop to see its entry, so look often.
    let idle = if shared.sync.enabled() {
        Duration::from_micros(200)
    } else {
        Duration::from_millis(10)
    };
    let mut last_save = Instant::now();
    let mut published = win.acked();
    let publish = |win: &AckWindow, published: &mut u64| {
        if win.acked() != *published {
            *published = win.acked();
            shared.sync.peer_acked(&peer.name, *published);
            shared
                .metrics
                .acked_seq
                .get_or_create(&labels)
                .set(*published as i64);
        }
    };
    let wait_lanes = |win: &mut AckWindow, published: &mut u64, until: usize| {
        while win.in_flight() > until {
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(seq) => {
                    win.completed(seq);
                    while let Ok(seq) = done_rx.try_recv() {
                        win.completed(seq);
                    }
                    publish(win, published);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if shared.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    };
    while !shared.stop.load(Ordering::Relaxed) {
        // Re-opening re-reads from the cursor: nothing may be in flight then.
        if !wait_lanes(&mut win, &mut published, 0) {
            break;
        }
        let mut reader = match JournalReader::open(dir, win.acked() + 1) {
            Ok(r) => r,
            Err(e) => {
                // Compacted past our cursor: the peer needs a full sync; start from the head.
                tracing::warn!(peer = %peer.name, "journal reader: {e}");
                std::thread::sleep(Duration::from_secs(1));
                if matches!(
                    e,
                    xdhcp_dataplane::lease::journal::JournalError::Compacted { .. }
                ) {
                    win = AckWindow::new(win.acked().max(1));
                    save_seq(&state, win.acked());
                }
                continue;
            }
        };
        // A v4 entry read while collecting a v6 batch, handled next.
        let mut held: Option<JournalItem> = None;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                save_seq(&state, win.acked());
                return;
            }
            while let Ok(seq) = done_rx.try_recv() {
                win.completed(seq);
            }
            publish(&win, &mut published);
            if win.in_flight() >= SYNC_WINDOW
                && !wait_lanes(&mut win, &mut published, SYNC_WINDOW - 1)
            {
                save_seq(&state, win.acked());
                return;
            }
            let Some(item) = held.take().or_else(|| reader.next()) else {
                if last_save.elapsed() > Duration::from_millis(200) {
                    save_seq(&state, win.acked());
                    last_save = Instant::now();
                }
                match done_rx.recv_timeout(idle) {
                    Ok(seq) => win.completed(seq),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                continue;
            };
            let Ok(entry) = item else { break };
            // The journal holds both families; each family's control process ships its own.
            if is_v6(&entry.change) != (family == Family::V6) {
                win.skipped(entry.seq);
                continue;
            }
            if is_v6(&entry.change) {
                // One address may be in a lane and in this batch: let the lanes finish first.
                if !wait_lanes(&mut win, &mut published, 0) {
                    return;
                }
                let (batch, next) = collect_v6_batch(entry, &mut reader, shared);
                held = next;
                let Some(last) = batch.last_seq else { continue };
                if !batch.is_empty() {
                    ship_v6(&peer, is_backup, &batch, shared, tx, &labels);
                }
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                win.skipped(last);
                continue;
            }
            if shared.is_echo(&entry.change)
                || (entry.seq <= backlog_until && superseded(&entry.change))
            {
                win.skipped(entry.seq);
                continue;
            }
            let lane = match &entry.change {
                LeaseChange::Put4(l) => u32::from(l.addr) as usize % lane_tx.len(),
                LeaseChange::Del4(a) => u32::from(*a) as usize % lane_tx.len(),
                _ => 0,
            };
            win.dispatched(entry.seq);
            if lane_tx[lane].send((entry.seq, entry.change)).is_err() {
                return;
            }
        }
    }
    save_seq(&state, win.acked());
}

/// Sends one v4 change until the peer acknowledges it, the policy says the partner resyncs
/// instead (partner-down), or the peer refused it [`MAX_REFUSALS`] times.
fn ship_v4(
    peer: &PeerClient,
    is_backup: bool,
    change: &LeaseChange,
    shared: &Shared,
    tx: &SyncSender<Msg>,
    labels: &PeerLabels,
) {
    // A refused update (an unknown subnet-id on the partner, say) is refused every time:
    // like v6 (see `ship_v6`), give up on that one change after a few refusals rather than
    // stop replication for good.
    let mut refusals = 0u32;
    loop {
        match shared.policy(&peer.name) {
            ShipPolicy::Skip => {
                if !is_backup {
                    shared.unsent.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            ShipPolicy::Queue => {
                std::thread::sleep(Duration::from_millis(50));
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            ShipPolicy::Send => {}
        }
        let cmd = match change {
            LeaseChange::Put4(l) => wire::lease4_update(l),
            LeaseChange::Del4(a) => wire::lease4_del_addr(*a),
            _ => return,
        };
        match peer.post(&cmd, REQUEST_TIMEOUT) {
            Ok(a) if a.is_success() => {
                shared.metrics.shipped.get_or_create(labels).inc();
                return;
            }
            Ok(a) => {
                tracing::warn!(peer = %peer.name, "lease update refused: {} ({})", a.text, a.result);
                shared.metrics.ship_failures.get_or_create(labels).inc();
                // Kea drops the parked reply when its update fails.
                shared.sync.peer_failed(&peer.name);
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    tracing::warn!(peer = %peer.name, "partner refused a lease update {refusals} times: {} ({}); not sent again", a.text, a.result);
                    if !is_backup {
                        let _ = tx.try_send(Msg::RequestFailed { rel: 0 });
                    }
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(peer = %peer.name, "lease update failed: {e}");
                shared.metrics.ship_failures.get_or_create(labels).inc();
                shared.sync.peer_failed(&peer.name);
            }
        }
        if !is_backup {
            let _ = tx.try_send(Msg::RequestFailed { rel: 0 });
        }
        std::thread::sleep(Duration::from_millis(500));
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

type JournalItem = Result<
    xdhcp_dataplane::lease::journal::JournalEntry,
    xdhcp_dataplane::lease::journal::JournalError,
>;

/// Most v6 changes in one `lease6-bulk-apply` (Kea sends one per packet; a journal tail that is
/// behind is shipped in batches of this many).
const V6_BATCH: usize = 64;

fn is_v6(c: &LeaseChange) -> bool {
    matches!(c, LeaseChange::Put6(_) | LeaseChange::Del6(..))
}

/// The v6 changes of one `lease6-bulk-apply`, and the journal seq they cover.
struct V6Batch {
    leases: Vec<xdhcp_dataplane::lease::Lease6>,
    deleted: Vec<Value>,
    addrs: Vec<std::net::Ipv6Addr>,
    last_seq: Option<u64>,
}

impl V6Batch {
    fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.deleted.is_empty()
    }

    /// One batch per change (deletions first, as the receiver applies them).
    fn singles(&self) -> Vec<V6Batch> {
        let del_addr = |d: &Value| {
            d.get("ip-address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        };
        let dels = self.deleted.iter().map(|d| V6Batch {
            leases: Vec::new(),
            deleted: vec![d.clone()],
            addrs: del_addr(d).into_iter().collect(),
            last_seq: self.last_seq,
        });
        let puts = self.leases.iter().map(|l| V6Batch {
            leases: vec![l.clone()],
            deleted: Vec::new(),
            addrs: vec![l.addr],
            last_seq: self.last_seq,
        });
        dels.chain(puts).collect()
    }
}

/// Collects `first` and the v6 entries already in the journal after it, up to [`V6_BATCH`].
/// Stops before an address already in the batch (the receiver applies deletions before updates,
/// so two changes to one address must go in order, in separate commands) and at a v4 entry or a
/// read error, which is returned to be handled next. Echoes of what a peer sent us are dropped.
fn collect_v6_batch(
    first: xdhcp_dataplane::lease::journal::JournalEntry,
    reader: &mut xdhcp_dataplane::lease::journal::JournalReader,
    shared: &Shared,
) -> (V6Batch, Option<JournalItem>) {
    let mut b = V6Batch {
        leases: Vec::new(),
        deleted: Vec::new(),
        addrs: Vec::new(),
        last_seq: None,
    };
    let mut next = Some(Ok(first));
    loop {
        let Some(item) = next.take() else {
            return (b, None);
        };
        let entry = match item {
            Ok(e) if is_v6(&e.change) => e,
            other => return (b, Some(other)),
        };
        let addr = match &entry.change {
            LeaseChange::Put6(l) => l.addr,
            LeaseChange::Del6(a, _) => *a,
            _ => unreachable!("is_v6 checked"),
        };
        if b.addrs.contains(&addr) {
            return (b, Some(Ok(entry)));
        }
        b.last_seq = Some(entry.seq);
        if !shared.is_echo(&entry.change) {
            b.addrs.push(addr);
            match entry.change {
                LeaseChange::Put6(l) => b.leases.push(l),
                LeaseChange::Del6(a, t) => b.deleted.push(wire::lease6_delete_entry(a, t)),
                _ => {}
            }
        }
        if b.addrs.len() >= V6_BATCH {
            return (b, None);
        }
        next = reader.next();
    }
}

/// Refusals (an answer, not a transport error) of a one-lease update (`lease4-update`,
/// `lease4-del` or a one-change `lease6-bulk-apply`) before that change is dropped.
const MAX_REFUSALS: u32 = 3;

/// Sends one `lease6-bulk-apply` until the peer answers it with success (or the policy says the
/// partner resyncs instead), as the v4 path does per lease. Leases the peer lists as failed are
/// logged and counted, not resent: Kea 2.2's HA does the same (`logFailedLeaseUpdates`).
///
/// A refused command is not a partner that cannot be reached: Kea 2.2's `lease6-bulk-apply`
/// parses every lease before applying any, so one lease it cannot take (a subnet-id it does not
/// have, say) refuses the whole command, every time. Resending it forever would stop replication
/// for good; so a refused batch is split into one command per change, and a single change
/// refused [`MAX_REFUSALS`] times is logged and dropped. Each refusal marks the partner
/// unavailable once, as Kea's HA does for a failed lease update.
fn ship_v6(
    peer: &PeerClient,
    is_backup: bool,
    b: &V6Batch,
    shared: &Shared,
    tx: &SyncSender<Msg>,
    labels: &PeerLabels,
) {
    let cmd = wire::lease6_bulk_apply(&b.leases, &b.deleted);
    let n = (b.leases.len() + b.deleted.len()) as u64;
    let mut refusals = 0u32;
    loop {
        match shared.policy(&peer.name) {
            ShipPolicy::Skip => {
                if !is_backup {
                    shared.unsent.fetch_add(n, Ordering::Relaxed);
                }
                return;
            }
            ShipPolicy::Queue => {
                std::thread::sleep(Duration::from_millis(50));
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            ShipPolicy::Send => {}
        }
        match peer.post(&cmd, REQUEST_TIMEOUT) {
            Ok(a) if a.is_success() => {
                let failed: Vec<wire::BulkFailure> = match wire::bulk_apply_failures(&a) {
                    Ok(f) => f.into_iter().filter(|f| f.is_real()).collect(),
                    Err(e) => {
                        tracing::warn!(peer = %peer.name, "lease6-bulk-apply answer: {e}");
                        Vec::new()
                    }
                };
                for f in &failed {
                    tracing::warn!(peer = %peer.name, "partner failed to {} lease {} ({}): {} ({})",
                        if f.deleted { "delete" } else { "update" }, f.lease, f.lease_type, f.message, f.result);
                }
                shared
                    .metrics
                    .ship_failures
                    .get_or_create(labels)
                    .inc_by(failed.len() as u64);
                shared
                    .metrics
                    .shipped
                    .get_or_create(labels)
                    .inc_by(n.saturating_sub(failed.len() as u64));
                return;
            }
            Ok(a) => {
                shared.metrics.ship_failures.get_or_create(labels).inc();
                shared.sync.peer_failed(&peer.name);
                if !is_backup {
                    let _ = tx.try_send(Msg::RequestFailed { rel: 0 });
                }
                if n > 1 {
                    tracing::warn!(peer = %peer.name, "lease6-bulk-apply of {n} changes refused: {} ({}); sending them one by one", a.text, a.result);
                    for single in b.singles() {
                        ship_v6(peer, is_backup, &single, shared, tx, labels);
                    }
                    return;
                }
                refusals += 1;
                let what = b
                    .addrs
                    .first()
                    .map_or_else(String::new, ToString::to_string);
                if refusals >= MAX_REFUSALS {
                    tracing::warn!(peer = %peer.name, "partner refused lease {what} {refusals} times: {} ({}); not sent again", a.text, a.result);
                    return;
                }
                tracing::warn!(peer = %peer.name, "partner refused lease {what}: {} ({})", a.text, a.result);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => {
                tracing::debug!(peer = %peer.name, "lease6-bulk-apply failed: {e}");
                shared.metrics.ship_failures.get_or_create(labels).inc();
                shared.sync.peer_failed(&peer.name);
            }
        }
        if !is_backup {
            let _ = tx.try_send(Msg::RequestFailed { rel: 0 });
        }
        std::thread::sleep(Duration::from_millis(500));
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The dataplane's durable journal sequence now (`status-get` → `journal-durable-seq`).
fn journal_head_seq() -> Option<u64> {
    let dp = DP.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    for _ in 0..50 {
        if let Ok(a) = dp.call(&dpc::cmd("status-get", None)) {
            return a
                .arguments
                .as_ref()
                .and_then(|v| v.get("journal-durable-seq"))
                .and_then(Value::as_u64);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Whether a backlog change no longer describes the lease at its address in the dataplane: a
/// newer change (ours later in the journal, or the partner's merged by a sync) replaced it.
/// When the dataplane cannot be asked, the change is shipped (the partner's cltt check on sync
/// and the later journal entries still converge).
fn superseded(c: &LeaseChange) -> bool {
    let LeaseChange::Put4(l) = c else {
        return false;
    };
    let Some(dp) = DP.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return false;
    };
    let Ok(a) = dp.call(&dpc::cmd(
        "lease4-get",
        Some(json!({ "ip-address": l.addr.to_string() })),
    )) else {
        return false;
    };
    if a.result != 0 {
        // Gone (deleted or reclaimed since): a later journal entry says so.
        return a.result == 3;
    }
    let Some(cur) = a
        .arguments
        .as_ref()
        .and_then(|v| wire::lease4_from_json(v).ok())
    else {
        return false;
    };
    cur.hwaddr.as_slice() != l.hwaddr.as_slice() || cur.cltt > l.cltt
}

/// Sets the process-wide handles the worker threads use.
pub fn install_globals(dp: Arc<dyn Dataplane>, family: Family) {
    *DP.lock().unwrap_or_else(|e| e.into_inner()) = Some(dp);
    let _ = FAMILY.set(family);
}

/// Runs with the globals installed (the process entry point).
pub fn run_process(opts: Options, dp: Arc<dyn Dataplane>) -> anyhow::Result<()> {
    install_globals(dp.clone(), opts.family);
    run(opts, dp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xdhcp_config::model::HaPeer;
    use xdhcp_dataplane::lease::journal::{Journal, JournalConfig};
    use xdhcp_dataplane::lease::{HwAddr, IdBuf, Lease4, LeaseState};
    use xdhcp_dataplane::syncrepl::gate::{gate_path, Gate, Slot};

    fn lease(i: u32, cltt: u64) -> Lease4 {
        Lease4 {
            addr: Ipv4Addr::from(0x0a40_0000 + i),
            hwaddr: HwAddr::ethernet([0, 0x0c, 0, 0, (i >> 8) as u8, i as u8]),
            client_id: IdBuf::default(),
            subnet_id: 1,
            cltt,
            valid_lft: 3600,
            state: LeaseState::Assigned,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: None,
        }
    }

    /// A fake Kea peer: answers every lease update after `delay`, several at once, and records
    /// (address, cltt) in arrival order.
    /// (address, cltt) of each update the fake peer received, in arrival order.
    type Seen = Arc<Mutex<Vec<(String, u64)>>>;

    fn fake_peer(delay: Duration) -> (String, Seen) {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..8 {
            let (server, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = String::new();
                    let _ = rq.as_reader().read_to_string(&mut body);
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let a = &v["arguments"];
                    let addr = a["ip-address"].as_str().unwrap_or("").to_string();
                    let cltt =
                        a["expire"].as_u64().unwrap_or(0) - a["valid-lft"].as_u64().unwrap_or(0);
                    std::thread::sleep(delay);
                    seen.lock().unwrap().push((addr, cltt));
                    let _ = rq.respond(tiny_http::Response::from_string(
                        r#"[{"result": 0, "text": "ok"}]"#,
                    ));
                }
            });
        }
        (url, seen)
    }

    fn peer(url: &str) -> HaPeer {
        let u = url.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = u.split_once(':').unwrap();
        HaPeer {
            name: "server2".into(),
            url: url.into(),
            host: host.into(),
            port: port.parse().unwrap(),
            tls: false,
            role: HaRole::Standby,
            auto_failover: true,
            basic_auth_user: None,
            basic_auth_password: None,
            trust_anchor: None,
            cert_file: None,
            key_file: None,
        }
    }

    /// Synchronous mode ships with several updates in flight (so throughput is not 1/RTT), keeps
    /// the order of changes to one address, and publishes the contiguous acknowledged sequence to
    /// the gate the dataplane waits on.
    #[test]
    fn lanes_pipeline_updates_and_publish_the_acked_prefix() {
        let d = tempfile::tempdir().unwrap();
        let jdir = d.path().join("l4.csv.journal");
        let (j, _) = Journal::open(JournalConfig::new(&jdir)).unwrap();
        let p = j.producer();
        // 40 addresses, then a second change to each of the first 8 (order must hold per address).
        for i in 0..40 {
            p.try_push(LeaseChange::Put4(lease(i, 1_800_000_000)))
                .unwrap();
        }
        for i in 0..8 {
            p.try_push(LeaseChange::Put4(lease(i, 1_800_000_100)))
                .unwrap();
        }
        let last = j.flush_blocking(Duration::from_secs(5)).unwrap();
        assert_eq!(last, 48);

        let delay = Duration::from_millis(20);
        let (url, seen) = fake_peer(delay);
        let dp_gate = Gate::open(&gate_path(&jdir)).unwrap();
        let shared = Arc::new(Shared {
            metrics: Metrics::new(),
            policies: Mutex::new(HashMap::from([("server2".to_string(), ShipPolicy::Send)])),
            echo: Mutex::new(EchoSet::default()),
            stop: AtomicBool::new(false),
            unsent: AtomicU64::new(0),
            sync: SyncPublisher::new(Gate::open(&gate_path(&jdir)).unwrap(), Slot::V4),
        });
        shared.sync.set_must_ack("server2", true);
        assert!(dp_gate.waiting());
        let lanes: Vec<PeerClient> = (0..SYNC_LANES)
            .map(|_| PeerClient::new(&peer(&url)).with_keep_alive(REQUEST_TIMEOUT))
            .collect();
        let (tx, _rx) = sync_channel::<Msg>(16);
        let t0 = Instant::now();
        let th = {
            let (jdir, shared) = (jdir.clone(), shared.clone());
            std::thread::spawn(move || replicate(&jdir, lanes, false, &shared, &tx))
        };
        while dp_gate.acked_seq() < last && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = t0.elapsed();
        shared.stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
        assert_eq!(dp_gate.acked_seq(), last, "gate reached the journal head");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 48);
        // One at a time would take 48 × 20 ms = 960 ms.
        assert!(
            took < delay * 48 * 2 / 3,
            "updates were not pipelined: {took:?} for 48 updates of {delay:?}"
        );
        for i in 0..8 {
            let a = Ipv4Addr::from(0x0a40_0000 + i).to_string();
            let order: Vec<u64> = seen.iter().filter(|s| s.0 == a).map(|s| s.1).collect();
            assert_eq!(order, vec![1_800_000_000, 1_800_000_100], "order of {a}");
        }
        assert_eq!(load_seq(&seq_file(&jdir, "server2", Family::V4)), last);
    }

    #[test]
    fn echo_set_consumes_each_applied_change_once_and_stays_bounded() {
        let mut e = EchoSet::default();
        e.insert("a".into());
        e.insert("a".into());
        assert!(e.take("a") && e.take("a") && !e.take("a"));
        for i in 0..ECHO_MAX + 10 {
            e.insert(i.to_string());
        }
        assert_eq!(e.order.len(), ECHO_MAX);
        assert!(!e.take("0"), "evicted");
        assert!(e.take(&(ECHO_MAX + 9).to_string()));
        assert!(e.pending.len() <= ECHO_MAX);
    }

    /// A failed update of a peer that must acknowledge bumps the gate's failure generation, so
    /// the dataplane drops what waits (as Kea drops a parked reply whose update failed).
    #[test]
    fn a_failed_update_tells_the_dataplane_to_drop() {
        let d = tempfile::tempdir().unwrap();
        let dp_gate = Gate::open(&gate_path(d.path())).unwrap();
        let shared = Shared {
            metrics: Metrics::new(),
            policies: Mutex::new(HashMap::from([("server2".to_string(), ShipPolicy::Send)])),
            echo: Mutex::new(EchoSet::default()),
            stop: AtomicBool::new(false),
            unsent: AtomicU64::new(0),
            sync: SyncPublisher::new(Gate::open(&gate_path(d.path())).unwrap(), Slot::V4),
        };
        shared.sync.set_must_ack("server2", true);
        // Nothing listens on this port: the update fails at once; stop after the first retry.
        let client = PeerClient::new(&peer("http://127.0.0.1:9/"));
        let (tx, rx) = sync_channel::<Msg>(16);
        let g0 = dp_gate.fail_gen();
        {
            std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(200));
                    shared.stop.store(true, Ordering::Relaxed);
                });
                ship_v4(
                    &client,
                    false,
                    &LeaseChange::Put4(lease(1, 1_800_000_000)),
                    &shared,
                    &tx,
                    &PeerLabels {
                        peer: "server2".into(),
                    },
                );
            })
        }
        assert!(dp_gate.fail_gen() > g0);
        assert!(matches!(rx.try_recv(), Ok(Msg::RequestFailed { .. })));
    }
}
