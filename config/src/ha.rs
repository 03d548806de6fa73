//! `hooks-libraries`: the HA hook's parameters (`libdhcp_ha.so`) validated into [`HaRelationship`]s with Kea
//! 2.2's defaults and rules (see kea-ha-wire.md §4); `libdhcp_lease_cmds.so` is built into xdhcp; any other
//! hook library is reported, since xdhcp loads no shared objects.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::{HaMode, HaPeer, HaRelationship, HaRole};
use crate::walk::{Ctx, Obj};

const HA_STATES: &[&str] = &[
    "backup",
    "communication-recovery",
    "hot-standby",
    "load-balancing",
    "in-maintenance",
    "partner-down",
    "partner-in-maintenance",
    "passive-backup",
    "ready",
    "syncing",
    "terminated",
    "waiting",
];

pub(crate) fn read_hooks(
    ctx: &mut Ctx,
    list: Vec<(String, &Value)>,
    v6: bool,
) -> Vec<HaRelationship> {
    let mut out = Vec::new();
    let mut seen_ha = false;
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "a hook library") else {
            continue;
        };
        let lib = o.str(ctx, "library").unwrap_or("");
        let base = Path::new(lib)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        match base {
            "libdhcp_ha.so" => {
                if seen_ha {
                    ctx.err(&o.p("library"), "libdhcp_ha.so is loaded twice; put every relationship in one high-availability list");
                }
                seen_ha = true;
                match o.obj(ctx, "parameters", "the HA hook parameters") {
                    Some(mut po) => {
                        match po.take("high-availability") {
                            Some(Value::Array(a)) => {
                                if a.is_empty() {
                                    ctx.err(&po.p("high-availability"), "the list is empty; configure at least one relationship");
                                }
                                for (i, r) in a.iter().enumerate() {
                                    let rp = format!("{}[{i}]", po.p("high-availability"));
                                    if let Some(rel) = read_relationship(ctx, r, &rp, v6) {
                                        out.push(rel);
                                    }
                                }
                            }
                            Some(m @ Value::Object(_)) => {
                                let rp = po.p("high-availability");
                                if let Some(rel) = read_relationship(ctx, m, &rp, v6) {
                                    out.push(rel);
                                }
                            }
                            Some(_) => ctx.err(&po.p("high-availability"), "must be a list of relationships (or one relationship map)"),
                            None => ctx.err(&po.path, "needs \"high-availability\": [ { \"this-server-name\": ..., \"mode\": ..., \"peers\": [...] } ]"),
                        }
                        po.finish(ctx);
                    }
                    None => ctx.err(
                        &p,
                        "libdhcp_ha.so needs \"parameters\": {\"high-availability\": [...]}",
                    ),
                }
            }
            "libdhcp_lease_cmds.so" => {
                // The lease commands are built into xdhcp's control API; the hook takes no parameters.
                o.accept("parameters");
            }
            "" => ctx.err(
                &p,
                "a hook library needs \"library\": \"/path/to/libdhcp_xxx.so\"",
            ),
            other => {
                o.accept("parameters");
                ctx.warn(&o.p("library"), format!("xdhcp does not load hook libraries; '{other}' is not loaded and what it would do does not happen"));
            }
        }
        o.finish(ctx);
    }
    // Several relationships: peer names must be unique across all of them (subnets select by name).
    for (i, r) in out.iter().enumerate() {
        for r2 in &out[i + 1..] {
            if r.this_server_name == r2.this_server_name {
                ctx.err(
                    "",
                    format!(
                        "this-server-name '{}' is used by two high-availability relationships",
                        r.this_server_name
                    ),
                );
            }
        }
    }
    out
}

fn parse_url(u: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls, default_port) = if let Some(r) = u.strip_prefix("http://") {
        (r, false, 80)
    } else if let Some(r) = u.strip_prefix("https://") {
        (r, true, 443)
    } else {
        return Err(format!("'{u}' must start with http:// or https://"));
    };
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| format!("'{u}': unclosed '[' in the host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("'{u}': unexpected text after the IPv6 address")),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{u}' has no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("'{u}': '{p}' is not a port (1..65535)"))?,
    };
    Ok((host, port, tls))
}

/// One TLS parameter as written, with the JSON path it was read from (a peer's own value or the
/// relationship's, which every peer without its own inherits, as in Kea 2.2).
#[derive(Clone)]
struct TlsParam {
    file: PathBuf,
    path: String,
}

#[derive(Clone, Default)]
struct Tls {
    trust_anchor: Option<TlsParam>,
    cert_file: Option<TlsParam>,
    key_file: Option<TlsParam>,
}

