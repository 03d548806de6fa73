//! Loading, attaching and inspecting the XDP program (`ebpf/xdhcp.bpf.c`, built by `build.rs`
//! and embedded here). Owns the Rust mirror of `ebpf/xdhcp_shared.h`, the XSKMAP registration of
//! AF_XDP sockets, the per-CPU counters, native-then-generic attach, and the replacement of a
//! stale xdhcp program left on an interface by a crash. Dropping an [`XdpProgram`] detaches it.

use std::io;

use aya::maps::{MapData, PerCpuArray, XskMap};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::sys;

/// The compiled XDP program (ELF), aligned as aya requires.
pub static XDHCP_BPF_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdhcp.bpf.o"));

/// `XDHCP_PROG_NAME` in the shared header: the program's function name, which is also the name
/// the kernel reports for it (how a stale xdhcp program is told apart from someone else's).
pub const PROG_NAME: &str = "xdhcp_xdp";
/// `XDHCP_MAX_QUEUES` in the shared header.
pub const MAX_QUEUES: u32 = 256;
const XSKS_MAP: &str = "xsks_map";
const COUNTERS_MAP: &str = "xdhcp_counters";

/// Mirror of `enum xdhcp_counter` in `ebpf/xdhcp_shared.h` (checked by a test that parses it).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    SteeredV4 = 0,
    SteeredV6 = 1,
    PassNoSocket = 2,
    PassNotIp = 3,
    PassNotUdp = 4,
    PassOtherPort = 5,
    PassFragment = 6,
    PassTooShort = 7,
    PassVlanUnsupported = 8,
    PassIpv6Ext = 9,
    PassBadIp = 10,
}

/// `XDHCP_CNT_MAX`.
pub const COUNTER_COUNT: usize = 11;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT] = [
        Counter::SteeredV4,
        Counter::SteeredV6,
        Counter::PassNoSocket,
        Counter::PassNotIp,
        Counter::PassNotUdp,
        Counter::PassOtherPort,
        Counter::PassFragment,
        Counter::PassTooShort,
        Counter::PassVlanUnsupported,
        Counter::PassIpv6Ext,
        Counter::PassBadIp,
    ];

    /// Metric-style name (`steered_v4`, `pass_not_ip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Counter::SteeredV4 => "steered_v4",
            Counter::SteeredV6 => "steered_v6",
            Counter::PassNoSocket => "pass_no_socket",
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotUdp => "pass_not_udp",
            Counter::PassOtherPort => "pass_other_port",
            Counter::PassFragment => "pass_fragment",
            Counter::PassTooShort => "pass_too_short",
            Counter::PassVlanUnsupported => "pass_vlan_unsupported",
            Counter::PassIpv6Ext => "pass_ipv6_ext",
            Counter::PassBadIp => "pass_bad_ip",
        }
    }

    /// The C enumerator (`XDHCP_CNT_STEERED_V4`, ...).
    pub fn c_name(self) -> String {
        format!("XDHCP_CNT_{}", self.name().to_ascii_uppercase())
    }
}

/// The program's counters summed over all CPUs, indexed by [`Counter`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProgramCounters(pub [u64; COUNTER_COUNT]);

impl ProgramCounters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Difference since an earlier reading (counters only grow).
    pub fn since(&self, earlier: &ProgramCounters) -> ProgramCounters {
        let mut out = [0; COUNTER_COUNT];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.0[i].saturating_sub(earlier.0[i]);
        }
        ProgramCounters(out)
    }
}

/// How to attach. `Auto` is native (driver) mode, falling back to generic (SKB) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    #[default]
    Auto,
    Native,
    Generic,
}

/// The mode an attachment ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native (driver)",
            AttachedMode::Generic => "generic (SKB)",
        })
    }
}

