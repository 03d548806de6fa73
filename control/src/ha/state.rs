//! The HA state machine of one relationship, sans-IO (quinn style): it owns no socket, clock, timer
//! or thread. The shell feeds it the current time and what happened (`handle_timeout`,
//! `handle_heartbeat_response`, peer and admin commands, results of the long operations it asked
//! for) and pulls what to do with [`HaMachine::poll_action`] and when to wake it with
//! [`HaMachine::poll_timeout`].
//!
//! The states, the transitions and the failure detection follow Kea 2.2's HA hook
//! (`ha_service.cc` state handlers, `communication_state.cc`, `query_filter.cc` scopes) so that a
//! real Kea 2.2 partner sees the behaviour it expects. Where Kea blocks (lease sync, backlog replay,
//! `ha-reset` to the partner, maintenance notifications) the machine instead emits an [`Action`]
//! and waits for its result, so heartbeats and commands keep flowing meanwhile.
//!
//! Time is two numbers: a monotonic millisecond clock for every timeout, and the wall clock (unix
//! seconds) used only to compute the clock skew against the partner's `date-time`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use xdhcp_config::model::{HaMode, HaRelationship, HaRole};

/// Kea's clock skew thresholds (`communication_state.cc`), seconds.
pub const WARN_CLOCK_SKEW_SECS: i64 = 30;
pub const TERM_CLOCK_SKEW_SECS: i64 = 60;
/// Minimum time between two clock skew warnings, seconds.
pub const MIN_TIME_SINCE_CLOCK_SKEW_WARN_SECS: u64 = 60;
/// Bound on remembered connecting clients (Kea keeps them unbounded; any value above
/// `max-unacked-clients` already decides the partner-down test).
pub const CONNECTING_CLIENTS_MAX: usize = 65_536;
/// Bound on queued actions; `Serving` actions are coalesced so this is never reached in practice.
pub const ACTIONS_MAX: usize = 256;

/// The twelve Kea 2.2 HA states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Backup,
    CommunicationRecovery,
    HotStandby,
    LoadBalancing,
    InMaintenance,
    PartnerDown,
    PartnerInMaintenance,
    PassiveBackup,
    Ready,
    Syncing,
    Terminated,
    Waiting,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Backup,
        State::CommunicationRecovery,
        State::HotStandby,
        State::LoadBalancing,
        State::InMaintenance,
        State::PartnerDown,
        State::PartnerInMaintenance,
        State::PassiveBackup,
        State::Ready,
        State::Syncing,
        State::Terminated,
        State::Waiting,
    ];

    /// Kea's state name, as sent in `ha-heartbeat` and `status-get`.
    pub fn name(self) -> &'static str {
        match self {
            State::Backup => "backup",
            State::CommunicationRecovery => "communication-recovery",
            State::HotStandby => "hot-standby",
            State::LoadBalancing => "load-balancing",
            State::InMaintenance => "in-maintenance",
            State::PartnerDown => "partner-down",
            State::PartnerInMaintenance => "partner-in-maintenance",
            State::PassiveBackup => "passive-backup",
            State::Ready => "ready",
            State::Syncing => "syncing",
            State::Terminated => "terminated",
            State::Waiting => "waiting",
        }
    }

    pub fn from_name(s: &str) -> Option<State> {
        State::ALL.iter().copied().find(|st| st.name() == s)
    }

    /// States in which Kea enables the DHCP service (`adjustNetworkState`).
    pub fn serves_dhcp(self) -> bool {
        matches!(
            self,
            State::CommunicationRecovery
                | State::LoadBalancing
                | State::HotStandby
                | State::PartnerDown
                | State::PartnerInMaintenance
                | State::PassiveBackup
                | State::Terminated
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What we know of the partner's state. Kea starts with "unknown" (-1), which is neither in touch
/// nor unavailable; any failed request makes it `Unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerState {
    Unknown,
    Unavailable,
    Is(State),
}

impl PartnerState {
    pub fn name(self) -> &'static str {
        match self {
            PartnerState::Unknown => "",
            PartnerState::Unavailable => "unavailable",
            PartnerState::Is(s) => s.name(),
        }
    }
}

/// `state-machine` pausing of one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pausing {
    Never,
    Once,
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    pub role: HaRole,
}

pub fn role_name(r: HaRole) -> &'static str {
    match r {
        HaRole::Primary => "primary",
        HaRole::Secondary => "secondary",
        HaRole::Standby => "standby",
        HaRole::Backup => "backup",
    }
}

pub fn mode_name(m: HaMode) -> &'static str {
    match m {
        HaMode::HotStandby => "hot-standby",
        HaMode::LoadBalancing => "load-balancing",
        HaMode::PassiveBackup => "passive-backup",
    }
}

/// The parameters the machine needs, taken from one `high-availability` entry.
#[derive(Debug, Clone)]
pub struct HaParams {
    pub this_name: String,
    pub mode: HaMode,
    pub peers: Vec<PeerInfo>,
    pub heartbeat_delay_ms: u64,
    pub max_response_delay_ms: u64,
    pub max_ack_delay_ms: u64,
    pub max_unacked_clients: u32,
    pub delayed_updates_limit: u32,
    pub sync_leases: bool,
    pub send_lease_updates: bool,
    pub sync_timeout_ms: u64,
    pub auto_failover: bool,
    pub pausing: Vec<(State, Pausing)>,
    /// DESIGN.md's safety period: how long after entering partner-down the survivor waits before it
    /// may allocate the partner's free addresses (the longest lease the partner could have granted
    /// unseen). 0 allows it at once.
    pub partner_free_delay_ms: u64,
}

