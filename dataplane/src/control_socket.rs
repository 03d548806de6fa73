//! Kea-style JSON commands on a UNIX socket, as `kea-dhcp4` serves them: the client connects,
//! writes one `{"command": ..., "arguments": {...}}`, and reads one response map
//! `{"result": 0|1|2|3, "text": ..., "arguments": ...}`; the server then closes the connection.
//! Besides Kea's commands this is the versioned IPC channel of the control process
//! (`xdhcp-hello`, `xdhcp-ha-serving`, `xdhcp-ha-observations`).
//!
//! Result codes: 0 success, 1 error, 2 unsupported, 3 empty (Kea's meanings).

use crate::engine::{LeaseSink, Shared};
use crate::lease::journal::Journal;
use crate::lease::json::*;
use crate::lease::{Lease4, LeaseChange, LeaseState};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xdhcp_config::model::Config;

/// Version of the control ⇄ dataplane IPC on top of Kea's command format.
pub const IPC_VERSION: u64 = 2;

/// DHCPv6 lease commands (`lease6-*`).
mod lease6;

/// Reloads the configuration (from the given file, or the current one).
pub type ReloadFn = Box<dyn Fn(Option<&std::path::Path>) -> Result<String, String> + Send>;

pub struct Context {
    /// The state commands act on; refreshed from `current` before every command.
    pub shared: Arc<Shared>,
    pub current: Option<Arc<arc_swap::ArcSwap<Shared>>>,
    pub reload: Option<ReloadFn>,
    pub journal: Option<Arc<Journal>>,
    /// Lease changes made by commands are journaled like the workers' own.
    pub sink: parking_lot::Mutex<Box<dyn LeaseSink>>,
    pub config: Arc<parking_lot::Mutex<Config>>,
    pub stop: Arc<AtomicBool>,
}

fn reply(result: u8, text: impl Into<String>, args: Option<Value>) -> Value {
    let mut m = json!({"result": result, "text": text.into()});
    if let Some(a) = args {
        m["arguments"] = a;
    }
    m
}

const COMMANDS: &[&str] = &[
    "build-report",
    "config-get",
    "config-reload",
    "config-test",
    "dhcp-disable",
    "dhcp-enable",
    "lease4-add",
    "lease4-del",
    "lease4-get",
    "lease4-get-all",
    "lease4-get-page",
    "lease4-update",
    "lease6-add",
    "lease6-bulk-apply",
    "lease6-del",
    "lease6-get",
    "lease6-get-all",
    "lease6-get-page",
    "lease6-update",
    "list-commands",
    "shutdown",
    "statistic-get-all",
    "status-get",
    "version-get",
    "xdhcp-alloc-policy",
    "xdhcp-ha-observations",
    "xdhcp-ha-serving",
    "xdhcp-hello",
];

pub fn spawn(path: PathBuf, mut ctx: Context) -> anyhow::Result<std::thread::JoinHandle<()>> {
    if path.exists() {
        // A stale socket from a crashed run; a live server would hold it, so check first.
        if UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "control socket {} is in use by a running server",
                path.display()
            );
        }
        std::fs::remove_file(&path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    let started = std::time::Instant::now();
    Ok(std::thread::Builder::new()
        .name("xdhcp-control".into())
        .spawn(move || {
            while !ctx.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(c) = &ctx.current {
                            ctx.shared = c.load_full();
                        }
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = serve_one(stream, &ctx, started);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Wait for the next connection with poll(2) rather than a fixed sleep: a
                        // 20 ms sleep made every command cost up to 20 ms, which capped the HA
                        // control process (lease sync, replication into this server) at ~50
                        // commands/s. The 100 ms timeout keeps the `stop` check responsive.
                        let mut pfd = libc::pollfd {
                            fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd for the listener's open descriptor.
                        unsafe { libc::poll(&mut pfd, 1, 100) };
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            let _ = std::fs::remove_file(&path);
        })?)
}

fn serve_one(
    mut stream: UnixStream,
    ctx: &Context,
    started: std::time::Instant,
) -> std::io::Result<()> {
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(stream.try_clone()?))
        .into_iter::<Value>();
    let resp = match de.next() {
        Some(Ok(req)) => handle(ctx, &req, started),
        Some(Err(e)) => reply(1, format!("invalid JSON command: {e}"), None),
        None => return Ok(()),
    };
    stream.write_all(resp.to_string().as_bytes())?;
    stream.flush()
}

