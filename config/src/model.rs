//! Validated domain types. Everything downstream (engine, lease store, journal, control process)
//! consumes only these types, never the raw JSON: values are resolved (inheritance from global →
//! shared-network → subnet already applied), options are already encoded to wire bytes, and every
//! invariant the engine relies on (pools inside their subnet, unique subnet ids, no overlapping
//! pools, ...) has been checked.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Kea subnet identifier (`"id"` in `subnet4`/`subnet6`). Always > 0 once validated.
pub type SubnetId = u32;

/// A whole validated configuration file. A file may hold `Dhcp4`, `Dhcp6` or both
/// (xdhcp serves both families from one process when both are present).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, for messages and for `config-get`.
    pub source: PathBuf,
    pub dhcp4: Option<Dhcp4>,
    pub dhcp6: Option<Dhcp6>,
}

/// One option instance ready to put on the wire: `data` is the encoded payload
/// (without code/length header). DHCPv4 payloads longer than 255 bytes are split by
/// the encoder (RFC 3396).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionValue {
    pub code: u16,
    pub data: Vec<u8>,
    /// Kea's `always-send`: include even when the client did not ask for it.
    pub always_send: bool,
}

/// The options configured at one scope. Lookups are by code; at most one entry per code
/// (later definitions at the same scope replace earlier ones, as Kea does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionSet {
    pub options: Vec<OptionValue>,
}

impl OptionSet {
    pub fn get(&self, code: u16) -> Option<&OptionValue> {
        self.options.iter().find(|o| o.code == code)
    }
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }
}

/// Lease timing parameters after inheritance. Seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifetimes {
    pub valid: u32,
    pub min_valid: u32,
    pub max_valid: u32,
    /// DHCPv6 only; 0 in DHCPv4.
    pub preferred: u32,
    pub min_preferred: u32,
    pub max_preferred: u32,
    pub renew_timer: Option<u32>,
    pub rebind_timer: Option<u32>,
    pub calculate_tee_times: bool,
    pub t1_percent: f64,
    pub t2_percent: f64,
}

/// How a lease/reservation identifies its client (Kea `host-reservation-identifiers`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostIdentifier {
    HwAddress(Vec<u8>),
    ClientId(Vec<u8>),
    /// DHCPv6 DUID.
    Duid(Vec<u8>),
    CircuitId(Vec<u8>),
    FlexId(Vec<u8>),
}