impl HaParams {
    pub fn from_config(rel: &HaRelationship, partner_free_delay_ms: u64) -> HaParams {
        let me = rel.peers.iter().find(|p| p.name == rel.this_server_name);
        let pausing = rel
            .paused_states
            .iter()
            .filter_map(|(s, p)| {
                let st = State::from_name(s)?;
                let pz = match p.as_str() {
                    "always" => Pausing::Always,
                    "once" => Pausing::Once,
                    _ => Pausing::Never,
                };
                Some((st, pz))
            })
            .collect();
        HaParams {
            this_name: rel.this_server_name.clone(),
            mode: rel.mode,
            peers: rel
                .peers
                .iter()
                .map(|p| PeerInfo {
                    name: p.name.clone(),
                    role: p.role,
                })
                .collect(),
            heartbeat_delay_ms: u64::from(rel.heartbeat_delay_ms),
            max_response_delay_ms: u64::from(rel.max_response_delay_ms),
            max_ack_delay_ms: u64::from(rel.max_ack_delay_ms),
            max_unacked_clients: rel.max_unacked_clients,
            delayed_updates_limit: rel.delayed_updates_limit,
            sync_leases: rel.sync_leases,
            send_lease_updates: rel.send_lease_updates,
            sync_timeout_ms: u64::from(rel.sync_timeout_ms),
            auto_failover: me.map(|p| p.auto_failover).unwrap_or(true),
            pausing,
            partner_free_delay_ms,
        }
    }

    pub fn role(&self) -> HaRole {
        self.peers
            .iter()
            .find(|p| p.name == self.this_name)
            .map(|p| p.role)
            .unwrap_or(HaRole::Backup)
    }

    /// The other active server (Kea's failover peer); none in passive-backup or for a lone server.
    pub fn partner(&self) -> Option<&PeerInfo> {
        if self.mode == HaMode::PassiveBackup {
            return None;
        }
        self.peers
            .iter()
            .find(|p| p.name != self.this_name && p.role != HaRole::Backup)
    }

    /// `max-period` of the `dhcp-disable` sent during sync: sync-timeout in seconds, at least 1.
    pub fn sync_max_period_secs(&self) -> u32 {
        ((self.sync_timeout_ms / 1000).max(1)).min(u64::from(u32::MAX)) as u32
    }
}

/// The current time as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin).
    pub mono_ms: u64,
    /// Wall clock, unix seconds (may jump; only used for the clock skew).
    pub wall_secs: i64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `ha-heartbeat` to the partner and report with `handle_heartbeat_response`.
    SendHeartbeat,
    /// Pull the partner's leases (dhcp-disable, lease4-get-page..., ha-sync-complete-notify or
    /// dhcp-enable) and report with `handle_sync_result`.
    Sync {
        peer: String,
        max_period_secs: u32,
    },
    /// Communication-recovery: send the lease updates queued for the partner, report with
    /// `handle_backlog_result`.
    ReplayBacklog,
    /// Send `ha-reset` to the partner, report with `handle_ha_reset_result`.
    SendHaReset,
    /// Tell the dataplane what to answer for this relationship.
    Serving {
        enabled: bool,
        scopes: Vec<String>,
    },
    /// May the dataplane allocate the partner's free addresses (after the safety period)?
    AllocPartnerFree(bool),
    StateChanged {
        from: State,
        to: State,
    },
    ClockSkewWarning {
        skew_secs: i64,
    },
    ClockSkewTerminate {
        skew_secs: i64,
    },
    /// Local lease changes not sent to the partner from now on must be re-shipped only after the
    /// partner resynchronised (entering a state from which we no longer replicate).
    ReplicationReset,
}

/// Result code and text of a command answer (Kea's `createAnswer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: i64,
    pub text: String,
}

impl Answer {
    fn new(result: i64, text: impl Into<String>) -> Answer {
        Answer {
            result,
            text: text.into(),
        }
    }
}

pub const RESULT_SUCCESS: i64 = 0;
pub const RESULT_ERROR: i64 = 1;
pub const RESULT_UNSUPPORTED: i64 = 2;
pub const RESULT_EMPTY: i64 = 3;
pub const RESULT_MAINTENANCE_NOT_ALLOWED: i64 = 1001;

/// What came back from a request to the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered with this result code and text.
    Answered { result: i64, text: String },
    /// No usable answer (connect error, timeout, HTTP or JSON error).
    CommError(String),
}

/// The partner's answer to `ha-heartbeat`, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatInfo {
    pub state: State,
    /// The partner's `date-time`, unix seconds.
    pub partner_time_secs: i64,
    pub scopes: Vec<String>,
    pub unsent_update_count: Option<u64>,
}

/// The key by which Kea counts connecting clients: (chaddr, client-id) in v4, DUID in v6.
pub type ClientKey = Vec<u8>;

/// Kea's v4 unacked rule: `secs * 1000 > max-ack-delay`, with the byte swap for clients that send
/// `secs` in little endian (value > 255 and low byte 0).
pub fn v4_secs_unacked(secs: u16, max_ack_delay_ms: u64) -> bool {
    let secs = if secs > 255 && (secs & 0xff) == 0 {
        secs.swap_bytes()
    } else {
        secs
    };
    u64::from(secs) * 1000 > max_ack_delay_ms
}

/// Kea's v6 unacked rule: elapsed-time is in hundredths of a second.
pub fn v6_elapsed_unacked(elapsed_centisecs: u16, max_ack_delay_ms: u64) -> bool {
    u64::from(elapsed_centisecs) * 10 > max_ack_delay_ms
}

/// Kea's NetworkState for the HA origin: the HA state and the partner's `dhcp-disable`
/// (`origin: ha-partner`) share one flag, and a partner's disable re-enables itself after
/// `max-period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NetworkState {
    disabled_by_ha: bool,
    reenable_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Sync,
    Backlog,
    HaReset,
}

/// Events Kea's handlers look at (`getLastEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastEvent {
    Other,
    MaintenanceStart,
    MaintenanceCancel,
    SyncedPartnerUnavailable,
}