/// The message every privilege failure carries.
pub const PRIVILEGE_HINT: &str =
    "run as root, or grant CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_NET_RAW \
     (and CAP_IPC_LOCK or a raised RLIMIT_MEMLOCK for the UMEM)";

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("loading the XDP program needs privileges: {PRIVILEGE_HINT} ({source})")]
    Permission {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("loading the XDP program into the kernel failed: {0}")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("interface {iface}: {queues} rx queues is more than the {MAX_QUEUES} xdhcp supports")]
    TooManyQueues { iface: String, queues: u32 },
    #[error(
        "interface {iface}: attaching XDP failed in native mode ({native}) and in generic mode ({generic}); \
         check `ip link show dev {iface}` and the kernel log (`dmesg`): a peer MTU too large for XDP or \
         another XDP user are the usual causes"
    )]
    Attach {
        iface: String,
        native: String,
        generic: String,
    },
    #[error("interface {iface}: attaching XDP in {mode} mode failed: {error}")]
    AttachMode {
        iface: String,
        mode: AttachedMode,
        error: String,
    },
    #[error(
        "interface {iface} already runs XDP program `{name}` (id {prog_id}), which is not xdhcp's; \
         xdhcp will not replace it. Remove it with `ip link set dev {iface} xdp off` if it is not needed"
    )]
    ForeignProgram {
        iface: String,
        prog_id: u32,
        name: String,
    },
    #[error("interface {iface}: removing the stale xdhcp XDP program failed: {source}")]
    StaleRemoval { iface: String, source: io::Error },
    #[error("registering the AF_XDP socket of queue {queue} in the XSKMAP failed: {source}")]
    XskMap {
        queue: u32,
        source: aya::maps::MapError,
    },
    #[error("reading the XDP counters failed: {0}")]
    Counters(#[source] aya::maps::MapError),
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(#[source] ProgramError),
}

/// Finds an errno anywhere in an error's source chain.
pub(crate) fn errno_in(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(errno_in(e), Some(libc::EPERM) | Some(libc::EACCES))
}

/// Full message of an error with its sources (aya's top-level messages are terse, e.g. "attach").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

/// Ports the program steers. The dataplane uses the server ports; the load generator steers the
/// client ports with the same program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteerPorts {
    pub v4: u16,
    pub v6: u16,
}

impl SteerPorts {
    pub const SERVER: SteerPorts = SteerPorts { v4: 67, v6: 547 };
    pub const CLIENT: SteerPorts = SteerPorts { v4: 68, v6: 546 };
}

/// The loaded program and its maps, attached to at most one interface.
pub struct XdpProgram {
    ebpf: Ebpf,
    attached: Option<(String, AttachedMode)>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("attached", &self.attached)
            .finish()
    }
}

impl XdpProgram {
    /// Loads (verifies) the program with an XSKMAP of `queues` entries. Not attached yet.
    pub fn load(queues: u32, ports: SteerPorts) -> Result<XdpProgram, LoaderError> {
        let queues = queues.clamp(1, MAX_QUEUES);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(XSKS_MAP, queues)
            .override_global("xdhcp_port_v4", &ports.v4, true)
            .override_global("xdhcp_port_v6", &ports.v6, true);
        let mut ebpf = loader.load(XDHCP_BPF_OBJ).map_err(|e| {
            if is_permission(&e) {
                LoaderError::Permission {
                    source: Box::new(e),
                }
            } else {
                LoaderError::Load(Box::new(e))
            }
        })?;
        let prog = xdp_mut(&mut ebpf)?;
        prog.load().map_err(|e| {
            if is_permission(&e) {
                LoaderError::Permission {
                    source: Box::new(e),
                }
            } else {
                LoaderError::Load(Box::new(e))
            }
        })?;
        Ok(XdpProgram {
            ebpf,
            attached: None,
        })
    }

