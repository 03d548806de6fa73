//! Kea's Control Agent configuration (the `Control-agent` map of `kea-ctrl-agent.conf`), read for
//! xdhcp-control's HTTP control API listener, so the file that configured Kea's agent configures
//! xdhcp's: `http-host`, `http-port`, TLS (`trust-anchor`, `cert-file`, `key-file`, all three or
//! none, and `cert-required`, default true) and basic authentication (`authentication.clients`).
//! xdhcp-control answers the commands itself, so `control-sockets` and the agent's hooks are not
//! used (warnings). Same diagnostics as the DHCP configuration: file, JSON path, reason.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::walk::{Ctx, Obj};
use crate::{ConfigError, Diagnostic};

/// The control API listener as Kea's agent would run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlAgent {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    pub http_host: IpAddr,
    pub http_port: u16,
    /// Trust anchor, certificate and key when TLS is on (Kea: all three or none).
    pub tls: Option<AgentTls>,
    /// With TLS: clients must present a certificate from the trust anchor (Kea's default).
    pub cert_required: bool,
    /// `authentication.realm` (Kea's default `kea-control-agent`).
    pub realm: String,
    /// `(user, password)` of `authentication.clients`; empty means no HTTP authentication.
    pub clients: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentTls {
    pub trust_anchor: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug)]
pub struct LoadedAgent {
    pub agent: ControlAgent,
    pub warnings: Vec<Diagnostic>,
}

pub fn load_agent_file(path: &Path) -> Result<LoadedAgent, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_agent_str(&text, path),
        Err(e) => Err(crate::unreadable(path, &e)),
    }
}

/// Whether a configuration text has a `Control-agent` map (a combined file).
pub fn has_agent_section(text: &str, source: &Path) -> bool {
    matches!(crate::parse_json(text, source), Ok((v, _)) if v.get("Control-agent").is_some())
}

/// Reads the `Control-agent` map of a configuration text; other top-level sections (a combined
/// file with `Dhcp4`) are left to their readers.
pub fn load_agent_str(text: &str, source: &Path) -> Result<LoadedAgent, ConfigError> {
    let (mut ctx, root) = crate::parse_inner(text, source);
    let agent = root
        .as_ref()
        .and_then(|root| match root.get("Control-agent") {
            Some(v) => read_agent(&mut ctx, v, source),
            None => {
                ctx.err(
                    "",
                    "no \"Control-agent\" map: nothing to configure the control API with",
                );
                None
            }
        });
    match agent {
        Some(agent) if ctx.errors.is_empty() => Ok(LoadedAgent {
            agent,
            warnings: ctx.warnings,
        }),
        _ => Err(ConfigError {
            errors: ctx.errors,
            warnings: ctx.warnings,
        }),
    }
}