/// The state machine of one relationship.
#[derive(Debug)]
pub struct HaMachine {
    p: HaParams,
    role: HaRole,
    state: State,
    prev_state: State,
    partner: PartnerState,
    partner_scopes: Vec<String>,
    /// (previous, latest) `unsent-update-count` the partner reported.
    partner_unsent: (u64, u64),
    last_poke_ms: u64,
    /// The model already ran after the communication became interrupted (no more wake-ups for it
    /// until the next successful heartbeat).
    interrupt_noted: bool,
    clock_skew_secs: i64,
    last_skew_warn_ms: Option<u64>,
    hb_running: bool,
    hb_deadline_ms: Option<u64>,
    hb_in_flight: bool,
    connecting: HashMap<ClientKey, bool>,
    analyzed: u64,
    unsent_update_count: u64,
    scopes: BTreeSet<String>,
    net: NetworkState,
    paused: bool,
    paused_once: BTreeSet<State>,
    last_event: LastEvent,
    /// One-shot: the handler run right after a maintenance cancel does nothing (Kea's
    /// `isMaintenanceCanceled`).
    skip_after_cancel: bool,
    sync_complete_notified: bool,
    pending: Pending,
    backlog_overflown: bool,
    partner_free: bool,
    partner_free_at_ms: Option<u64>,
    last_serving: Option<(bool, Vec<String>)>,
    actions: VecDeque<Action>,
    transitions: u64,
}

impl HaMachine {
    /// Starts in `waiting` with DHCP disabled, as every Kea server does. The first heartbeat goes
    /// out one `heartbeat-delay` after `now`.
    pub fn new(p: HaParams, now: Now) -> HaMachine {
        let role = p.role();
        let mut m = HaMachine {
            p,
            role,
            state: State::Waiting,
            prev_state: State::Waiting,
            partner: PartnerState::Unknown,
            partner_scopes: Vec::new(),
            partner_unsent: (0, 0),
            last_poke_ms: now.mono_ms,
            interrupt_noted: false,
            clock_skew_secs: 0,
            last_skew_warn_ms: None,
            hb_running: false,
            hb_deadline_ms: None,
            hb_in_flight: false,
            connecting: HashMap::new(),
            analyzed: 0,
            unsent_update_count: 0,
            scopes: BTreeSet::new(),
            net: NetworkState {
                disabled_by_ha: false,
                reenable_at_ms: None,
            },
            paused: false,
            paused_once: BTreeSet::new(),
            last_event: LastEvent::Other,
            skip_after_cancel: false,
            sync_complete_notified: false,
            pending: Pending::None,
            backlog_overflown: false,
            partner_free: false,
            partner_free_at_ms: None,
            last_serving: None,
            actions: VecDeque::new(),
            transitions: 0,
        };
        m.enter_state(State::Waiting, now);
        m.run_model(now);
        m
    }

    // ------------------------------------------------------------------------------------------
    // Read-only view
    // ------------------------------------------------------------------------------------------