impl Tls {
    /// The peer's own values, else the relationship's (Kea's `HAConfig::validate`).
    fn or(self, rel: &Tls) -> Tls {
        Tls {
            trust_anchor: self.trust_anchor.or_else(|| rel.trust_anchor.clone()),
            cert_file: self.cert_file.or_else(|| rel.cert_file.clone()),
            key_file: self.key_file.or_else(|| rel.key_file.clone()),
        }
    }

    fn named(&self) -> [(&'static str, &Option<TlsParam>); 3] {
        [
            ("trust-anchor", &self.trust_anchor),
            ("cert-file", &self.cert_file),
            ("key-file", &self.key_file),
        ]
    }
}

/// Reads the three keys of one level; an empty string counts as not set, as in Kea.
fn read_tls(ctx: &mut Ctx, o: &mut Obj) -> Tls {
    let mut one = |k: &str| {
        let path = o.p(k);
        o.str(ctx, k).filter(|v| !v.is_empty()).map(|v| TlsParam {
            file: PathBuf::from(v),
            path,
        })
    };
    Tls {
        trust_anchor: one("trust-anchor"),
        cert_file: one("cert-file"),
        key_file: one("key-file"),
    }
}

/// Kea 2.2's TLS rules for one peer after inheritance: any of the three set means TLS, and then
/// all three are needed; `https://` without TLS is refused. The files are read here (once per
/// JSON path), as Kea loads them at configuration time. Returns whether the peer uses TLS.
fn check_peer_tls(
    ctx: &mut Ctx,
    t: &Tls,
    peer_path: &str,
    https: bool,
    checked: &mut Vec<String>,
) -> bool {
    let named = t.named();
    let missing: Vec<&str> = named
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if missing.len() == 3 {
        if https {
            ctx.err(
                &format!("{peer_path}.url"),
                "https:// needs TLS, which is off for this peer: set trust-anchor, cert-file and key-file (for the peer or the whole relationship)",
            );
        }
        return false;
    }
    if !missing.is_empty() {
        ctx.err(
            peer_path,
            format!(
                "trust-anchor, cert-file and key-file must be given all three or none: {} missing for this peer (set at the peer or the relationship level)",
                missing.join(" and ")
            ),
        );
        return true;
    }
    for (k, v) in named {
        let Some(v) = v else { continue };
        if checked.contains(&v.path) {
            continue;
        }
        checked.push(v.path.clone());
        let r = match k {
            "key-file" => crate::tls::load_key(&v.file).map(|_| ()),
            _ => crate::tls::load_certs(&v.file).map(|_| ()),
        };
        if let Err(e) = r {
            ctx.err(&v.path, format!("'{}': {e}", v.file.display()));
        }
    }
    true
}

fn read_relationship(ctx: &mut Ctx, v: &Value, path: &str, _v6: bool) -> Option<HaRelationship> {
    let mut o = Obj::new(ctx, v, path, "a high-availability relationship")?;
    let this = o.str(ctx, "this-server-name").map(str::to_string);
    let mode = o.str(ctx, "mode").and_then(|m| match m {
        "hot-standby" => Some(HaMode::HotStandby),
        "load-balancing" => Some(HaMode::LoadBalancing),
        "passive-backup" => Some(HaMode::PassiveBackup),
        _ => {
            ctx.err(
                &o.p("mode"),
                format!("'{m}' is not hot-standby, load-balancing or passive-backup"),
            );
            None
        }
    });
    let delay = |ctx: &mut Ctx, o: &mut Obj, k: &str, d: u32| {
        o.int(ctx, k, 0, 65535).map(|n| n as u32).unwrap_or(d)
    };
    let heartbeat = delay(ctx, &mut o, "heartbeat-delay", 10000);
    let max_response = delay(ctx, &mut o, "max-response-delay", 60000);
    let max_ack = delay(ctx, &mut o, "max-ack-delay", 10000);
    let max_unacked = o.u32(ctx, "max-unacked-clients").unwrap_or(10);
    let delayed_limit = o.u32(ctx, "delayed-updates-limit");
    let sync_timeout = o.u32(ctx, "sync-timeout").unwrap_or(60000);
    let sync_page_limit = o
        .int(ctx, "sync-page-limit", 1, u32::MAX as i64)
        .map(|n| n as u32)
        .unwrap_or(10000);
    let send_updates = o.bool(ctx, "send-lease-updates").unwrap_or(true);
    let sync_leases = o.bool(ctx, "sync-leases").unwrap_or(true);
    let wait_backup_ack = o.bool(ctx, "wait-backup-ack").unwrap_or(false);
    let require_client_certs = o.bool(ctx, "require-client-certs").unwrap_or(true);
    let tls = read_tls(ctx, &mut o);
    if o.bool(ctx, "restrict-commands") == Some(true) {
        ctx.warn(
            &o.p("restrict-commands"),
            "not enforced by xdhcp: protect the HA listener with basic-auth or TLS client certificates instead",
        );
    }
    let mut mt = false;
    let mut dedicated = false;
    if let Some(mut m) = o.obj(ctx, "multi-threading", "HA multi-threading") {
        mt = m.bool(ctx, "enable-multi-threading").unwrap_or(false);
        dedicated = m.bool(ctx, "http-dedicated-listener").unwrap_or(false);
        m.u32(ctx, "http-listener-threads");
        m.u32(ctx, "http-client-threads");
        m.finish(ctx);
    }
    let mut paused = Vec::new();
    if let Some(mut sm) = o.obj(ctx, "state-machine", "HA state machine settings") {
        for (sp, sv) in sm.list(ctx, "states") {
            let Some(mut so) = Obj::new(ctx, sv, &sp, "a state setting") else {
                continue;
            };
            let st = so.str(ctx, "state");
            let pause = so.str(ctx, "pause").unwrap_or("never");
            so.finish(ctx);
            let Some(st) = st else {
                ctx.err(&sp, "needs \"state\"");
                continue;
            };
            if !HA_STATES.contains(&st) {
                ctx.err(
                    &format!("{sp}.state"),
                    format!("'{st}' is not an HA state ({})", HA_STATES.join(", ")),
                );
                continue;
            }
            if !["always", "never", "once"].contains(&pause) {
                ctx.err(
                    &format!("{sp}.pause"),
                    format!("'{pause}' is not always, never or once"),
                );
                continue;
            }
            if pause != "never" {
                paused.push((st.to_string(), pause.to_string()));
            }
        }
        sm.finish(ctx);
    }
    let mut peers: Vec<HaPeer> = Vec::new();
    let peer_list = o.list(ctx, "peers");
    let mut names: Vec<String> = Vec::new();
    let mut tls_checked: Vec<String> = Vec::new();
    for (pp, pv) in peer_list {
        let Some(mut po) = Obj::new(ctx, pv, &pp, "an HA peer") else {
            continue;
        };
        let name = po.str(ctx, "name");
        let url = po.str(ctx, "url");
        let role = po.str(ctx, "role").and_then(|r| match r {
            "primary" => Some(HaRole::Primary),
            "secondary" => Some(HaRole::Secondary),
            "standby" => Some(HaRole::Standby),
            "backup" => Some(HaRole::Backup),
            _ => {
                ctx.err(
                    &po.p("role"),
                    format!("'{r}' is not primary, secondary, standby or backup"),
                );
                None
            }
        });
        let auto_failover = po.bool(ctx, "auto-failover").unwrap_or(true);
        let user = po.str(ctx, "basic-auth-user").map(str::to_string);
        let mut password = po.str(ctx, "basic-auth-password").map(str::to_string);
        if let Some(f) = po.str(ctx, "basic-auth-password-file") {
            if password.is_some() {
                ctx.err(
                    &po.p("basic-auth-password-file"),
                    "basic-auth-password and basic-auth-password-file are exclusive",
                );
            }
            match std::fs::read_to_string(f) {
                Ok(s) => password = Some(s.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => ctx.err(
                    &po.p("basic-auth-password-file"),
                    format!("cannot read '{f}': {e}"),
                ),
            }
        }
        if password.is_some() && user.is_none() {
            ctx.err(&pp, "a basic-auth password needs basic-auth-user");
        }
        if let Some(u) = &user {
            if u.contains(':') {
                ctx.err(
                    &po.p("basic-auth-user"),
                    "must not contain ':' (HTTP basic auth)",
                );
            }
        }
        let ptls = read_tls(ctx, &mut po).or(&tls);
        po.finish(ctx);
        let (Some(name), Some(url), Some(role)) = (name, url, role) else {
            for k in ["name", "url", "role"] {
                if pv.get(k).is_none() {
                    ctx.err(&pp, format!("an HA peer needs '{k}'"));
                }
            }
            continue;
        };
        if name.is_empty() {
            ctx.err(&format!("{pp}.name"), "must not be empty");
            continue;
        }
        if names.iter().any(|n| n == name) {
            ctx.err(
                &format!("{pp}.name"),
                format!("peer name '{name}' is used twice in this relationship"),
            );
            continue;
        }
        names.push(name.to_string());
        let (host, port, https) = match parse_url(url) {
            Ok(x) => x,
            Err(e) => {
                ctx.err(&format!("{pp}.url"), e);
                continue;
            }
        };
        if peers.iter().any(|p| p.host == host && p.port == port) {
            ctx.err(
                &format!("{pp}.url"),
                format!("{host}:{port} is already the URL of another peer"),
            );
        }
        let uses_tls = check_peer_tls(ctx, &ptls, &pp, https, &mut tls_checked);
        peers.push(HaPeer {
            name: name.to_string(),
            url: url.to_string(),
            host,
            port,
            tls: uses_tls,
            role,
            auto_failover,
            basic_auth_user: user,
            basic_auth_password: password,
            trust_anchor: ptls.trust_anchor.map(|t| t.file),
            cert_file: ptls.cert_file.map(|t| t.file),
            key_file: ptls.key_file.map(|t| t.file),
        });
    }
    o.finish(ctx);
    let (Some(this), Some(mode)) = (this, mode) else {
        for k in ["this-server-name", "mode"] {
            if v.get(k).is_none() {
                ctx.err(path, format!("an HA relationship needs '{k}'"));
            }
        }
        return None;
    };
    let count = |r: HaRole| peers.iter().filter(|p| p.role == r).count();
    let (need, forbidden): (&[HaRole], &[HaRole]) = match mode {
        HaMode::HotStandby => (&[HaRole::Primary, HaRole::Standby], &[HaRole::Secondary]),
        HaMode::LoadBalancing => (&[HaRole::Primary, HaRole::Secondary], &[HaRole::Standby]),
        HaMode::PassiveBackup => (&[HaRole::Primary], &[HaRole::Secondary, HaRole::Standby]),
    };
    let mode_name = match mode {
        HaMode::HotStandby => "hot-standby",
        HaMode::LoadBalancing => "load-balancing",
        HaMode::PassiveBackup => "passive-backup",
    };
    let pp = format!("{path}.peers");
    let mut ok = true;
    for r in need {
        if count(*r) != 1 {
            ctx.err(
                &pp,
                format!(
                    "{mode_name} needs exactly one {} peer, found {}",
                    role_name(*r),
                    count(*r)
                ),
            );
            ok = false;
        }
    }
    for r in forbidden {
        if count(*r) > 0 {
            ctx.err(
                &pp,
                format!(
                    "the {} role is not valid in {mode_name} mode",
                    role_name(*r)
                ),
            );
            ok = false;
        }
    }
    if !peers.iter().any(|p| p.name == this) {
        ctx.err(
            &format!("{path}.this-server-name"),
            format!(
                "'{this}' is not the name of any peer ({})",
                peers
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        ok = false;
    }
    if wait_backup_ack && mode != HaMode::PassiveBackup {
        ctx.err(
            &format!("{path}.wait-backup-ack"),
            "only valid in passive-backup mode",
        );
    }
    if heartbeat == 0 {
        ctx.err(&format!("{path}.heartbeat-delay"), "must be greater than 0");
    }
    if max_response <= heartbeat && mode != HaMode::PassiveBackup {
        ctx.warn(
            &format!("{path}.max-response-delay"),
            format!("max-response-delay ({max_response} ms) is not greater than heartbeat-delay ({heartbeat} ms): a single late heartbeat will count as a failure"),
        );
    }
    if !ok {
        return None;
    }
    Some(HaRelationship {
        this_server_name: this,
        mode,
        peers,
        heartbeat_delay_ms: heartbeat,
        max_response_delay_ms: max_response,
        max_ack_delay_ms: max_ack,
        max_unacked_clients: max_unacked,
        delayed_updates_limit: delayed_limit.unwrap_or(if mode == HaMode::LoadBalancing {
            100
        } else {
            0
        }),
        sync_timeout_ms: sync_timeout,
        sync_page_limit,
        send_lease_updates: send_updates,
        sync_leases,
        wait_backup_ack,
        require_client_certs,
        multi_threading: mt,
        http_dedicated_listener: dedicated,
        paused_states: paused,
    })
}

fn role_name(r: HaRole) -> &'static str {
    match r {
        HaRole::Primary => "primary",
        HaRole::Secondary => "secondary",
        HaRole::Standby => "standby",
        HaRole::Backup => "backup",
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://172.28.0.254:8000/").unwrap(),
            ("172.28.0.254".into(), 8000, false)
        );
        assert_eq!(
            parse_url("https://[2001:db8::1]/").unwrap(),
            ("2001:db8::1".into(), 443, true)
        );
        assert_eq!(
            parse_url("http://host").unwrap(),
            ("host".into(), 80, false)
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://x:99999/").is_err());
    }
}