fn read_agent(ctx: &mut Ctx, v: &Value, source: &Path) -> Option<ControlAgent> {
    let mut o = Obj::new(ctx, v, "Control-agent", "the control agent")?;
    let h = o.str(ctx, "http-host").unwrap_or("127.0.0.1");
    let host = match h
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.err(
                &o.p("http-host"),
                format!(
                    "'{h}' is not an IP address (Kea's agent listens on an address, not a name)"
                ),
            );
            None
        }
    };
    let port = o.int(ctx, "http-port", 1, 65535).unwrap_or(8000) as u16;
    let tls_key = |o: &mut Obj, ctx: &mut Ctx, k: &str| {
        let p = o.p(k);
        o.str(ctx, k)
            .filter(|s| !s.is_empty())
            .map(|s| (PathBuf::from(s), p))
    };
    let ca = tls_key(&mut o, ctx, "trust-anchor");
    let cert = tls_key(&mut o, ctx, "cert-file");
    let key = tls_key(&mut o, ctx, "key-file");
    let cert_required = o.bool(ctx, "cert-required").unwrap_or(true);
    let tls = match (ca, cert, key) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) => {
            for ((file, path), is_key) in [(&ca, false), (&cert, false), (&key, true)] {
                let r = if is_key {
                    crate::tls::load_key(file).map(|_| ())
                } else {
                    crate::tls::load_certs(file).map(|_| ())
                };
                if let Err(e) = r {
                    ctx.err(path, format!("'{}': {e}", file.display()));
                }
            }
            Some(AgentTls {
                trust_anchor: ca.0,
                cert_file: cert.0,
                key_file: key.0,
            })
        }
        (ca, cert, key) => {
            let missing: Vec<&str> = [
                ("trust-anchor", ca.is_none()),
                ("cert-file", cert.is_none()),
                ("key-file", key.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| *k)
            .collect();
            ctx.err(
                "Control-agent",
                format!(
                    "trust-anchor, cert-file and key-file must be given all three or none: {} missing",
                    missing.join(" and ")
                ),
            );
            None
        }
    };
    let (realm, clients) = match o.obj(ctx, "authentication", "HTTP authentication") {
        Some(a) => read_auth(ctx, a),
        None => ("kea-control-agent".to_string(), Vec::new()),
    };
    if o.take("control-sockets").is_some() {
        ctx.warn(
            &o.p("control-sockets"),
            "not used: xdhcp-control answers the commands itself and forwards lease and config commands to the dataplane",
        );
    }
    if o.take("hooks-libraries").is_some() {
        ctx.warn(
            &o.p("hooks-libraries"),
            "not loaded: xdhcp loads no hook libraries",
        );
    }
    if o.take("loggers").is_some() {
        ctx.warn(
            &o.p("loggers"),
            "ignored: xdhcp-control logs to stderr, filtered with RUST_LOG",
        );
    }
    o.finish(ctx);
    Some(ControlAgent {
        source: source.to_path_buf(),
        http_host: host?,
        http_port: port,
        tls,
        cert_required,
        realm,
        clients,
    })
}

fn read_auth(ctx: &mut Ctx, mut a: Obj) -> (String, Vec<(String, String)>) {
    if let Some(t) = a.str(ctx, "type") {
        if t != "basic" {
            ctx.err(
                &a.p("type"),
                format!("'{t}' is not supported: Kea 2.2 has only \"basic\""),
            );
        }
    }
    let realm = a
        .str(ctx, "realm")
        .unwrap_or("kea-control-agent")
        .to_string();
    let dir = a.str(ctx, "directory").map(PathBuf::from);
    let read_file = |ctx: &mut Ctx, path: &str, f: &str| -> Option<String> {
        let full = match &dir {
            Some(d) if !Path::new(f).is_absolute() => d.join(f),
            _ => PathBuf::from(f),
        };
        match std::fs::read_to_string(&full) {
            // Kea takes the first line.
            Ok(s) => Some(s.lines().next().unwrap_or("").to_string()),
            Err(e) => {
                ctx.err(path, format!("cannot read '{}': {e}", full.display()));
                None
            }
        }
    };
    let mut clients = Vec::new();
    for (cp, cv) in a.list(ctx, "clients") {
        let Some(mut c) = Obj::new(ctx, cv, &cp, "an HTTP client") else {
            continue;
        };
        let user = match (c.str(ctx, "user"), c.str(ctx, "user-file")) {
            (Some(_), Some(_)) => {
                ctx.err(&cp, "user and user-file are exclusive");
                None
            }
            (Some(u), None) => Some(u.to_string()),
            (None, Some(f)) => read_file(ctx, &c.p("user-file"), f),
            (None, None) => {
                ctx.err(&cp, "a client needs user or user-file");
                None
            }
        };
        let password = match (c.str(ctx, "password"), c.str(ctx, "password-file")) {
            (Some(_), Some(_)) => {
                ctx.err(&cp, "password and password-file are exclusive");
                None
            }
            (Some(p), None) => Some(p.to_string()),
            (None, Some(f)) => read_file(ctx, &c.p("password-file"), f),
            (None, None) => Some(String::new()),
        };
        c.finish(ctx);
        if let (Some(u), Some(p)) = (user, password) {
            if u.is_empty() || u.contains(':') {
                ctx.err(
                    &cp,
                    "the user must not be empty nor contain ':' (HTTP basic auth)",
                );
                continue;
            }
            clients.push((u, p));
        }
    }
    a.finish(ctx);
    (realm, clients)
}