fn now() -> u64 {
    crate::backend::Now::read().unix_secs
}

/// Make a change to the store and journal it. `op` performs the store operation, taking the
/// journal version under the store's lock through the stamp it is given (so the change replays
/// in store order; see `engine::LeaseSink`), and returns the change with its version, or `None`
/// when there was nothing to change.
type StampedOp<'a> = dyn FnMut(&dyn Fn() -> u64) -> Option<(LeaseChange, u64)> + 'a;

fn journal_change(ctx: &Context, op: &mut StampedOp<'_>) -> Result<bool, Value> {
    let sink = ctx.sink.lock();
    // Commands are rare; wait briefly for room rather than fail at once.
    for _ in 0..1000 {
        if sink.has_room() {
            let stamp = || sink.take_version();
            return Ok(match op(&stamp) {
                Some((change, version)) => {
                    sink.push_versioned(version, change);
                    true
                }
                None => false,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(reply(
        1,
        "the lease journal is not keeping up; try again",
        None,
    ))
}

/// Handle one command (also used directly by tests).
pub fn handle(ctx: &Context, req: &Value, started: std::time::Instant) -> Value {
    let Some(cmd) = req.get("command").and_then(|c| c.as_str()) else {
        return reply(1, "missing 'command'", None);
    };
    let args = req.get("arguments").cloned().unwrap_or(Value::Null);
    let store = &ctx.shared.store;
    match cmd {
        "list-commands" => reply(0, "", Some(json!(COMMANDS))),
        "version-get" => reply(0, env!("CARGO_PKG_VERSION"), Some(json!({"extended": format!("xdhcp {}", env!("CARGO_PKG_VERSION"))}))),
        "build-report" => reply(0, format!("xdhcp {}", env!("CARGO_PKG_VERSION")), None),
        "xdhcp-hello" => {
            let v = args.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
            if v != IPC_VERSION {
                return reply(1, format!("IPC version {v} not supported; this dataplane speaks {IPC_VERSION}"), Some(json!({"version": IPC_VERSION})));
            }
            // The synchronous-replication gate page (crate::syncrepl::gate): where and which layout.
            let gate = ctx.journal.as_ref().map(|j| json!({
                "path": crate::syncrepl::gate::gate_path(j.dir()),
                "version": crate::syncrepl::gate::GATE_VERSION,
            }));
            reply(0, "hello", Some(json!({"version": IPC_VERSION, "pid": std::process::id(), "sync-gate": gate})))
        }
        "status-get" => reply(
            0,
            "",
            Some(json!({
                "pid": std::process::id(),
                "uptime": started.elapsed().as_secs(),
                "reload": started.elapsed().as_secs(),
                "multi-threading-enabled": true,
                "dhcp-enabled": ctx.shared.enabled.load(Ordering::Relaxed),
                "sockets": {"status": "ready"},
                "leases4": store.count4(),
                "leases6": store.count6(),
                "journal-durable-seq": ctx.journal.as_ref().map(|j| j.durable_seq()),
            })),
        ),
        "config-get" => {
            let cfg = ctx.config.lock();
            match std::fs::read_to_string(&cfg.source) {
                Ok(text) => match xdhcp_config::parse_json(&text, &cfg.source) {
                    Ok((v, _)) => reply(0, "", Some(v)),
                    Err(e) => reply(1, e.to_string(), None),
                },
                Err(e) => reply(1, format!("cannot read {}: {e}", cfg.source.display()), None),
            }
        }
        "config-reload" => match &ctx.reload {
            Some(f) => match f(None) {
                Ok(text) => reply(0, text, None),
                Err(e) => reply(1, format!("configuration reload failed, the previous configuration keeps serving: {e}"), None),
            },
            None => reply(2, "config-reload is not available in this process", None),
        },
        "config-test" => {
            let text = args.to_string();
            let src = std::path::Path::new("<config-test>");
            match xdhcp_config::load_str(&text, src) {
                Ok(l) => reply(0, format!("Configuration seems sane ({} warnings).", l.warnings.len()), None),
                Err(e) => reply(1, e.to_string(), None),
            }
        }
        "statistic-get-all" => {
            let mut m = serde_json::Map::new();
            let t = chrono_like_now();
            for (name, v) in ctx.shared.stats.snapshot() {
                m.insert(name, json!([[v, t]]));
            }
            m.insert("leases4-total".into(), json!([[store.count4(), t]]));
            m.insert("leases6-total".into(), json!([[store.count6(), t]]));
            reply(0, "", Some(Value::Object(m)))
        }
        "dhcp-disable" => {
            ctx.shared.enabled.store(false, Ordering::Relaxed);
            reply(0, "DHCPv4 service disabled", None)
        }
        "dhcp-enable" => {
            ctx.shared.enabled.store(true, Ordering::Relaxed);
            reply(0, "DHCP service successfully enabled", None)
        }
        "shutdown" => {
            ctx.stop.store(true, Ordering::Relaxed);
            reply(0, "Shutting down.", None)
        }
        "xdhcp-ha-serving" => {
            let gate = match ha_gate(ctx, &args) {
                Ok(g) => g,
                Err(e) => return reply(1, e, None),
            };
            let Some(rels) = args.get("relationships").and_then(|r| r.as_array()) else {
                return reply(1, "'relationships' (a list) is required", None);
            };
            for r in rels {
                let name = r.get("this-server-name").and_then(|v| v.as_str()).unwrap_or("");
                let enabled = r.get("enabled").and_then(|v| v.as_bool()).unwrap_or(false);
                let scopes: Vec<String> = r
                    .get("scopes")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                if let Err(e) = gate.set(name, enabled, &scopes) {
                    return reply(1, e, None);
                }
            }
            reply(0, "HA serving state applied", None)
        }
        "xdhcp-alloc-policy" => {
            let (Some(name), Some(on)) = (
                args.get("relationship").and_then(|v| v.as_str()),
                args.get("partner-free").and_then(|v| v.as_bool()),
            ) else {
                return reply(1, "'relationship' (string) and 'partner-free' (boolean) are required", None);
            };
            let family = match ha_family(ctx, &args) {
                Ok(f) => f,
                Err(e) => return reply(1, e, None),
            };
            // The pools of the subnets the relationship serves (tagged with one of its peers, or
            // untagged when it is the family's only relationship).
            let serves = |rels: &[xdhcp_config::model::HaRelationship], tag: Option<&str>| match tag {
                Some(t) => t == name || rels.iter().any(|r| r.this_server_name == name && r.peers.iter().any(|p| p.name == t)),
                None => rels.len() == 1 && rels[0].this_server_name == name,
            };
            let mut pool_indexes: Vec<usize> = Vec::new();
            match (family, ctx.shared.rt4.as_ref(), ctx.shared.rt6.as_ref()) {
                (4, Some(rt), _) => {
                    for s in rt.subnets.iter().filter(|s| serves(&rt.cfg.high_availability, s.cfg.ha_server_name.as_deref())) {
                        pool_indexes.extend(s.pools.iter().map(|p| p.store_index));
                    }
                }
                (6, _, Some(rt)) => {
                    for s in rt.subnets.iter().filter(|s| serves(&rt.cfg.high_availability, s.cfg.ha_server_name.as_deref())) {
                        pool_indexes.extend(s.pools.iter().map(|p| p.store_index));
                        pool_indexes.extend(s.pd_pools.iter().map(|p| p.store_index));
                    }
                }
                _ => return reply(1, format!("no DHCPv{family} configuration"), None),
            }
            for &i in &pool_indexes {
                store.pools()[i].alloc.set_partner_free(on);
            }
            let pools = pool_indexes.len();
            if pools == 0 {
                return reply(1, format!("no pools belong to HA relationship '{name}'"), None);
            }
            reply(0, format!("partner-free={on} on {pools} pool(s)"), None)
        }
        "xdhcp-ha-observations" => {
            let gate = match ha_gate(ctx, &args) {
                Ok(g) => g,
                Err(e) => return reply(1, e, None),
            };
            let mut out = Vec::new();
            for r in &gate.relationships {
                let mut obs = Vec::new();
                while let Some(o) = r.observations.pop() {
                    obs.push(json!({"key": hex_colon(&o.key), "secs": o.secs}));
                }
                out.push(json!({"this-server-name": r.name, "analyzed-packets": r.analyzed.swap(0, Ordering::Relaxed), "unanswered": obs}));
            }
            reply(0, "", Some(json!({"relationships": out})))
        }
        "lease4-get" => lease4_get(ctx, &args),
        "lease4-get-all" => {
            let subnets: Option<Vec<u64>> =
                args.get("subnets").and_then(|s| s.as_array()).map(|a| a.iter().filter_map(|v| v.as_u64()).collect());
            let mut leases = Vec::new();
            store.for_each4(&mut |l| {
                if l.state != LeaseState::Offered && subnets.as_ref().is_none_or(|s| s.contains(&u64::from(l.subnet_id))) {
                    leases.push(l.clone());
                }
            });
            leases.sort_by_key(|l| l.addr);
            let n = leases.len();
            let list: Vec<Value> = leases.iter().map(lease4_to_json).collect();
            reply(if n == 0 { 3 } else { 0 }, format!("{n} IPv4 lease(s) found."), Some(json!({"leases": list})))
        }
        "lease4-get-page" => {
            let limit = match args.get("limit").and_then(|v| v.as_u64()) {
                Some(l) if l > 0 => l as usize,
                _ => return reply(1, "'limit' must be a positive integer", None),
            };
            let from = match args.get("from") {
                Some(Value::String(s)) if s == "start" => None,
                Some(Value::String(s)) => match s.parse::<Ipv4Addr>() {
                    Ok(a) => Some(a),
                    Err(_) => return reply(1, "'from' must be \"start\" or an IPv4 address", None),
                },
                _ => return reply(1, "'from' is required", None),
            };
            let mut leases = Vec::new();
            store.for_each4(&mut |l| {
                if l.state != LeaseState::Offered && from.is_none_or(|f| l.addr > f) {
                    leases.push(l.clone());
                }
            });
            leases.sort_by_key(|l| l.addr);
            leases.truncate(limit);
            let n = leases.len();
            let list: Vec<Value> = leases.iter().map(lease4_to_json).collect();
            reply(if n == 0 { 3 } else { 0 }, format!("{n} IPv4 lease(s) found."), Some(json!({"leases": list, "count": n})))
        }
        "lease4-add" | "lease4-update" => lease4_write(ctx, cmd, &args),
        "lease4-del" => {
            let Some(addr) = args.get("ip-address").and_then(|v| v.as_str()).and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
                return reply(1, "'ip-address' (IPv4) is required", None);
            };
            let mut op = |stamp: &dyn Fn() -> u64| {
                store.delete4_stamped(addr, stamp).map(|(_, v)| (LeaseChange::Del4(addr), v))
            };
            match journal_change(ctx, &mut op) {
                Ok(true) => reply(0, "IPv4 lease deleted.", None),
                Ok(false) => reply(3, "IPv4 lease not found.", None),
                Err(e) => e,
            }
        }
        c if lease6::COMMANDS.contains(&c) => lease6::handle(ctx, c, &args),
        other => reply(2, format!("'{other}' command not supported."), None),
    }
}

/// Kea reports statistic timestamps as "YYYY-MM-DD HH:MM:SS.ffffff"; the unix time is enough for
/// our consumers and avoids a date library here.
/// The family an HA command is for: its `"family"` argument (4 or 6), else the family that
/// configures HA (DHCPv4 first), as control processes before dual-family HA expected.
fn ha_family(ctx: &Context, args: &Value) -> Result<u8, String> {
    match args.get("family").map(|f| f.as_u64()) {
        Some(Some(4)) => Ok(4),
        Some(Some(6)) => Ok(6),
        Some(_) => Err("'family' must be 4 or 6".into()),
        None if ctx.shared.gate4.relationships.is_empty()
            && !ctx.shared.gate6.relationships.is_empty() =>
        {
            Ok(6)
        }
        None => Ok(4),
    }
}

/// The HA gate of the family an HA command is for (see [`ha_family`]).
fn ha_gate<'a>(
    ctx: &'a Context,
    args: &Value,
) -> Result<&'a crate::engine::ha_gate::HaGate, String> {
    Ok(match ha_family(ctx, args)? {
        6 => &ctx.shared.gate6,
        _ => &ctx.shared.gate4,
    })
}

fn chrono_like_now() -> String {
    now().to_string()
}

fn lease4_get(ctx: &Context, args: &Value) -> Value {
    let store = &ctx.shared.store;
    let found: Option<Lease4> = if let Some(a) = args.get("ip-address").and_then(|v| v.as_str()) {
        match a.parse::<Ipv4Addr>() {
            Ok(a) => store.get_by_addr4(a),
            Err(_) => return reply(1, "'ip-address' is not an IPv4 address", None),
        }
    } else {
        let (Some(kind), Some(id), Some(subnet)) = (
            args.get("identifier-type").and_then(|v| v.as_str()),
            args.get("identifier").and_then(|v| v.as_str()),
            args.get("subnet-id").and_then(|v| v.as_u64()),
        ) else {
            return reply(
                1,
                "give 'ip-address', or 'identifier-type', 'identifier' and 'subnet-id'",
                None,
            );
        };
        let Ok(bytes) = parse_hex(id) else {
            return reply(1, "'identifier' is not hexadecimal", None);
        };
        let mut hit = None;
        store.for_each4(&mut |l| {
            if hit.is_none()
                && u64::from(l.subnet_id) == subnet
                && match kind {
                    "hw-address" => l.hwaddr.as_slice() == bytes.as_slice(),
                    "client-id" => l.client_id.as_slice() == bytes.as_slice(),
                    _ => false,
                }
            {
                hit = Some(l.clone());
            }
        });
        hit
    };
    match found.filter(|l| l.state != LeaseState::Offered) {
        Some(l) => reply(0, "IPv4 lease found.", Some(lease4_to_json(&l))),
        None => reply(3, "Lease not found.", None),
    }
}

fn lease4_write(ctx: &Context, cmd: &str, args: &Value) -> Value {
    let rt = ctx.shared.rt4.as_ref();
    let mut lease = match lease4_from_json(args, now(), rt.map_or(3600, |r| r.cfg.lifetimes.valid))
    {
        Ok(l) => l,
        Err(e) => return reply(1, e, None),
    };
    // Kea: a subnet-id, if given, must exist and contain the address; 0 or missing selects it.
    if let Some(rt) = rt {
        let by_addr = rt
            .subnets
            .iter()
            .find(|s| s.cfg.contains(lease.addr))
            .map(|s| s.cfg.id);
        if lease.subnet_id == 0 {
            match by_addr {
                Some(id) => lease.subnet_id = id,
                None => return reply(1, format!("no subnet contains {}", lease.addr), None),
            }
        } else if !rt
            .subnets
            .iter()
            .any(|s| s.cfg.id == lease.subnet_id && s.cfg.contains(lease.addr))
        {
            return reply(
                1,
                format!(
                    "subnet-id {} does not exist or does not contain {}",
                    lease.subnet_id, lease.addr
                ),
                None,
            );
        }
    }
    let force = args
        .get("force-create")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let existing = ctx
        .shared
        .store
        .get_by_addr4(lease.addr)
        .filter(|l| l.state != LeaseState::Offered);
    match (cmd, existing.is_some()) {
        ("lease4-add", true) => {
            return reply(
                1,
                format!("IPv4 lease for address {} already exists", lease.addr),
                None,
            )
        }
        ("lease4-update", false) if !force => return reply(3, "IPv4 lease not found", None),
        _ => {}
    }
    let mut op = |stamp: &dyn Fn() -> u64| {
        let v = ctx.shared.store.put4_stamped(lease.clone(), stamp);
        Some((LeaseChange::Put4(lease.clone()), v))
    };
    match journal_change(ctx, &mut op) {
        Ok(_) => reply(
            0,
            if cmd == "lease4-add" {
                "Lease for address added."
            } else {
                "IPv4 lease updated."
            },
            None,
        ),
        Err(e) => e,
    }
}