    pub fn params(&self) -> &HaParams {
        &self.p
    }
    pub fn role(&self) -> HaRole {
        self.role
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn prev_state(&self) -> State {
        self.prev_state
    }
    pub fn partner_state(&self) -> PartnerState {
        self.partner
    }
    pub fn partner_scopes(&self) -> &[String] {
        &self.partner_scopes
    }
    pub fn served_scopes(&self) -> Vec<String> {
        self.scopes.iter().cloned().collect()
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }
    pub fn dhcp_enabled(&self) -> bool {
        !self.net.disabled_by_ha
    }
    pub fn unsent_update_count(&self) -> u64 {
        self.unsent_update_count
    }
    pub fn clock_skew_secs(&self) -> i64 {
        self.clock_skew_secs
    }
    pub fn partner_free_allowed(&self) -> bool {
        self.partner_free
    }
    pub fn transitions(&self) -> u64 {
        self.transitions
    }
    pub fn analyzed_packets(&self) -> u64 {
        self.analyzed
    }
    pub fn connecting_clients(&self) -> usize {
        self.connecting.len()
    }
    pub fn unacked_clients(&self) -> usize {
        self.connecting.values().filter(|u| **u).count()
    }

    /// More than `max-response-delay` since the last successful heartbeat.
    pub fn is_communication_interrupted(&self, now: Now) -> bool {
        now.mono_ms.saturating_sub(self.last_poke_ms) > self.p.max_response_delay_ms
    }

    /// Seconds since the last successful heartbeat (`age` in status-get; 0 when not in touch).
    pub fn age_secs(&self, now: Now) -> u64 {
        if self.in_touch() {
            now.mono_ms.saturating_sub(self.last_poke_ms) / 1000
        } else {
            0
        }
    }

    /// Kea: `in-touch` is true once a partner state was ever learned and is not unavailable.
    pub fn in_touch(&self) -> bool {
        matches!(self.partner, PartnerState::Is(_))
    }

    /// `unacked-clients-left` of status-get.
    pub fn unacked_clients_left(&self, now: Now) -> u64 {
        let unacked = self.unacked_clients() as u64;
        let max = u64::from(self.p.max_unacked_clients);
        if self.is_communication_interrupted(now) && max >= unacked {
            max - unacked + 1
        } else {
            0
        }
    }

    /// Whether lease updates go to `peer` now (Kea's `shouldSendLeaseUpdates`).
    pub fn should_send_lease_updates(&self, peer_role: HaRole) -> bool {
        if !self.p.send_lease_updates {
            return false;
        }
        if peer_role == HaRole::Backup {
            return true;
        }
        if self.role == HaRole::Backup {
            return false;
        }
        matches!(
            self.state,
            State::HotStandby | State::LoadBalancing | State::PartnerInMaintenance
        )
    }

    /// Whether lease updates for `peer` are held back for a later replay (communication-recovery).
    pub fn should_queue_lease_updates(&self, peer_role: HaRole) -> bool {
        self.p.send_lease_updates
            && peer_role != HaRole::Backup
            && self.state == State::CommunicationRecovery
    }

    /// The next instant at which `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut consider = |x: Option<u64>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if !self.hb_in_flight {
            consider(self.hb_deadline_ms);
        }
        consider(self.net.reenable_at_ms);
        if !self.partner_free {
            consider(self.partner_free_at_ms);
        }
        // Wake up when the communication becomes interrupted, so failover does not wait for the
        // next heartbeat to complete.
        if !self.interrupt_noted
            && !matches!(
                self.state,
                State::Terminated | State::PassiveBackup | State::Backup
            )
        {
            let at = self.last_poke_ms + self.p.max_response_delay_ms + 1;
            consider(Some(at));
        }
        t
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ------------------------------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Now) {
        if self.is_communication_interrupted(now) {
            self.interrupt_noted = true;
        }
        if let Some(at) = self.net.reenable_at_ms {
            if now.mono_ms >= at {
                self.net.reenable_at_ms = None;
                self.net.disabled_by_ha = false;
                self.emit_serving();
            }
        }
        if !self.partner_free {
            if let Some(at) = self.partner_free_at_ms {
                if now.mono_ms >= at && self.state == State::PartnerDown {
                    self.partner_free = true;
                    self.push(Action::AllocPartnerFree(true));
                }
            }
        }
        if !self.hb_in_flight {
            if let Some(at) = self.hb_deadline_ms {
                if now.mono_ms >= at && self.p.partner().is_some() {
                    self.hb_deadline_ms = None;
                    self.hb_in_flight = true;
                    self.push(Action::SendHeartbeat);
                }
            }
        }
        self.run_model(now);
    }

    /// The answer to our `ha-heartbeat` (Err: no usable answer).
    pub fn handle_heartbeat_response(&mut self, now: Now, r: Result<HeartbeatInfo, String>) {
        self.hb_in_flight = false;
        let notified = std::mem::replace(&mut self.sync_complete_notified, false);
        let ok = r.is_ok();
        match r {
            Ok(info) => {
                self.partner = PartnerState::Is(info.state);
                self.clock_skew_secs = info.partner_time_secs - now.wall_secs;
                self.partner_scopes = info.scopes.into_iter().filter(|s| !s.is_empty()).collect();
                if let Some(c) = info.unsent_update_count {
                    self.partner_unsent = (self.partner_unsent.1, c);
                }
                self.poke(now);
            }
            Err(_) => {
                self.partner = PartnerState::Unavailable;
            }
        }
        // Kea re-arms the one-shot heartbeat timer after every response.
        if self.hb_running {
            self.hb_deadline_ms = Some(now.mono_ms + self.p.heartbeat_delay_ms);
        }
        if notified && !ok {
            self.last_event = LastEvent::SyncedPartnerUnavailable;
        }
        self.run_model(now);
    }

    /// Any other request to the partner failed (lease update, dhcp-disable, ...): Kea marks the
    /// partner unavailable at once.
    pub fn handle_request_failed(&mut self, now: Now) {
        self.partner = PartnerState::Unavailable;
        self.run_model(now);
    }

    /// A lease update round trip completed (Kea runs its model on `HA_LEASE_UPDATES_COMPLETE_EVT`).
    pub fn handle_lease_updates_complete(&mut self, now: Now) {
        self.run_model(now);
    }

    pub fn handle_sync_result(&mut self, now: Now, ok: bool) {
        if self.pending == Pending::Sync {
            self.pending = Pending::None;
            if ok {
                if self.state == State::Syncing {
                    self.transition(State::Ready, now);
                }
            } else {
                self.partner = PartnerState::Unavailable;
            }
        }
        self.run_model(now);
    }

    pub fn handle_backlog_result(&mut self, now: Now, ok: bool) {
        if self.pending != Pending::Backlog {
            return;
        }
        self.pending = Pending::None;
        if self.state != State::CommunicationRecovery {
            self.run_model(now);
            return;
        }
        if ok {
            let normal = self.normal_state();
            self.transition(normal, now);
        } else {
            self.pending = Pending::HaReset;
            self.push(Action::SendHaReset);
        }
        self.run_model(now);
    }

    pub fn handle_ha_reset_result(&mut self, now: Now, ok: bool) {
        if self.pending != Pending::HaReset {
            return;
        }
        self.pending = Pending::None;
        if ok && self.state == State::CommunicationRecovery {
            self.transition(State::Waiting, now);
        }
        self.run_model(now);
    }

    /// How many lease updates wait for the partner while in communication-recovery. Above
    /// `delayed-updates-limit` the backlog counts as overflown until the state is left.
    pub fn note_backlog(&mut self, pending: u64) {
        if pending > u64::from(self.p.delayed_updates_limit) {
            self.backlog_overflown = true;
        }
    }

    /// Lease updates that were not sent to the partner (partner-down): reported in heartbeats.
    pub fn note_unsent_updates(&mut self, n: u64) {
        for _ in 0..n.min(1 << 20) {
            self.unsent_update_count = if self.unsent_update_count == u64::MAX {
                1
            } else {
                self.unsent_update_count + 1
            };
        }
    }

    /// A packet the dataplane did not answer because it belongs to the partner's scope. Counted
    /// only while the communication is interrupted (Kea's `inScope` + `analyzeMessage`).
    pub fn observe_out_of_scope(&mut self, now: Now, key: ClientKey, unacked: bool) {
        if !self.is_communication_interrupted(now) {
            return;
        }
        self.analyzed += 1;
        match self.connecting.get_mut(&key) {
            Some(u) => *u |= unacked,
            None => {
                if self.connecting.len() < CONNECTING_CLIENTS_MAX {
                    self.connecting.insert(key, unacked);
                }
            }
        }
    }

    /// Same as [`observe_out_of_scope`] for a batch of packets counted by the dataplane, of which
    /// only the connecting-client keys were kept.
    pub fn add_analyzed(&mut self, now: Now, n: u64) {
        if self.is_communication_interrupted(now) {
            self.analyzed += n;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Commands received from a peer
    // ------------------------------------------------------------------------------------------

    /// `ha-heartbeat`: the arguments except `date-time`, which the shell formats from its clock.
    pub fn heartbeat_reply(&self) -> (State, Vec<String>, u64) {
        (self.state, self.served_scopes(), self.unsent_update_count)
    }

    pub fn cmd_ha_reset(&mut self, now: Now) -> Answer {
        if self.state == State::Waiting {
            return Answer::new(RESULT_SUCCESS, "HA state machine already in WAITING state.");
        }
        self.transition(State::Waiting, now);
        self.run_model(now);
        Answer::new(RESULT_SUCCESS, "HA state machine reset.")
    }

    pub fn cmd_maintenance_notify(&mut self, now: Now, cancel: bool) -> Answer {
        if cancel {
            if self.state != State::InMaintenance {
                return Answer::new(
                    RESULT_ERROR,
                    "Unable to cancel the maintenance for the server not in the in-maintenance state.",
                );
            }
            self.last_event = LastEvent::MaintenanceCancel;
            self.skip_after_cancel = true;
            let prev = self.prev_state;
            self.transition(prev, now);
            self.run_model(now);
            return Answer::new(RESULT_SUCCESS, "Server maintenance canceled.");
        }
        match self.state {
            State::Backup | State::PartnerInMaintenance | State::Terminated => Answer::new(
                RESULT_MAINTENANCE_NOT_ALLOWED,
                format!(
                    "Unable to transition the server from the {} to in-maintenance state.",
                    self.state
                ),
            ),
            _ => {
                self.transition(State::InMaintenance, now);
                self.run_model(now);
                Answer::new(RESULT_SUCCESS, "Server is in-maintenance state.")
            }
        }
    }

    pub fn cmd_sync_complete_notify(&mut self, now: Now) -> Answer {
        if self.state == State::PartnerDown {
            self.sync_complete_notified = true;
        } else {
            self.net.disabled_by_ha = false;
            self.net.reenable_at_ms = None;
            self.emit_serving();
        }
        let _ = now;
        Answer::new(
            RESULT_SUCCESS,
            "Server successfully notified about the synchronization completion.",
        )
    }

    /// `dhcp-disable` with `origin: ha-partner` (the partner syncs from us).
    pub fn cmd_dhcp_disable(&mut self, now: Now, max_period_secs: Option<u64>) {
        self.net.disabled_by_ha = true;
        self.net.reenable_at_ms = max_period_secs.map(|s| now.mono_ms + s * 1000);
        self.emit_serving();
    }

    /// `dhcp-enable` with `origin: ha-partner`.
    pub fn cmd_dhcp_enable(&mut self, _now: Now) {
        self.net.disabled_by_ha = false;
        self.net.reenable_at_ms = None;
        self.emit_serving();
    }

    // ------------------------------------------------------------------------------------------
    // Admin commands
    // ------------------------------------------------------------------------------------------

    pub fn cmd_continue(&mut self, now: Now) -> Answer {
        if self.paused {
            self.paused = false;
            self.run_model(now);
            return Answer::new(RESULT_SUCCESS, "HA state machine continues.");
        }
        Answer::new(RESULT_SUCCESS, "HA state machine is not paused.")
    }

    pub fn cmd_scopes(&mut self, _now: Now, scopes: &[String]) -> Answer {
        for s in scopes {
            if !self.p.peers.iter().any(|p| &p.name == s) {
                return Answer::new(
                    RESULT_ERROR,
                    format!(
                        "invalid server name specified '{s}' while enabling/disabling HA scopes"
                    ),
                );
            }
        }
        self.scopes = scopes.iter().cloned().collect();
        self.adjust_network_state();
        Answer::new(RESULT_SUCCESS, "New HA scopes configured.")
    }

    /// `ha-maintenance-start`, first half: may we ask the partner? On `Ok` the shell sends
    /// `ha-maintenance-notify {"cancel": false}` and calls [`Self::maintenance_start_result`].
    pub fn maintenance_start_check(&self) -> Result<(), Answer> {
        match self.state {
            State::Backup
            | State::InMaintenance
            | State::PartnerInMaintenance
            | State::Terminated => Err(Answer::new(
                RESULT_ERROR,
                format!(
                    "Unable to transition the server from the {} to partner-in-maintenance state.",
                    self.state
                ),
            )),
            _ if self.p.partner().is_none() => {
                Err(Answer::new(RESULT_ERROR, "This server has no HA partner."))
            }
            _ => Ok(()),
        }
    }

    pub fn maintenance_start_result(&mut self, now: Now, outcome: Outcome) -> Answer {
        let (comm_error, rcode, msg) = match outcome {
            Outcome::CommError(e) => (true, RESULT_ERROR, e),
            Outcome::Answered { result, text } => (false, result, text),
        };
        if comm_error || (rcode != RESULT_SUCCESS && rcode != RESULT_EMPTY) {
            self.partner = PartnerState::Unavailable;
        }
        if comm_error || rcode == RESULT_ERROR {
            self.last_event = LastEvent::MaintenanceStart;
            self.transition(State::PartnerDown, now);
            self.run_model(now);
            return Answer::new(
                RESULT_SUCCESS,
                "Server is now in the partner-down state as its partner appears to be offline for maintenance.",
            );
        }
        if rcode == RESULT_SUCCESS {
            self.last_event = LastEvent::MaintenanceStart;
            self.transition(State::PartnerInMaintenance, now);
            self.run_model(now);
            return Answer::new(
                RESULT_SUCCESS,
                "Server is now in the partner-in-maintenance state and its partner is in-maintenance state. The partner can be now safely shut down.",
            );
        }
        Answer::new(
            RESULT_ERROR,
            format!(
                "Unable to transition to the partner-in-maintenance state. The partner server responded with the following message to the ha-maintenance-notify command: {msg}, error code {rcode}."
            ),
        )
    }

    /// `ha-maintenance-cancel`, first half; on `Ok` send `ha-maintenance-notify {"cancel": true}`.
    pub fn maintenance_cancel_check(&self) -> Result<(), Answer> {
        if self.state != State::PartnerInMaintenance {
            return Err(Answer::new(
                RESULT_ERROR,
                "Unable to cancel maintenance request because the server is not in the partner-in-maintenance state.",
            ));
        }
        Ok(())
    }

    pub fn maintenance_cancel_result(&mut self, now: Now, outcome: Outcome) -> Answer {
        let err = match outcome {
            Outcome::CommError(e) => Some(e),
            Outcome::Answered { result, text }
                if result != RESULT_SUCCESS && result != RESULT_EMPTY =>
            {
                Some(format!("{text}, error code {result}"))
            }
            Outcome::Answered { .. } => None,
        };
        if let Some(e) = err {
            self.partner = PartnerState::Unavailable;
            return Answer::new(
                RESULT_ERROR,
                format!(
                    "Unable to cancel maintenance. The partner server responded with the following message to the ha-maintenance-notify command: {e}."
                ),
            );
        }
        self.last_event = LastEvent::MaintenanceCancel;
        self.skip_after_cancel = true;
        let prev = self.prev_state;
        self.transition(prev, now);
        self.run_model(now);
        Answer::new(RESULT_SUCCESS, "Server maintenance successfully canceled.")
    }

    // ------------------------------------------------------------------------------------------
    // The model
    // ------------------------------------------------------------------------------------------

    fn normal_state(&self) -> State {
        if self.role == HaRole::Backup {
            return State::Backup;
        }
        match self.p.mode {
            HaMode::LoadBalancing => State::LoadBalancing,
            HaMode::HotStandby => State::HotStandby,
            HaMode::PassiveBackup => State::PassiveBackup,
        }
    }

    /// Runs state handlers until one does not transition (Kea's `runModel` until `NOP_EVT`).
    /// Bounded: a handler chain longer than the number of states is a bug.
    fn run_model(&mut self, now: Now) {
        for _ in 0..(State::ALL.len() * 2) {
            if !self.step(now) {
                return;
            }
        }
        debug_assert!(false, "HA model did not settle");
    }

    /// Runs the current state's handler once. Returns whether it transitioned.
    pub fn step(&mut self, now: Now) -> bool {
        let before = (self.state, self.transitions);
        let skip = std::mem::replace(&mut self.skip_after_cancel, false);
        match self.state {
            State::Backup | State::InMaintenance | State::PassiveBackup | State::Terminated => {
                if self.state == State::InMaintenance {
                    self.schedule_heartbeat(now);
                }
            }
            State::CommunicationRecovery => self.comm_recovery_handler(now, skip),
            State::HotStandby | State::LoadBalancing => self.normal_handler(now, skip),
            State::PartnerDown => self.partner_down_handler(now, skip),
            State::PartnerInMaintenance => self.partner_in_maintenance_handler(now),
            State::Ready => self.ready_handler(now, skip),
            State::Syncing => self.syncing_handler(now, skip),
            State::Waiting => self.waiting_handler(now, skip),
        }
        if self.last_event != LastEvent::Other && (self.state, self.transitions) == before {
            // The event was consumed by this handler run.
            self.last_event = LastEvent::Other;
        }
        (self.state, self.transitions) != before
    }

    fn should_terminate(&mut self, now: Now) -> bool {
        let skew = self.clock_skew_secs;
        if skew.abs() > TERM_CLOCK_SKEW_SECS {
            self.push(Action::ClockSkewTerminate { skew_secs: skew });
            return true;
        }
        if skew.abs() > WARN_CLOCK_SKEW_SECS {
            let due = match self.last_skew_warn_ms {
                None => true,
                Some(t) => {
                    now.mono_ms.saturating_sub(t) > MIN_TIME_SINCE_CLOCK_SKEW_WARN_SECS * 1000
                }
            };
            if due {
                self.last_skew_warn_ms = Some(now.mono_ms);
                self.push(Action::ClockSkewWarning { skew_secs: skew });
            }
        }
        false
    }

    fn is_partner_state_invalid(&self) -> bool {
        match self.partner {
            PartnerState::Is(State::CommunicationRecovery) => self.p.mode != HaMode::LoadBalancing,
            PartnerState::Is(State::HotStandby) => self.p.mode != HaMode::HotStandby,
            PartnerState::Is(State::LoadBalancing) => self.p.mode != HaMode::LoadBalancing,
            _ => false,
        }
    }

    /// Kea's partner-down test.
    pub fn should_partner_down(&self, now: Now) -> bool {
        if !self.is_communication_interrupted(now) {
            return false;
        }
        if self.dhcp_enabled()
            && (self.p.mode == HaMode::LoadBalancing || self.role == HaRole::Standby)
        {
            return self.failure_detected();
        }
        true
    }

    fn failure_detected(&self) -> bool {
        self.p.max_unacked_clients == 0
            || self.unacked_clients() > self.p.max_unacked_clients as usize
    }

    fn comm_recovery_handler(&mut self, now: Now, skip: bool) {
        self.schedule_heartbeat(now);
        if skip || self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return self.transition(State::Waiting, now);
        }
        match self.partner {
            PartnerState::Is(State::InMaintenance) => {
                self.transition(State::PartnerInMaintenance, now)
            }
            PartnerState::Is(State::PartnerDown) => self.transition(State::Waiting, now),
            PartnerState::Is(State::PartnerInMaintenance) => {
                self.transition(State::InMaintenance, now)
            }
            PartnerState::Is(State::Terminated) => self.transition(State::Terminated, now),
            PartnerState::Unavailable => {
                if self.should_partner_down(now) {
                    self.transition(State::PartnerDown, now)
                }
            }
            PartnerState::Is(State::Waiting | State::Syncing | State::Ready) => {
                if !self.is_communication_interrupted(now) && self.backlog_overflown {
                    self.transition(State::Waiting, now)
                }
            }
            other => {
                if self.is_communication_interrupted(now) {
                    return;
                }
                let normal = self.normal_state();
                if other == PartnerState::Is(normal)
                    || other == PartnerState::Is(State::CommunicationRecovery)
                {
                    if self.pending != Pending::None {
                        return;
                    }
                    if self.backlog_overflown {
                        self.pending = Pending::HaReset;
                        self.push(Action::SendHaReset);
                    } else {
                        self.pending = Pending::Backlog;
                        self.push(Action::ReplayBacklog);
                    }
                    return;
                }
                self.transition(State::Waiting, now)
            }
        }
    }

    fn normal_handler(&mut self, now: Now, skip: bool) {
        self.schedule_heartbeat(now);
        if skip || self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return self.transition(State::Waiting, now);
        }
        match self.partner {
            PartnerState::Is(State::InMaintenance) => {
                self.transition(State::PartnerInMaintenance, now)
            }
            PartnerState::Is(State::PartnerDown) => self.transition(State::Waiting, now),
            PartnerState::Is(State::PartnerInMaintenance) => {
                self.transition(State::InMaintenance, now)
            }
            PartnerState::Is(State::Terminated) => self.transition(State::Terminated, now),
            PartnerState::Unavailable => {
                if self.should_partner_down(now) {
                    self.transition(State::PartnerDown, now)
                } else if self.p.delayed_updates_limit > 0 {
                    // Kea's amAllowingCommRecovery (validation keeps the limit 0 outside
                    // load-balancing).
                    self.transition(State::CommunicationRecovery, now)
                }
            }
            _ => {}
        }
    }

    fn partner_down_handler(&mut self, now: Now, skip: bool) {
        if self.last_event == LastEvent::SyncedPartnerUnavailable {
            // The partner synced from us but cannot reach us: serve until the link is fixed.
            self.adjust_network_state();
        }
        self.schedule_heartbeat(now);
        if skip || self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return self.transition(State::Waiting, now);
        }
        match self.partner {
            PartnerState::Is(
                State::CommunicationRecovery | State::PartnerDown | State::PartnerInMaintenance,
            ) => self.transition(State::Waiting, now),
            PartnerState::Is(State::Ready) => {
                let (prev, cur) = self.partner_unsent;
                if cur > 0 && prev != cur {
                    self.transition(State::Waiting, now)
                } else {
                    let normal = self.normal_state();
                    self.transition(normal, now)
                }
            }
            PartnerState::Is(State::Terminated) => self.transition(State::Terminated, now),
            _ => {}
        }
    }

    fn partner_in_maintenance_handler(&mut self, now: Now) {
        self.schedule_heartbeat(now);
        if self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.partner == PartnerState::Unavailable {
            self.transition(State::PartnerDown, now)
        }
    }

    fn ready_handler(&mut self, now: Now, skip: bool) {
        self.schedule_heartbeat(now);
        if skip || self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return self.transition(State::Waiting, now);
        }
        match self.partner {
            PartnerState::Is(
                State::HotStandby | State::LoadBalancing | State::CommunicationRecovery,
            ) => {
                let normal = self.normal_state();
                self.transition(normal, now)
            }
            PartnerState::Is(State::InMaintenance) => {
                self.transition(State::PartnerInMaintenance, now)
            }
            PartnerState::Is(State::PartnerInMaintenance) => {
                self.transition(State::InMaintenance, now)
            }
            PartnerState::Is(State::Ready) if self.role == HaRole::Primary => {
                let s = if self.p.mode == HaMode::LoadBalancing {
                    State::LoadBalancing
                } else {
                    State::HotStandby
                };
                self.transition(s, now)
            }
            PartnerState::Is(State::Terminated) => self.transition(State::Terminated, now),
            PartnerState::Unavailable if self.should_partner_down(now) => {
                self.transition(State::PartnerDown, now)
            }
            _ => {}
        }
    }

    fn syncing_handler(&mut self, now: Now, skip: bool) {
        if skip || self.paused {
            return;
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return self.transition(State::Waiting, now);
        }
        match self.partner {
            PartnerState::Is(State::Terminated) => return self.transition(State::Terminated, now),
            PartnerState::Unavailable => {
                if self.should_partner_down(now) {
                    return self.transition(State::PartnerDown, now);
                }
            }
            _ => {
                if self.pending == Pending::None {
                    if let Some(partner) = self.p.partner() {
                        let peer = partner.name.clone();
                        self.pending = Pending::Sync;
                        self.push(Action::Sync {
                            peer,
                            max_period_secs: self.p.sync_max_period_secs(),
                        });
                    }
                }
            }
        }
        self.schedule_heartbeat(now);
    }

    fn waiting_handler(&mut self, now: Now, skip: bool) {
        if self.p.mode != HaMode::PassiveBackup && self.role != HaRole::Backup {
            self.schedule_heartbeat(now);
        }
        if skip || self.paused {
            return;
        }
        if self.role == HaRole::Backup {
            return self.transition(State::Backup, now);
        }
        if self.p.mode == HaMode::PassiveBackup {
            return self.transition(State::PassiveBackup, now);
        }
        if self.should_terminate(now) {
            return self.transition(State::Terminated, now);
        }
        if self.is_partner_state_invalid() {
            return;
        }
        let sync_or_ready = if self.p.sync_leases {
            State::Syncing
        } else {
            State::Ready
        };
        match self.partner {
            PartnerState::Is(
                State::CommunicationRecovery
                | State::HotStandby
                | State::LoadBalancing
                | State::InMaintenance
                | State::PartnerDown
                | State::PartnerInMaintenance
                | State::Ready,
            ) => self.transition(sync_or_ready, now),
            PartnerState::Is(State::Waiting) if self.role == HaRole::Primary => {
                self.transition(sync_or_ready, now)
            }
            PartnerState::Unavailable if self.should_partner_down(now) => {
                self.transition(State::PartnerDown, now)
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------------------------------
    // Transitions and their entry actions
    // ------------------------------------------------------------------------------------------

    fn transition(&mut self, to: State, now: Now) {
        let from = self.state;
        self.prev_state = from;
        self.state = to;
        self.transitions += 1;
        if from == to {
            return;
        }
        // Leaving communication-recovery clears the backlog (Kea's doOnExit).
        if from == State::CommunicationRecovery {
            self.backlog_overflown = false;
            if self.pending == Pending::Backlog {
                self.pending = Pending::None;
            }
        }
        if from == State::Syncing && self.pending == Pending::Sync {
            // A sync still running keeps going; its result is ignored in another state.
        }
        self.push(Action::StateChanged { from, to });
        let pause = self
            .p
            .pausing
            .iter()
            .find(|(s, _)| *s == to)
            .map(|(_, p)| *p);
        if !self.paused {
            match pause {
                Some(Pausing::Always) => self.paused = true,
                Some(Pausing::Once) if !self.paused_once.contains(&to) => {
                    self.paused_once.insert(to);
                    self.paused = true;
                }
                _ => {}
            }
        }
        self.enter_state(to, now);
    }

    fn enter_state(&mut self, to: State, now: Now) {
        match to {
            State::Backup
            | State::InMaintenance
            | State::Ready
            | State::Syncing
            | State::Waiting => self.serve_no_scopes(),
            State::CommunicationRecovery
            | State::HotStandby
            | State::LoadBalancing
            | State::PassiveBackup
            | State::Terminated => self.serve_default_scopes(),
            State::PartnerDown => {
                if self.last_event == LastEvent::MaintenanceStart || self.p.auto_failover {
                    self.serve_failover_scopes()
                } else {
                    self.serve_default_scopes()
                }
            }
            State::PartnerInMaintenance => self.serve_failover_scopes(),
        }
        if matches!(to, State::PassiveBackup | State::Terminated) {
            self.stop_heartbeat();
        }
        // DESIGN.md safety period: the survivor may take the partner's free addresses only after
        // the longest lease the partner could have granted unseen.
        if to == State::PartnerDown {
            self.partner_free_at_ms = Some(now.mono_ms + self.p.partner_free_delay_ms);
            if self.p.partner_free_delay_ms == 0 {
                self.partner_free = true;
                self.push(Action::AllocPartnerFree(true));
            }
        } else if self.partner_free || self.partner_free_at_ms.is_some() {
            self.partner_free_at_ms = None;
            if self.partner_free {
                self.partner_free = false;
                self.push(Action::AllocPartnerFree(false));
            }
        }
        if matches!(to, State::Waiting | State::Syncing) {
            // Our unshipped changes will reach the partner by its own resync, not by replay.
            self.push(Action::ReplicationReset);
        }
        self.adjust_network_state();
    }

    fn serve_no_scopes(&mut self) {
        self.scopes.clear();
    }

    fn serve_default_scopes(&mut self) {
        self.scopes.clear();
        if matches!(self.role, HaRole::Primary | HaRole::Secondary) {
            self.scopes.insert(self.p.this_name.clone());
        }
    }

    fn serve_failover_scopes(&mut self) {
        self.scopes.clear();
        for p in &self.p.peers {
            if matches!(p.role, HaRole::Primary | HaRole::Secondary) {
                self.scopes.insert(p.name.clone());
            }
        }
    }

    fn adjust_network_state(&mut self) {
        let should_enable = self.state.serves_dhcp();
        if !should_enable && !self.net.disabled_by_ha {
            self.net.disabled_by_ha = true;
        } else if should_enable && self.net.disabled_by_ha {
            self.net.disabled_by_ha = false;
            self.net.reenable_at_ms = None;
        }
        self.emit_serving();
    }

    fn emit_serving(&mut self) {
        let cur = (self.dhcp_enabled(), self.served_scopes());
        if self.last_serving.as_ref() == Some(&cur) {
            return;
        }
        self.last_serving = Some(cur.clone());
        // Coalesce: only the latest serving instruction matters.
        self.actions
            .retain(|a| !matches!(a, Action::Serving { .. }));
        self.push(Action::Serving {
            enabled: cur.0,
            scopes: cur.1,
        });
    }

    fn schedule_heartbeat(&mut self, now: Now) {
        if !self.hb_running && self.p.heartbeat_delay_ms > 0 && self.p.partner().is_some() {
            self.hb_running = true;
            if !self.hb_in_flight {
                self.hb_deadline_ms = Some(now.mono_ms + self.p.heartbeat_delay_ms);
            }
        }
    }

    fn stop_heartbeat(&mut self) {
        self.hb_running = false;
        self.hb_deadline_ms = None;
    }

    fn poke(&mut self, now: Now) {
        self.last_poke_ms = now.mono_ms;
        self.interrupt_noted = false;
        self.connecting.clear();
        self.analyzed = 0;
    }

    fn push(&mut self, a: Action) {
        if self.actions.len() >= ACTIONS_MAX {
            // Drop the oldest informational action rather than grow: the shell is not polling.
            if let Some(i) = self.actions.iter().position(|a| {
                matches!(
                    a,
                    Action::StateChanged { .. }
                        | Action::ClockSkewWarning { .. }
                        | Action::ClockSkewTerminate { .. }
                )
            }) {
                self.actions.remove(i);
            } else {
                return;
            }
        }
        self.actions.push_back(a);
    }

    // ------------------------------------------------------------------------------------------
    // Test and simulator support: place the machine in an arbitrary situation.
    // ------------------------------------------------------------------------------------------

    /// Forces the state, the partner's state and the time of the last successful heartbeat, as
    /// Kea's own table tests do (`transition()` + `setPartnerState()` + `modifyPokeTime()`).
    #[doc(hidden)]
    pub fn force(&mut self, now: Now, state: State, partner: PartnerState, last_poke_ms: u64) {
        self.state = state;
        self.partner = partner;
        self.last_poke_ms = last_poke_ms;
        self.interrupt_noted = false;
        self.paused = false;
        self.pending = Pending::None;
        self.last_event = LastEvent::Other;
        self.enter_state(state, now);
        self.actions.clear();
    }

    #[doc(hidden)]
    pub fn force_unacked(&mut self, n: usize) {
        self.connecting.clear();
        for i in 0..n {
            self.connecting
                .insert((i as u32).to_be_bytes().to_vec(), true);
        }
    }

    #[doc(hidden)]
    pub fn force_clock_skew(&mut self, skew_secs: i64) {
        self.clock_skew_secs = skew_secs;
    }

    #[doc(hidden)]
    pub fn force_partner_unsent(&mut self, prev: u64, cur: u64) {
        self.partner_unsent = (prev, cur);
    }
}