/// A parsed Kea client-class `test` expression. Evaluated by [`crate::classify`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A string/binary literal ('abc', 0x0102, or an integer literal as a 4-byte big-endian string, as Kea).
    Literal(Vec<u8>),
    /// `option[code].hex` (raw payload); `exists` is a separate node.
    OptionHex(u16),
    OptionText(u16),
    OptionExists(u16),
    /// `relay4[sub].hex` / `relay4[sub].exists` (sub-option of option 82).
    Relay4Hex(u8),
    Relay4Exists(u8),
    /// `pkt4.mac`, `pkt4.hlen`, `pkt4.htype`, `pkt4.ciaddr`, `pkt4.giaddr`, `pkt4.yiaddr`,
    /// `pkt4.siaddr`, `pkt4.msgtype`, `pkt4.transid`, `pkt.iface`, `pkt6.msgtype`, `pkt6.transid`.
    PktField(PktField),
    Substring(Box<Expr>, i64, SubLen),
    Concat(Box<Expr>, Box<Expr>),
    HexString(Box<Expr>, Vec<u8>),
    Ifelse(Box<Expr>, Box<Expr>, Box<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Member(String),
    True,
    False,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubLen {
    All,
    Len(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktField {
    Mac,
    Hlen,
    Htype,
    Ciaddr,
    Giaddr,
    Yiaddr,
    Siaddr,
    MsgType4,
    TransId4,
    Iface,
    MsgType6,
    TransId6,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientClass {
    pub name: String,
    /// `None`: only assigned explicitly (reservations, HA's `HA_<server>` classes, `only-if-required`).
    pub test: Option<Expr>,
    pub only_if_required: bool,
    pub options: OptionSet,
    pub next_server: Option<Ipv4Addr>,
    pub server_hostname: Option<String>,
    pub boot_file_name: Option<String>,
    pub valid_lifetime: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    /// Kea `dhcp-socket-type: raw`: packet socket, answers clients at their MAC. Default.
    Raw,
    /// Kea `dhcp-socket-type: udp`: plain UDP socket; relayed traffic only in practice.
    Udp,
}

/// An interface to serve: `"eth1"` or `"eth1/192.0.2.1"`. Never a wildcard: `"*"` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    pub name: String,
    pub address: Option<std::net::IpAddr>,
}

/// The default `idle-spin-us`: bridges the gaps between a busy link's bursts (a sender batching
/// every few tens of µs) while an idle server still sleeps, and leaves a core it shares with
/// other work (a test client, a load generator) mostly to them. What the earlier fixed count of
/// 1000 empty polls amounted to; 200 µs measured no better in ./scripts/bench.
pub const DEFAULT_IDLE_SPIN_US: u32 = 50;

/// The default `journal-fsync`, in milliseconds: group commit across batches, at most one fsync
/// per 10 ms. Replies never wait for the fsync in any policy (nor do Kea's: its memfile never
/// fsyncs, leaving what a power loss takes to the kernel's writeback, up to ~30 s), and a crash or
/// `kill -9` loses nothing written, so this bounds only what a power loss can take: about the last
/// 10 ms of leases. Why not less: on a virtio disk each fdatasync costs the core ~90 µs (a data
/// write, an inode write and a cache flush, each a VM exit), so at one per millisecond the journal
/// took 8% of the worker's core. Measured in ./scripts/bench (alternating runs): 270-280k DORA/s
/// at 1 ms against 291-296k at 10 ms (and 193k with `every-batch`).
pub const DEFAULT_JOURNAL_FSYNC_MS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never fsync; the kernel writes back. A machine crash may lose the tail; a process crash loses nothing written.
    Never,
    /// fsync the journal at most every N milliseconds (group commit).
    IntervalMs(u32),
    /// fsync after every batch before the batch counts as durable.
    EveryBatch,
}

/// Kea `lease-database` of type `memfile`, mapped onto xdhcp's journal.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseDatabase {
    /// `persist: false` keeps leases in memory only.
    pub persist: bool,
    /// Kea's `name` (the CSV path). xdhcp keeps its journal at `<name>.journal` and can
    /// import the CSV at `name` on first start if no journal exists.
    pub path: Option<PathBuf>,
    /// Kea `lfc-interval`, seconds: how often the journal is compacted (0 = never).
    pub lfc_interval_secs: u32,
    pub fsync: FsyncPolicy,
}

/// Kea `expired-leases-processing`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpiredLeasesProcessing {
    pub reclaim_timer_wait_time_secs: u32,
    pub flush_reclaimed_timer_wait_time_secs: u32,
    pub hold_reclaimed_time_secs: u32,
    pub max_reclaim_leases: u32,
    pub max_reclaim_time_ms: u32,
    pub unwarned_reclaim_cycles: u32,
}

/// Settings Kea has no key for. Read from `"user-context": {"xdhcp": {...}}` at the top
/// of `Dhcp4`/`Dhcp6`, so a Kea config stays a valid Kea config.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// How long an OFFER/ADVERTISE reserves its address for the client (seconds).
    pub offer_hold_secs: u32,
    /// Workers (one per rx queue on AF_XDP; threads on the socket backend). 0 = one per core.
    pub workers: u32,
    /// Backend: "socket" or "xdp".
    pub backend: Backend,
    /// Ring sizes for AF_XDP (power of two).
    pub ring_size: u32,
    pub frame_count: u32,
    /// Per-worker journal queue length; when full the packet is dropped (and counted), never blocked.
    pub journal_queue: u32,
    /// `user-context.xdhcp.replication`: whether a reply that changed a lease waits for the HA
    /// partner's acknowledgement (Kea's behaviour) or goes at once (xdhcp's default).
    pub replication: Replication,
    /// `user-context.xdhcp.sync-ack-timeout-ms`: in synchronous mode, how long a reply may wait for
    /// the partner's acknowledgement before it is dropped (the client retransmits).
    pub sync_ack_timeout_ms: u32,
    /// Kea's global `parked-packet-limit` (default 256; 0 = Kea's "no limit", which xdhcp bounds
    /// anyway): replies parked per worker in synchronous mode; beyond it a reply is dropped.
    pub parked_packet_limit: u32,
    /// `user-context.xdhcp.idle-spin-us`: how long an AF_XDP worker keeps polling its empty RX
    /// ring before it sleeps in `poll(2)`. Spinning costs its core's idle time; sleeping costs a
    /// wake-up (an inter-processor interrupt, a VM exit under a hypervisor) for every burst that
    /// arrives after a pause, paid by whoever sent it.
    pub idle_spin_us: u32,
    /// `user-context.xdhcp.prefault-tables`: touch every page of the DHCPv4 lease tables (one
    /// 64-byte slot per pool address plus the client index) at start, so that no worker ever
    /// waits for a page fault on the hot path, and a machine short of memory says so at start.
    /// Costs the tables' RAM up front (about 128 bytes per pool address) instead of as leases
    /// come.
    pub prefault_tables: bool,
}