    /// Puts an AF_XDP socket in the XSKMAP slot of its rx queue.
    pub fn register_socket(
        &mut self,
        queue: u32,
        fd: impl std::os::fd::AsRawFd,
    ) -> Result<(), LoaderError> {
        let map = self
            .ebpf
            .map_mut(XSKS_MAP)
            .ok_or_else(|| missing(XSKS_MAP))?;
        let mut xsks: XskMap<&mut MapData> =
            XskMap::try_from(map).map_err(|source| LoaderError::XskMap { queue, source })?;
        xsks.set(queue, fd, 0)
            .map_err(|source| LoaderError::XskMap { queue, source })
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<ProgramCounters, LoaderError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| missing(COUNTERS_MAP))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(LoaderError::Counters)?;
        let mut out = [0u64; COUNTER_COUNT];
        for (i, o) in out.iter_mut().enumerate() {
            let per_cpu = arr.get(&(i as u32), 0).map_err(LoaderError::Counters)?;
            *o = per_cpu.iter().sum();
        }
        Ok(ProgramCounters(out))
    }

    /// A reader of the counters that other threads can keep (a duplicate of the map's fd): how
    /// the control socket's `statistic-get-all` reads them while the backend owns the program.
    pub fn counters_reader(&self) -> Result<CountersReader, LoaderError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| missing(COUNTERS_MAP))?;
        let aya::maps::Map::PerCpuArray(data) = map else {
            return Err(missing(COUNTERS_MAP));
        };
        let fd = std::os::fd::AsFd::as_fd(data.fd())
            .try_clone_to_owned()
            .map_err(|e| LoaderError::Load(Box::new(e)))?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| LoaderError::Load(format!("{what}: {e}").into()))?;
        Ok(CountersReader { fd, cpus })
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` and returns its XDP action
    /// (`XDP_PASS` = 2, `XDP_REDIRECT` = 4, ...). Counters update as for a real frame.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, LoaderError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_NAME)
            .ok_or_else(|| {
                LoaderError::Load(format!("program {PROG_NAME} missing from the object").into())
            })?
            .try_into()
            .map_err(LoaderError::TestRun)?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        prog.test_run(opts)
            .map(|r| r.return_value)
            .map_err(LoaderError::TestRun)
    }

    /// Attaches to `iface` (an index in the caller's network namespace), first removing a stale
    /// xdhcp program that a crashed run left behind. Another program is never replaced.
    pub fn attach(
        &mut self,
        iface: &str,
        ifindex: u32,
        mode: AttachMode,
    ) -> Result<AttachedMode, LoaderError> {
        remove_stale(iface, ifindex)?;
        let prog = xdp_mut(&mut self.ebpf)?;
        let attached = match mode {
            AttachMode::Native => attach_one(prog, iface, ifindex, AttachedMode::Native)?,
            AttachMode::Generic => attach_one(prog, iface, ifindex, AttachedMode::Generic)?,
            AttachMode::Auto => match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
                Ok(_) => AttachedMode::Native,
                Err(native) => {
                    if is_permission(&native) {
                        return Err(LoaderError::Permission {
                            source: Box::new(native),
                        });
                    }
                    tracing::warn!(iface, error = %chain(&native), "native XDP refused; falling back to generic (SKB) mode");
                    match prog.attach_to_if_index(ifindex, XdpMode::Skb) {
                        Ok(_) => AttachedMode::Generic,
                        Err(generic) => {
                            return Err(LoaderError::Attach {
                                iface: iface.to_string(),
                                native: chain(&native),
                                generic: chain(&generic),
                            })
                        }
                    }
                }
            },
        };
        tracing::info!(iface, mode = %attached, "XDP program attached");
        self.attached = Some((iface.to_string(), attached));
        Ok(attached)
    }

    /// The interface and mode this program is attached to.
    pub fn attached(&self) -> Option<(&str, AttachedMode)> {
        self.attached.as_ref().map(|(i, m)| (i.as_str(), *m))
    }
}

/// Reads the program's per-CPU counters through its own duplicate of the map's fd, so it is
/// `Send + Sync` and outlives nothing it should not: once the program is unloaded the map stays
/// readable (frozen) until the reader is dropped.
#[derive(Debug)]
pub struct CountersReader {
    fd: std::os::fd::OwnedFd,
    cpus: usize,
}

/// `union bpf_attr` as `BPF_MAP_LOOKUP_ELEM` reads it.
#[repr(C)]
struct BpfMapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

impl CountersReader {
    /// Counters summed over CPUs (one `bpf(2)` lookup per counter).
    pub fn read(&self) -> io::Result<ProgramCounters> {
        let mut out = [0u64; COUNTER_COUNT];
        // Per-CPU values are 8-byte slots, one per possible CPU. Read off the hot path only.
        let mut per_cpu = vec![0u64; self.cpus.max(1)];
        for (i, o) in out.iter_mut().enumerate() {
            let key = i as u32;
            let attr = BpfMapElemAttr {
                map_fd: std::os::fd::AsRawFd::as_raw_fd(&self.fd) as u32,
                _pad: 0,
                key: (&key as *const u32) as u64,
                value: per_cpu.as_mut_ptr() as u64,
                flags: 0,
            };
            // SAFETY: `attr` points at a live key and a value buffer sized for every possible
            // CPU, as the kernel requires for a per-CPU array lookup.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_ELEM,
                    &attr as *const BpfMapElemAttr,
                    std::mem::size_of::<BpfMapElemAttr>(),
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            *o = per_cpu.iter().sum();
        }
        Ok(ProgramCounters(out))
    }
}

fn missing(what: &str) -> LoaderError {
    LoaderError::Load(format!("map {what} missing from the XDP object").into())
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoaderError> {
    ebpf.program_mut(PROG_NAME)
        .ok_or_else(|| {
            LoaderError::Load(format!("program {PROG_NAME} missing from the object").into())
        })?
        .try_into()
        .map_err(|e: ProgramError| LoaderError::Load(Box::new(e)))
}

fn attach_one(
    prog: &mut Xdp,
    iface: &str,
    ifindex: u32,
    mode: AttachedMode,
) -> Result<AttachedMode, LoaderError> {
    let m = match mode {
        AttachedMode::Native => XdpMode::Driver,
        AttachedMode::Generic => XdpMode::Skb,
    };
    prog.attach_to_if_index(ifindex, m).map_err(|e| {
        if is_permission(&e) {
            LoaderError::Permission {
                source: Box::new(e),
            }
        } else {
            LoaderError::AttachMode {
                iface: iface.to_string(),
                mode,
                error: chain(&e),
            }
        }
    })?;
    Ok(mode)
}

/// Removes an xdhcp program still attached to the interface: one attached through netlink
/// (`ip link`, or aya's netlink fallback) goes with `xdp off`; one held by a bpf_link (leaked or
/// pinned by a process that did not exit cleanly) is detached through bpf(2).
fn remove_stale(iface: &str, ifindex: u32) -> Result<(), LoaderError> {
    let stale_err = |source: io::Error| {
        if matches!(
            source.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        ) {
            LoaderError::Permission {
                source: Box::new(source),
            }
        } else {
            LoaderError::StaleRemoval {
                iface: iface.to_string(),
                source,
            }
        }
    };
    let cur = sys::attached_xdp(ifindex).map_err(stale_err)?;
    for (prog_id, flags) in [
        (cur.drv_prog_id, sys::XDP_FLAGS_DRV_MODE),
        (cur.skb_prog_id, sys::XDP_FLAGS_SKB_MODE),
    ] {
        if prog_id == 0 {
            continue;
        }
        let name = sys::prog_name(prog_id).unwrap_or_default();
        if name != PROG_NAME {
            return Err(LoaderError::ForeignProgram {
                iface: iface.to_string(),
                prog_id,
                name,
            });
        }
        tracing::warn!(
            iface,
            prog_id,
            "replacing a stale xdhcp XDP program (left by a crash or another instance)"
        );
        match sys::netlink_detach_xdp(ifindex, flags) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                sys::detach_xdp_links(ifindex).map_err(stale_err)?;
            }
            Err(e) => return Err(stale_err(e)),
        }
    }
    let after = sys::attached_xdp(ifindex).map_err(stale_err)?;
    if after.any() {
        return Err(stale_err(io::Error::other(format!(
            "an XDP program is still attached after removal (native id {}, generic id {})",
            after.drv_prog_id, after.skb_prog_id
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../../../../ebpf/xdhcp_shared.h");

    /// Value of `NAME = <int>` or `#define NAME <value>` in the shared header.
    fn header_value(name: &str) -> Option<String> {
        HEADER.lines().find_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("#define ") {
                let mut it = rest.split_whitespace();
                if it.next() == Some(name) {
                    return it.next().map(|v| v.trim_matches('"').to_string());
                }
            }
            let (lhs, rhs) = l.split_once('=')?;
            (lhs.trim() == name).then(|| rhs.trim().trim_end_matches(',').trim().to_string())
        })
    }

    #[test]
    fn rust_mirror_matches_the_shared_header() {
        for c in Counter::ALL {
            let v = header_value(&c.c_name())
                .unwrap_or_else(|| panic!("{} missing from xdhcp_shared.h", c.c_name()));
            assert_eq!(v.parse::<u32>().unwrap(), c as u32, "{}", c.c_name());
        }
        assert_eq!(
            header_value("XDHCP_CNT_MAX")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            COUNTER_COUNT
        );
        assert_eq!(
            header_value("XDHCP_MAX_QUEUES")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
            MAX_QUEUES
        );
        assert_eq!(header_value("XDHCP_PROG_NAME").unwrap(), PROG_NAME);
        // Every enumerator in the header has a Rust twin (no counter added on one side only).
        let in_header = HEADER
            .lines()
            .filter(|l| l.trim_start().starts_with("XDHCP_CNT_") && !l.contains("XDHCP_CNT_MAX"))
            .count();
        assert_eq!(in_header, COUNTER_COUNT);
    }

    #[test]
    fn counters_are_dense_and_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