/// How lease changes reach the HA peers (see [`Tuning::replication`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replication {
    /// The reply goes at once; the journal is shipped to the peers behind it.
    #[default]
    Asynchronous,
    /// Kea-compatible: the reply is parked until every peer that must acknowledge (the partner;
    /// backups only with `wait-backup-ack`) acknowledged the lease update; dropped if one fails.
    Synchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Socket,
    Xdp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlSocket {
    pub socket_type: String,
    pub socket_name: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Logger {
    pub name: String,
    pub severity: String,
    pub debuglevel: u32,
    pub outputs: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// DHCPv4
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Dhcp4 {
    pub interfaces: Vec<InterfaceSpec>,
    pub socket_type: SocketType,
    pub subnets: Vec<Subnet4>,
    pub shared_networks: Vec<SharedNetwork4>,
    pub global_options: OptionSet,
    pub global_reservations: Vec<Reservation4>,
    pub client_classes: Vec<ClientClass>,
    /// Global defaults, already applied to each subnet's `lifetimes`.
    pub lifetimes: Lifetimes,
    pub match_client_id: bool,
    pub authoritative: bool,
    pub echo_client_id: bool,
    pub decline_probation_period_secs: u32,
    pub lease_database: LeaseDatabase,
    pub expired_leases: ExpiredLeasesProcessing,
    pub high_availability: Vec<HaRelationship>,
    pub control_socket: Option<ControlSocket>,
    pub loggers: Vec<Logger>,
    pub tuning: Tuning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SharedNetwork4 {
    pub name: String,
    /// Indexes into `Dhcp4::subnets`.
    pub subnets: Vec<usize>,
    pub interface: Option<String>,
    pub relay: Vec<Ipv4Addr>,
    pub options: OptionSet,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool4 {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub options: OptionSet,
    pub client_class: Option<String>,
    pub require_client_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subnet4 {
    pub id: SubnetId,
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub pools: Vec<Pool4>,
    /// Subnet-level options only (shared-network and global are separate scopes, merged by the engine
    /// in Kea's order: reservation, class, pool, subnet, shared network, global).
    pub options: OptionSet,
    pub relay: Vec<Ipv4Addr>,
    pub interface: Option<String>,
    pub reservations: Vec<Reservation4>,
    pub lifetimes: Lifetimes,
    /// Index into `Dhcp4::shared_networks`.
    pub shared_network: Option<usize>,
    pub client_class: Option<String>,
    pub require_client_classes: Vec<String>,
    /// `"user-context": {"ha-server-name": ...}`: the HA relationship serving this subnet.
    pub ha_server_name: Option<String>,
    pub match_client_id: bool,
    pub authoritative: bool,
    pub next_server: Option<Ipv4Addr>,
    pub server_hostname: Option<String>,
    pub boot_file_name: Option<String>,
    pub reservations_in_subnet: bool,
    pub reservations_out_of_pool: bool,
    pub reservations_global: bool,
}

impl Subnet4 {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len)
        };
        (u32::from(a) & mask) == (u32::from(self.network) & mask)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reservation4 {
    pub identifier: HostIdentifier,
    pub ip_address: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub options: OptionSet,
    pub client_classes: Vec<String>,
    pub next_server: Option<Ipv4Addr>,
    pub server_hostname: Option<String>,
    pub boot_file_name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// DHCPv6
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Dhcp6 {
    pub interfaces: Vec<InterfaceSpec>,
    pub subnets: Vec<Subnet6>,
    pub shared_networks: Vec<SharedNetwork6>,
    pub global_options: OptionSet,
    pub global_reservations: Vec<Reservation6>,
    pub client_classes: Vec<ClientClass>,
    pub lifetimes: Lifetimes,
    pub decline_probation_period_secs: u32,
    pub lease_database: LeaseDatabase,
    pub expired_leases: ExpiredLeasesProcessing,
    pub high_availability: Vec<HaRelationship>,
    pub control_socket: Option<ControlSocket>,
    pub loggers: Vec<Logger>,
    pub server_id: ServerIdConfig,
    /// Kea `data-directory`: where the server DUID file lives.
    pub data_directory: Option<PathBuf>,
    pub tuning: Tuning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerIdConfig {
    /// "LLT", "EN" or "LL".
    pub kind: String,
    pub identifier: Option<Vec<u8>>,
    pub htype: Option<u16>,
    pub time: Option<u32>,
    pub enterprise_id: Option<u32>,
    pub persist: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SharedNetwork6 {
    pub name: String,
    pub subnets: Vec<usize>,
    pub interface: Option<String>,
    pub interface_id: Option<Vec<u8>>,
    pub relay: Vec<Ipv6Addr>,
    pub options: OptionSet,
    pub rapid_commit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool6 {
    pub first: Ipv6Addr,
    pub last: Ipv6Addr,
    pub options: OptionSet,
    pub client_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PdPool6 {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub delegated_len: u8,
    pub excluded_prefix: Option<(Ipv6Addr, u8)>,
    pub options: OptionSet,
    pub client_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subnet6 {
    pub id: SubnetId,
    pub network: Ipv6Addr,
    pub prefix_len: u8,
    pub pools: Vec<Pool6>,
    pub pd_pools: Vec<PdPool6>,
    pub options: OptionSet,
    pub relay: Vec<Ipv6Addr>,
    pub interface: Option<String>,
    pub interface_id: Option<Vec<u8>>,
    pub reservations: Vec<Reservation6>,
    pub lifetimes: Lifetimes,
    pub shared_network: Option<usize>,
    pub client_class: Option<String>,
    pub ha_server_name: Option<String>,
    pub rapid_commit: bool,
    pub reservations_in_subnet: bool,
    pub reservations_out_of_pool: bool,
    pub reservations_global: bool,
}

impl Subnet6 {
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        let mask = if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix_len)
        };
        (u128::from(a) & mask) == (u128::from(self.network) & mask)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reservation6 {
    pub identifier: HostIdentifier,
    pub ip_addresses: Vec<Ipv6Addr>,
    pub prefixes: Vec<(Ipv6Addr, u8)>,
    pub hostname: Option<String>,
    pub options: OptionSet,
    pub client_classes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// High availability (hook parameters of libdhcp_ha.so)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaMode {
    HotStandby,
    LoadBalancing,
    PassiveBackup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaRole {
    Primary,
    Secondary,
    Standby,
    Backup,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HaPeer {
    pub name: String,
    /// The peer URL as written (`http://172.28.0.254:8000/`).
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub role: HaRole,
    pub auto_failover: bool,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password: Option<String>,
    pub trust_anchor: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HaRelationship {
    pub this_server_name: String,
    pub mode: HaMode,
    pub peers: Vec<HaPeer>,
    pub heartbeat_delay_ms: u32,
    pub max_response_delay_ms: u32,
    pub max_ack_delay_ms: u32,
    pub max_unacked_clients: u32,
    pub delayed_updates_limit: u32,
    pub sync_timeout_ms: u32,
    pub sync_page_limit: u32,
    pub send_lease_updates: bool,
    pub sync_leases: bool,
    pub wait_backup_ack: bool,
    pub require_client_certs: bool,
    pub multi_threading: bool,
    pub http_dedicated_listener: bool,
    /// States configured with `"pause": "always" | "once"` in `state-machine`.
    pub paused_states: Vec<(String, String)>,
}

impl HaRelationship {
    pub fn this_peer(&self) -> &HaPeer {
        // Invariant checked by validation: this-server-name names one of the peers.
        self.peers
            .iter()
            .find(|p| p.name == self.this_server_name)
            .expect("validated: this-server-name is a peer")
    }
}
