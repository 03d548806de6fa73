//! Conversion of Kea's `Dhcp4` and `Dhcp6` sections into [`crate::model`]: Kea 2.2 defaults, inheritance
//! (global → shared network → subnet), option encoding per scope, reservations, client classes and the
//! cross-checks the engine relies on (pools inside their subnet, no overlaps, unique subnet ids).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde_json::Value;

use crate::model::*;
use crate::options::{self, DataType, OptionDef, OptionDefs, Universe};
use crate::walk::{type_name, Ctx, Obj};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fam {
    V4,
    V6,
}

impl Fam {
    fn universe(self) -> Universe {
        match self {
            Fam::V4 => Universe::V4,
            Fam::V6 => Universe::V6,
        }
    }
    fn subnets_key(self) -> &'static str {
        match self {
            Fam::V4 => "subnet4",
            Fam::V6 => "subnet6",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Global,
    Shared,
    Subnet,
}

#[derive(Clone, Copy, Debug)]
struct Triple {
    min: u32,
    def: u32,
    max: u32,
}

/// Parameters that may be set at several levels; `None` means "inherit".
#[derive(Clone, Default)]
struct Params {
    valid: Option<Triple>,
    preferred: Option<Triple>,
    renew: Option<u32>,
    rebind: Option<u32>,
    calc_tee: Option<bool>,
    t1: Option<f64>,
    t2: Option<f64>,
    match_client_id: Option<bool>,
    authoritative: Option<bool>,
    next_server: Option<Ipv4Addr>,
    server_hostname: Option<String>,
    boot_file_name: Option<String>,
    res_global: Option<bool>,
    res_in_subnet: Option<bool>,
    res_out_of_pool: Option<bool>,
    rapid_commit: Option<bool>,
    interface: Option<String>,
    relay: Option<Vec<IpAddr>>,
    interface_id: Option<Vec<u8>>,
    client_class: Option<String>,
    require_classes: Option<Vec<String>>,
    ha_server_name: Option<String>,
}

macro_rules! inherit {
    ($c:expr, $p:expr, $($f:ident),*) => { $( if $c.$f.is_none() { $c.$f = $p.$f.clone(); } )* };
}

impl Params {
    fn over(mut self, parent: &Params) -> Params {
        inherit!(
            self,
            parent,
            valid,
            preferred,
            renew,
            rebind,
            calc_tee,
            t1,
            t2,
            match_client_id,
            authoritative,
            next_server,
            server_hostname,
            boot_file_name,
            res_global,
            res_in_subnet,
            res_out_of_pool,
            rapid_commit,
            interface,
            relay,
            interface_id,
            client_class,
            require_classes,
            ha_server_name
        );
        self
    }
}

/// Kea's (min, default, max) triplet at one scope: a lone default fixes all three; a missing bound takes the
/// default; a missing default takes the bound(s).
fn read_triple(o: &mut Obj, ctx: &mut Ctx, name: &str) -> Option<Triple> {
    let min = o.u32(ctx, &format!("min-{name}"));
    let def = o.u32(ctx, name);
    let max = o.u32(ctx, &format!("max-{name}"));
    let t = match (min, def, max) {
        (None, None, None) => return None,
        (mn, Some(d), mx) => Triple {
            min: mn.unwrap_or(d),
            def: d,
            max: mx.unwrap_or(d),
        },
        (Some(mn), None, Some(mx)) => Triple {
            min: mn,
            def: mn + (mx.saturating_sub(mn)) / 2,
            max: mx,
        },
        (Some(mn), None, None) => Triple {
            min: mn,
            def: mn,
            max: mn,
        },
        (None, None, Some(mx)) => Triple {
            min: mx,
            def: mx,
            max: mx,
        },
    };
    if t.min > t.def || t.def > t.max {
        ctx.err(
            &o.p(name),
            format!(
                "min-{name} ({}) <= {name} ({}) <= max-{name} ({}) does not hold; fix the bounds",
                t.min, t.def, t.max
            ),
        );
    }
    Some(t)
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

fn read_params(o: &mut Obj, ctx: &mut Ctx, fam: Fam, level: Level) -> Params {
    let mut p = Params {
        valid: read_triple(o, ctx, "valid-lifetime"),
        renew: o.u32(ctx, "renew-timer"),
        rebind: o.u32(ctx, "rebind-timer"),
        calc_tee: o.bool(ctx, "calculate-tee-times"),
        t1: o.f64(ctx, "t1-percent"),
        t2: o.f64(ctx, "t2-percent"),
        ..Params::default()
    };
    for (k, v) in [("t1-percent", p.t1), ("t2-percent", p.t2)] {
        if let Some(v) = v {
            if !(v > 0.0 && v < 1.0) {
                ctx.err(
                    &o.p(k),
                    format!("{v} must be greater than 0 and less than 1"),
                );
            }
        }
    }
    if let (Some(a), Some(b)) = (p.t1, p.t2) {
        if a >= b {
            ctx.warn(
                &o.p("t1-percent"),
                format!("t1-percent ({a}) is not less than t2-percent ({b}): clients would renew no earlier than they rebind; Kea accepts this, but it is almost certainly a mistake"),
            );
        }
    }
    match fam {
        Fam::V4 => {
            p.match_client_id = o.bool(ctx, "match-client-id");
            p.authoritative = o.bool(ctx, "authoritative");
            if let Some(s) = o.str(ctx, "next-server") {
                match s.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_unspecified() => {}
                    Ok(a) => p.next_server = Some(a),
                    Err(_) => ctx.err(&o.p("next-server"), format!("'{s}' is not an IPv4 address")),
                }
            }
            p.server_hostname = o
                .str(ctx, "server-hostname")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            p.boot_file_name = o
                .str(ctx, "boot-file-name")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            if let Some(s) = &p.server_hostname {
                if s.len() > 63 {
                    ctx.err(
                        &o.p("server-hostname"),
                        "longer than the 64-byte sname field (63 characters max)",
                    );
                }
            }
            if let Some(s) = &p.boot_file_name {
                if s.len() > 127 {
                    ctx.err(
                        &o.p("boot-file-name"),
                        "longer than the 128-byte file field (127 characters max)",
                    );
                }
            }
        }
        Fam::V6 => {
            p.preferred = read_triple(o, ctx, "preferred-lifetime");
            if level != Level::Global {
                p.rapid_commit = o.bool(ctx, "rapid-commit");
            }
        }
    }
    p.res_global = o.bool(ctx, "reservations-global");
    p.res_in_subnet = o.bool(ctx, "reservations-in-subnet");
    p.res_out_of_pool = o.bool(ctx, "reservations-out-of-pool");
    if let Some(mode) = o.str(ctx, "reservation-mode") {
        let path = o.p("reservation-mode");
        if p.res_global.is_some() || p.res_in_subnet.is_some() || p.res_out_of_pool.is_some() {
            ctx.err(
                &path,
                "reservation-mode cannot be combined with reservations-global/-in-subnet/-out-of-pool at the same level; keep only the new flags",
            );
        }
        let flags = match mode {
            "all" => Some((false, true, false)),
            "out-of-pool" => Some((false, true, true)),
            "global" => Some((true, false, false)),
            "disabled" => Some((false, false, false)),
            _ => {
                ctx.err(
                    &path,
                    format!("'{mode}' is not one of all, out-of-pool, global, disabled"),
                );
                None
            }
        };
        if let Some((g, i, o2)) = flags {
            p.res_global = Some(g);
            p.res_in_subnet = Some(i);
            p.res_out_of_pool = Some(o2);
            ctx.warn(
                &path,
                format!("deprecated since Kea 1.9; read as reservations-global: {g}, reservations-in-subnet: {i}, reservations-out-of-pool: {o2}"),
            );
        }
    }
    if level != Level::Global {
        p.interface = o.str(ctx, "interface").map(str::to_string);
        if let Some(r) = o.obj(ctx, "relay", "the relay agent addresses") {
            p.relay = Some(read_relay(r, ctx, fam));
        }
        p.client_class = o.str(ctx, "client-class").map(str::to_string);
        let req: Vec<String> = o
            .str_list(ctx, "require-client-classes")
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect();
        if o.has("require-client-classes") {
            if fam == Fam::V6 && !req.is_empty() {
                ctx.err(
                    &o.p("require-client-classes"),
                    "not supported by xdhcp for DHCPv6 yet; use client-class or class tests",
                );
            }
            p.require_classes = Some(req);
        }
        if fam == Fam::V6 {
            if let Some(id) = o.str(ctx, "interface-id") {
                if id.is_empty() {
                    ctx.err(&o.p("interface-id"), "must not be empty");
                }
                p.interface_id = Some(id.as_bytes().to_vec());
            }
            if p.interface.is_some() && p.interface_id.is_some() {
                ctx.err(
                    &o.p("interface-id"),
                    "interface and interface-id are mutually exclusive (Kea rule): interface-id selects relayed traffic, interface direct traffic",
                );
            }
        }
        if let Some(Value::Object(uc)) = o.take("user-context") {
            match uc.get("ha-server-name") {
                Some(Value::String(s)) => p.ha_server_name = Some(s.clone()),
                Some(other) => ctx.err(
                    &format!("{}.user-context.ha-server-name", o.path),
                    format!(
                        "must be a string naming an HA peer, found {}",
                        type_name(other)
                    ),
                ),
                None => {}
            }
        }
    }
    p
}

fn read_relay(mut r: Obj, ctx: &mut Ctx, fam: Fam) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list = r.str_list(ctx, "ip-addresses");
    if let Some(one) = r.str(ctx, "ip-address") {
        if !list.is_empty() {
            ctx.err(
                &r.p("ip-address"),
                "ip-address and ip-addresses cannot both be given; use ip-addresses",
            );
        }
        list.push((r.p("ip-address"), one));
    }
    for (p, s) in list {
        match (parse_ip(s), fam) {
            (Some(a), _) if a.is_unspecified() => {}
            (Some(IpAddr::V4(a)), Fam::V4) => out.push(IpAddr::V4(a)),
            (Some(IpAddr::V6(a)), Fam::V6) => out.push(IpAddr::V6(a)),
            _ => ctx.err(
                &p,
                format!(
                    "'{s}' is not an IPv{} address",
                    if fam == Fam::V4 { 4 } else { 6 }
                ),
            ),
        }
    }
    r.finish(ctx);
    out
}

fn lifetimes(p: &Params, fam: Fam, ctx: &mut Ctx, path: &str) -> Lifetimes {
    let v = p.valid.unwrap_or(Triple {
        min: 7200,
        def: 7200,
        max: 7200,
    });
    let pr = match fam {
        Fam::V4 => Triple {
            min: 0,
            def: 0,
            max: 0,
        },
        Fam::V6 => p.preferred.unwrap_or(Triple {
            min: 3600,
            def: 3600,
            max: 3600,
        }),
    };
    if let (Some(r), Some(b)) = (p.renew, p.rebind) {
        if r > b {
            ctx.err(
                path,
                format!(
                    "renew-timer ({r}) is greater than rebind-timer ({b}); T1 must not exceed T2"
                ),
            );
        }
    }
    if let Some(b) = p.rebind {
        if b > v.def {
            ctx.warn(path, format!("rebind-timer ({b}) exceeds valid-lifetime ({}); clients will not rebind before expiry", v.def));
        }
    }
    if fam == Fam::V6 && pr.def > v.def {
        ctx.warn(
            path,
            format!(
                "preferred-lifetime ({}) exceeds valid-lifetime ({}); clients will see it capped",
                pr.def, v.def
            ),
        );
    }
    Lifetimes {
        valid: v.def,
        min_valid: v.min,
        max_valid: v.max,
        preferred: pr.def,
        min_preferred: pr.min,
        max_preferred: pr.max,
        renew_timer: p.renew,
        rebind_timer: p.rebind,
        calculate_tee_times: p.calc_tee.unwrap_or(fam == Fam::V6),
        t1_percent: p.t1.unwrap_or(0.5),
        t2_percent: p.t2.unwrap_or(if fam == Fam::V4 { 0.875 } else { 0.8 }),
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

struct RawOpt {
    space: String,
    code: u16,
    data: Vec<u8>,
    always_send: bool,
    path: String,
}

fn read_option_defs(
    ctx: &mut Ctx,
    list: Vec<(String, &Value)>,
    defs: &mut OptionDefs,
    allow_std_43: bool,
) {
    let top = defs.universe.top_space();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "an option definition") else {
            continue;
        };
        let name = o.str(ctx, "name");
        let code = o.int(
            ctx,
            "code",
            1,
            if defs.universe == Universe::V4 {
                254
            } else {
                65535
            },
        );
        let ty = o.str(ctx, "type");
        let space = o.str(ctx, "space").unwrap_or(top).to_string();
        let array = o.bool(ctx, "array").unwrap_or(false);
        let rec = o.str(ctx, "record-types").unwrap_or("");
        let encapsulate = o.str(ctx, "encapsulate").unwrap_or("").to_string();
        for k in ["name", "code", "type"] {
            if !o.has(k) {
                ctx.err(&p, format!("option definition needs '{k}'"));
            }
        }
        let tyv = ty.and_then(|t| {
            let d = DataType::from_kea(t);
            if d.is_none() {
                ctx.err(&o.p("type"), format!("'{t}' is not a Kea option type (binary, boolean, empty, fqdn, int8..uint32, ipv4-address, ipv6-address, ipv6-prefix, psid, record, string, tuple)"));
            }
            d
        });
        let mut record = Vec::new();
        if tyv == Some(DataType::Record) {
            for t in rec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match DataType::from_kea(t) {
                    Some(DataType::Record) | Some(DataType::Empty) | None => ctx.err(
                        &o.p("record-types"),
                        format!("'{t}' cannot be a record field type"),
                    ),
                    Some(d) => record.push(d),
                }
            }
            if record.is_empty() {
                ctx.err(
                    &o.p("record-types"),
                    "a record option needs record-types, e.g. \"uint8, ipv4-address\"",
                );
            }
        } else if !rec.trim().is_empty() {
            ctx.err(
                &o.p("record-types"),
                "record-types is only valid with type record",
            );
        }
        if tyv == Some(DataType::Empty) && array {
            ctx.err(&o.p("array"), "an empty option cannot be an array");
        }
        o.finish(ctx);
        let (Some(name), Some(code), Some(ty)) = (name, code, tyv) else {
            continue;
        };
        let code = code as u16;
        if space == top && defs.is_standard(&space, code, name) && !(allow_std_43 && code == 43) {
            ctx.err(&p, format!("option '{name}' (code {code}) is a standard {top} option; it cannot be redefined. Use another code or a custom space"));
            continue;
        }
        defs.add(OptionDef {
            name: name.to_string(),
            code,
            space,
            ty,
            array,
            record,
            encapsulate,
        });
    }
}

fn read_options(ctx: &mut Ctx, list: Vec<(String, &Value)>, defs: &OptionDefs) -> OptionSet {
    let u = defs.universe;
    let top = u.top_space();
    let mut raw: Vec<RawOpt> = Vec::new();
    let mut entries: Vec<(&OptionDef, String)> = Vec::new();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "an option value") else {
            continue;
        };
        let name = o.str(ctx, "name");
        let code = o.int(ctx, "code", 0, if u == Universe::V4 { 255 } else { 65535 });
        let space = o.str(ctx, "space").unwrap_or(top).to_string();
        let data = o.str(ctx, "data");
        let csv = o.bool(ctx, "csv-format");
        let always_send = o.bool(ctx, "always-send").unwrap_or(false);
        o.finish(ctx);
        if !defs.space_known(&space) {
            ctx.err(
                &format!("{p}.space"),
                format!("option space '{space}' is not defined (define it with option-def)"),
            );
            continue;
        }
        let def = match (name, code) {
            (Some(n), c) => match defs.by_name(&space, n) {
                Some(d) => {
                    if let Some(c) = c {
                        if c as u16 != d.code {
                            ctx.err(
                                &format!("{p}.code"),
                                format!(
                                    "option '{n}' has code {} in space {space}, not {c}",
                                    d.code
                                ),
                            );
                            continue;
                        }
                    }
                    Some(d)
                }
                None => {
                    ctx.err(&format!("{p}.name"), format!("unknown option name '{n}' in space {space}; check the spelling or add an option-def"));
                    continue;
                }
            },
            (None, Some(c)) => defs.by_code(&space, c as u16),
            (None, None) => {
                ctx.err(&p, "an option needs a 'name' or a 'code'");
                continue;
            }
        };
        if u == Universe::V4 && (code == Some(0) || code == Some(255)) && def.is_none() {
            ctx.err(
                &format!("{p}.code"),
                "codes 0 (pad) and 255 (end) are not options",
            );
            continue;
        }
        let data_s = data.unwrap_or("");
        let (bytes, code) = match def {
            Some(d) => {
                if data.is_none()
                    && !matches!(d.ty, DataType::Empty | DataType::Binary)
                    && d.encapsulate.is_empty()
                    && d.code != 125
                {
                    ctx.err(&p, format!("option '{}' needs 'data'", d.name));
                    continue;
                }
                let (bytes, notes) = if data.is_none()
                    && (d.ty == DataType::Empty || !d.encapsulate.is_empty())
                {
                    (Vec::new(), options::EncodeNotes::default())
                } else {
                    match options::encode_data(d, data_s, csv.unwrap_or(true), u) {
                        Ok(x) => x,
                        Err(e) => {
                            ctx.err(
                                &format!("{p}.data"),
                                format!("bad data for option '{}' (code {}): {e}", d.name, d.code),
                            );
                            continue;
                        }
                    }
                };
                if notes.dropped_values > 0 {
                    ctx.warn(&format!("{p}.data"), format!("option '{}' takes one value; {} extra comma-separated value(s) are dropped, as Kea does (escape a literal comma as \\\\,)", d.name, notes.dropped_values));
                }
                entries.push((d, p.clone()));
                (bytes, d.code)
            }
            None => {
                let c = code.unwrap_or(0) as u16;
                if csv != Some(false) {
                    ctx.err(&p, format!("option code {c} in space {space} has no definition: give data as hex with \"csv-format\": false, or add an option-def"));
                    continue;
                }
                match options::parse_hex(data_s) {
                    Ok(b) => (b, c),
                    Err(e) => {
                        ctx.err(&format!("{p}.data"), e);
                        continue;
                    }
                }
            }
        };
        if u == Universe::V4 && bytes.len() > 255 && space != top {
            ctx.err(
                &format!("{p}.data"),
                "sub-option data longer than 255 bytes",
            );
        }
        raw.push(RawOpt {
            space,
            code,
            data: bytes,
            always_send,
            path: p,
        });
    }
    build_set(ctx, raw, defs, &entries)
}

fn sub_header(u: Universe, code: u16, len: usize, out: &mut Vec<u8>) {
    match u {
        Universe::V4 => {
            out.push(code as u8);
            out.push(len.min(255) as u8);
        }
        Universe::V6 => {
            out.extend(code.to_be_bytes());
            out.extend((len as u16).to_be_bytes());
        }
    }
}

fn encapsulated(raw: &[RawOpt], space: &str, u: Universe, used: &mut [bool]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        if r.space == space {
            used[i] = true;
            sub_header(u, r.code, r.data.len(), &mut out);
            out.extend_from_slice(&r.data);
        }
    }
    out
}

fn build_set(
    ctx: &mut Ctx,
    raw: Vec<RawOpt>,
    defs: &OptionDefs,
    _entries: &[(&OptionDef, String)],
) -> OptionSet {
    let u = defs.universe;
    let top = u.top_space();
    let mut used = vec![false; raw.len()];
    let mut set = OptionSet::default();
    for i in 0..raw.len() {
        if raw[i].space != top {
            continue;
        }
        used[i] = true;
        let r = &raw[i];
        let mut data = r.data.clone();
        let vendor = (u == Universe::V4 && r.code == 125) || (u == Universe::V6 && r.code == 17);
        if vendor && data.len() >= 4 {
            let ent = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let subs = encapsulated(&raw, &format!("vendor-{ent}"), u, &mut used);
            if u == Universe::V4 {
                if subs.len() > 255 {
                    ctx.err(&r.path, "vendor sub-options longer than 255 bytes");
                }
                data.push(subs.len().min(255) as u8);
            }
            data.extend(subs);
        } else if let Some(def) = defs.by_code(top, r.code) {
            if !def.encapsulate.is_empty() {
                let subs = encapsulated(&raw, &def.encapsulate, u, &mut used);
                data.extend(subs);
            }
        }
        // Later definitions at the same scope replace earlier ones, as in Kea.
        set.options.retain(|o| o.code != r.code);
        set.options.push(OptionValue {
            code: r.code,
            data,
            always_send: r.always_send,
        });
    }
    // Vendor spaces without their carrier option: add the carrier, since that is the only way to send them.
    let mut orphan_vendor: Vec<u32> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        if !used[i] {
            if let Some(ent) = r
                .space
                .strip_prefix("vendor-")
                .and_then(|e| e.parse::<u32>().ok())
            {
                if !orphan_vendor.contains(&ent) {
                    orphan_vendor.push(ent);
                }
            }
        }
    }
    for ent in orphan_vendor {
        let subs = encapsulated(&raw, &format!("vendor-{ent}"), u, &mut used);
        let mut data = ent.to_be_bytes().to_vec();
        if u == Universe::V4 {
            data.push(subs.len().min(255) as u8);
        }
        data.extend(subs);
        set.options.push(OptionValue {
            code: if u == Universe::V4 { 125 } else { 17 },
            data,
            always_send: false,
        });
    }
    for (i, r) in raw.iter().enumerate() {
        if !used[i] {
            ctx.warn(
                &r.path,
                format!(
                    "option {} in space '{}' is never sent: no option at this level encapsulates that space (Kea behaves the same)",
                    r.code, r.space
                ),
            );
        }
    }
    set
}

// ---------------------------------------------------------------------------------------------
// Identifiers, addresses, pools
// ---------------------------------------------------------------------------------------------

fn parse_identifier_value(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        let inner = &t[1..t.len() - 1];
        if inner.is_empty() {
            return Err("empty quoted identifier".into());
        }
        return Ok(inner.as_bytes().to_vec());
    }
    let b = options::parse_hex(t)?;
    if b.is_empty() {
        return Err("empty identifier".into());
    }
    Ok(b)
}

fn read_identifier(o: &mut Obj, ctx: &mut Ctx, allowed: &[&str]) -> Option<HostIdentifier> {
    let mut found: Vec<(&str, HostIdentifier)> = Vec::new();
    for k in ["hw-address", "client-id", "duid", "circuit-id", "flex-id"] {
        if !o.has(k) {
            continue;
        }
        if !allowed.contains(&k) {
            // Left for finish() to report as unknown.
            continue;
        }
        let Some(s) = o.str(ctx, k) else { continue };
        match parse_identifier_value(s) {
            Ok(b) => {
                let id = match k {
                    "hw-address" => {
                        if b.len() > 20 {
                            ctx.err(&o.p(k), "a hardware address is at most 20 bytes");
                        }
                        HostIdentifier::HwAddress(b)
                    }
                    "client-id" => HostIdentifier::ClientId(b),
                    "duid" => HostIdentifier::Duid(b),
                    "circuit-id" => HostIdentifier::CircuitId(b),
                    _ => HostIdentifier::FlexId(b),
                };
                found.push((k, id));
            }
            Err(e) => ctx.err(&o.p(k), format!("bad identifier '{s}': {e}")),
        }
    }
    match found.len() {
        0 => {
            if !allowed.iter().any(|k| o.has(k)) {
                ctx.err(
                    &o.path,
                    format!(
                        "a reservation needs exactly one identifier: one of {}",
                        allowed.join(", ")
                    ),
                );
            }
            None
        }
        1 => found.pop().map(|f| f.1),
        _ => {
            ctx.err(
                &o.path,
                format!(
                    "a reservation takes exactly one identifier, found {}",
                    found.iter().map(|f| f.0).collect::<Vec<_>>().join(" and ")
                ),
            );
            None
        }
    }
}

/// Parses an address of the family as an integer (IPv4 in the low 32 bits).
fn family_ip(fam: Fam, s: &str) -> Result<u128, String> {
    let s = s.trim();
    match fam {
        Fam::V4 => s
            .parse::<Ipv4Addr>()
            .map(|a| u32::from(a) as u128)
            .map_err(|_| format!("'{s}' is not an IPv4 address")),
        Fam::V6 => s
            .parse::<Ipv6Addr>()
            .map(u128::from)
            .map_err(|_| format!("'{s}' is not an IPv6 address")),
    }
}

/// A prefix/length of the family, as an integer (IPv4 in the low 32 bits) and a length.
fn family_cidr(fam: Fam, s: &str) -> Result<(u128, u8), String> {
    let (a, l) = s.split_once('/').ok_or_else(|| {
        format!("'{s}' is not a prefix/length such as 192.0.2.0/24 or 2001:db8::/64")
    })?;
    let a = family_ip(fam, a)?;
    let bits = match fam {
        Fam::V4 => 32,
        Fam::V6 => 128,
    };
    let l: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|l| *l <= bits)
        .ok_or_else(|| format!("'{}' is not a prefix length (0..{bits})", l.trim()))?;
    Ok((a, l))
}

/// A pool's `first - last` or `prefix/len` in its family, as integers.
fn family_range(fam: Fam, s: &str) -> Result<(u128, u128), String> {
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (family_ip(fam, a)?, family_ip(fam, b)?);
        if a > b {
            let (a, b) = (family_addr(fam, a), family_addr(fam, b));
            return Err(format!("the pool starts at {a} which is after its end {b}"));
        }
        return Ok((a, b));
    }
    if !s.contains('/') {
        return Err(format!(
            "'{s}' is neither 'first - last' nor a prefix/length"
        ));
    }
    let (n, l) = family_cidr(fam, s)?;
    let m = family_mask(fam, l);
    let all = match fam {
        Fam::V4 => u32::MAX as u128,
        Fam::V6 => u128::MAX,
    };
    Ok((n & m, (n & m) | (!m & all)))
}

fn v6_cidr(s: &str) -> Result<(Ipv6Addr, u8), String> {
    family_cidr(Fam::V6, s).map(|(a, l)| (Ipv6Addr::from(a), l))
}

fn mask6(l: u8) -> u128 {
    if l == 0 {
        0
    } else {
        u128::MAX << (128 - l)
    }
}

/// Overlap check over every pool of a family: (first, last, path).
fn check_overlaps(ctx: &mut Ctx, mut ranges: Vec<(u128, u128, String)>, what: &str) {
    ranges.sort_by_key(|r| (r.0, r.1));
    for w in ranges.windows(2) {
        if w[1].0 <= w[0].1 {
            ctx.err(
                &w[1].2,
                format!(
                    "this {what} overlaps the one at {}; pools must not share addresses",
                    w[0].2
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client classes
// ---------------------------------------------------------------------------------------------

const BUILTIN_CLASSES: &[&str] = &["ALL", "KNOWN", "UNKNOWN", "BOOTP", "DROP"];
const BUILTIN_PREFIXES: &[&str] = &["VENDOR_CLASS_", "HA_", "AFTER_", "EXTERNAL_"];

fn is_builtin_class(n: &str) -> bool {
    BUILTIN_CLASSES.contains(&n) || BUILTIN_PREFIXES.iter().any(|p| n.starts_with(p))
}

fn collect_members(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Member(n) => out.push(n.clone()),
        Expr::Substring(a, _, _) | Expr::HexString(a, _) | Expr::Not(a) => collect_members(a, out),
        Expr::Concat(a, b) | Expr::Equal(a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            collect_members(a, out);
            collect_members(b, out);
        }
        Expr::Ifelse(a, b, c) => {
            collect_members(a, out);
            collect_members(b, out);
            collect_members(c, out);
        }
        _ => {}
    }
}

fn read_classes(
    ctx: &mut Ctx,
    list: Vec<(String, &Value)>,
    defs: &OptionDefs,
    fam: Fam,
) -> Vec<ClientClass> {
    let mut out: Vec<ClientClass> = Vec::new();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "a client class") else {
            continue;
        };
        let name = o.str(ctx, "name").map(str::to_string);
        let test = o.str(ctx, "test").map(|t| (t, o.p("test")));
        let only_if_required = o.bool(ctx, "only-if-required").unwrap_or(false);
        let mut local_defs = defs.clone();
        if fam == Fam::V4 {
            let d = o.list(ctx, "option-def");
            read_option_defs(ctx, d, &mut local_defs, true);
        }
        let ol = o.list(ctx, "option-data");
        let options = read_options(ctx, ol, &local_defs);
        let mut params = Params::default();
        if fam == Fam::V4 {
            if let Some(s) = o.str(ctx, "next-server") {
                match s.parse::<Ipv4Addr>() {
                    Ok(a) if !a.is_unspecified() => params.next_server = Some(a),
                    Ok(_) => {}
                    Err(_) => ctx.err(&o.p("next-server"), format!("'{s}' is not an IPv4 address")),
                }
            }
            params.server_hostname = o
                .str(ctx, "server-hostname")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            params.boot_file_name = o
                .str(ctx, "boot-file-name")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
        let valid = read_triple(&mut o, ctx, "valid-lifetime");
        if fam == Fam::V6 && read_triple(&mut o, ctx, "preferred-lifetime").is_some() {
            ctx.warn(
                &o.p("preferred-lifetime"),
                "class preferred-lifetime is not applied by xdhcp yet; the subnet's value is used",
            );
        }
        o.finish(ctx);
        let Some(name) = name else {
            ctx.err(&p, "a client class needs a 'name'");
            continue;
        };
        if out.iter().any(|c| c.name == name) {
            ctx.err(
                &format!("{p}.name"),
                format!("client class '{name}' is defined twice"),
            );
            continue;
        }
        let test = match test {
            None => None,
            Some((t, tp)) => match crate::classify::parse(t, defs) {
                Ok(e) => {
                    let mut m = Vec::new();
                    collect_members(&e, &mut m);
                    for n in m {
                        if !is_builtin_class(&n) && !out.iter().any(|c| c.name == n) {
                            ctx.err(&tp, format!("member('{n}') refers to a class that is not defined before '{name}'"));
                        }
                    }
                    Some(e)
                }
                Err(e) => {
                    ctx.err(&tp, format!("cannot parse the class test \"{t}\": {e}"));
                    None
                }
            },
        };
        out.push(ClientClass {
            name,
            test,
            only_if_required,
            options,
            next_server: params.next_server,
            server_hostname: params.server_hostname,
            boot_file_name: params.boot_file_name,
            valid_lifetime: valid.map(|t| t.def),
        });
    }
    out
}

fn check_class_ref(ctx: &mut Ctx, path: &str, name: &str, classes: &[ClientClass]) {
    if !is_builtin_class(name) && !classes.iter().any(|c| c.name == name) {
        ctx.warn(path, format!("client class '{name}' is not defined in client-classes; only packets assigned it otherwise (e.g. by a reservation) will match"));
    }
}

// ---------------------------------------------------------------------------------------------
// Shared global pieces
// ---------------------------------------------------------------------------------------------

fn read_interfaces(ctx: &mut Ctx, o: Option<Obj>, fam: Fam) -> (Vec<InterfaceSpec>, SocketType) {
    let Some(mut o) = o else {
        ctx.warn(if fam == Fam::V4 { "Dhcp4" } else { "Dhcp6" }, format!("no interfaces-config: xdhcp serves no interface (it never serves a wildcard); add \"interfaces-config\": {{\"interfaces\": [\"eth1\"]}} to Dhcp{}", if fam == Fam::V4 { 4 } else { 6 }));
        return (Vec::new(), SocketType::Raw);
    };
    let mut out: Vec<InterfaceSpec> = Vec::new();
    for (p, s) in o.str_list(ctx, "interfaces") {
        if s == "*" || s.starts_with("*/") {
            ctx.err(&p, "\"*\" (all interfaces) is refused: xdhcp only serves interfaces named explicitly, so it never answers on a network it was not meant for. List the interfaces, e.g. [\"eth1\", \"eth2\"]");
            continue;
        }
        let (name, addr) = match s.split_once('/') {
            Some((n, a)) => match (parse_ip(a), fam) {
                (Some(ip @ IpAddr::V4(_)), Fam::V4) | (Some(ip @ IpAddr::V6(_)), Fam::V6) => {
                    (n, Some(ip))
                }
                _ => {
                    ctx.err(
                        &p,
                        format!(
                            "'{a}' after the '/' is not an IPv{} address",
                            if fam == Fam::V4 { 4 } else { 6 }
                        ),
                    );
                    continue;
                }
            },
            None => (s, None),
        };
        if name.is_empty() || name.len() > 15 || name.contains(char::is_whitespace) {
            ctx.err(
                &p,
                format!("'{name}' is not a valid interface name (1 to 15 characters, no spaces)"),
            );
            continue;
        }
        if out.iter().any(|i| i.name == name && i.address == addr) {
            ctx.warn(&p, format!("interface '{s}' is listed twice"));
            continue;
        }
        out.push(InterfaceSpec {
            name: name.to_string(),
            address: addr,
        });
    }
    let mut socket = SocketType::Raw;
    if fam == Fam::V4 {
        if let Some(t) = o.str(ctx, "dhcp-socket-type") {
            socket = match t {
                "raw" => SocketType::Raw,
                "udp" => SocketType::Udp,
                _ => {
                    ctx.err(&o.p("dhcp-socket-type"), format!("'{t}' is not raw or udp"));
                    SocketType::Raw
                }
            };
        }
    }
    if out.is_empty() && !o.has("interfaces") {
        ctx.warn(
            &o.path,
            "no interfaces listed: xdhcp will not serve any traffic",
        );
    }
    o.finish(ctx);
    (out, socket)
}

fn read_lease_db(ctx: &mut Ctx, o: Option<Obj>, fsync: FsyncPolicy) -> LeaseDatabase {
    let mut db = LeaseDatabase {
        persist: true,
        path: None,
        lfc_interval_secs: 3600,
        fsync,
    };
    let Some(mut o) = o else { return db };
    match o.str(ctx, "type") {
        Some("memfile") => {}
        Some(t) => {
            ctx.err(&o.p("type"), format!("lease database type '{t}' is not supported: xdhcp keeps leases in memory with its own journal; use \"type\": \"memfile\" (leases can be migrated with the memfile CSV import)"));
            // Do not report the database's connection parameters one by one.
            return db;
        }
        None => ctx.err(&o.path, "needs \"type\": \"memfile\""),
    }
    if let Some(p) = o.bool(ctx, "persist") {
        db.persist = p;
    }
    if let Some(n) = o.str(ctx, "name") {
        if n.is_empty() {
            ctx.err(&o.p("name"), "must not be empty");
        }
        db.path = Some(PathBuf::from(n));
    }
    if let Some(i) = o.u32(ctx, "lfc-interval") {
        db.lfc_interval_secs = i;
    }
    // Kea accepts the SQL connection parameters with any type; with memfile they do nothing.
    for k in [
        "host",
        "port",
        "user",
        "password",
        "connect-timeout",
        "max-reconnect-tries",
        "reconnect-wait-time",
        "on-fail",
        "readonly",
        "trust-anchor",
        "cert-file",
        "key-file",
        "cipher-list",
    ] {
        if o.take(k).is_some() {
            ctx.warn(&o.p(k), "ignored: a parameter of SQL lease databases; memfile (xdhcp's journal) does not use it");
        }
    }
    o.finish(ctx);
    db
}

fn read_expired(ctx: &mut Ctx, o: Option<Obj>) -> ExpiredLeasesProcessing {
    let mut e = ExpiredLeasesProcessing {
        reclaim_timer_wait_time_secs: 10,
        flush_reclaimed_timer_wait_time_secs: 25,
        hold_reclaimed_time_secs: 3600,
        max_reclaim_leases: 100,
        max_reclaim_time_ms: 250,
        unwarned_reclaim_cycles: 5,
    };
    let Some(mut o) = o else { return e };
    if let Some(v) = o.int(ctx, "reclaim-timer-wait-time", 1, i32::MAX as i64) {
        e.reclaim_timer_wait_time_secs = v as u32;
    }
    if let Some(v) = o.u32(ctx, "flush-reclaimed-timer-wait-time") {
        e.flush_reclaimed_timer_wait_time_secs = v;
    }
    if let Some(v) = o.u32(ctx, "hold-reclaimed-time") {
        e.hold_reclaimed_time_secs = v;
    }
    if let Some(v) = o.u32(ctx, "max-reclaim-leases") {
        e.max_reclaim_leases = v;
    }
    if let Some(v) = o.u32(ctx, "max-reclaim-time") {
        e.max_reclaim_time_ms = v;
    }
    if let Some(v) = o.u32(ctx, "unwarned-reclaim-cycles") {
        e.unwarned_reclaim_cycles = v;
    }
    o.finish(ctx);
    e
}

fn read_control_socket(ctx: &mut Ctx, o: Option<Obj>) -> Option<ControlSocket> {
    let mut o = o?;
    let t = o.str(ctx, "socket-type");
    let n = o.str(ctx, "socket-name");
    let path = o.path.clone();
    o.finish(ctx);
    if let Some(t) = t {
        if t != "unix" {
            ctx.err(
                &format!("{path}.socket-type"),
                format!("'{t}' is not supported; use \"unix\""),
            );
        }
    }
    match (t, n) {
        (Some(t), Some(n)) if !n.is_empty() => Some(ControlSocket {
            socket_type: t.to_string(),
            socket_name: PathBuf::from(n),
        }),
        _ => {
            ctx.err(
                &path,
                "needs \"socket-type\": \"unix\" and a non-empty \"socket-name\"",
            );
            None
        }
    }
}

fn read_loggers(ctx: &mut Ctx, list: Vec<(String, &Value)>) -> Vec<Logger> {
    let mut out = Vec::new();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "a logger") else {
            continue;
        };
        let name = o.str(ctx, "name").unwrap_or("").to_string();
        let severity = o.str(ctx, "severity").unwrap_or("INFO").to_string();
        if !["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "NONE"].contains(&severity.as_str()) {
            ctx.err(
                &o.p("severity"),
                format!("'{severity}' is not one of FATAL, ERROR, WARN, INFO, DEBUG, NONE"),
            );
        }
        let debuglevel = o.int(ctx, "debuglevel", 0, 99).unwrap_or(0) as u32;
        let mut outputs = Vec::new();
        let key = if o.has("output-options") {
            "output-options"
        } else {
            "output_options"
        };
        for (op, ov) in o.list(ctx, key) {
            let Some(mut oo) = Obj::new(ctx, ov, &op, "a log output") else {
                continue;
            };
            if let Some(s) = oo.str(ctx, "output") {
                outputs.push(s.to_string());
            }
            oo.bool(ctx, "flush");
            oo.u32(ctx, "maxsize");
            oo.u32(ctx, "maxver");
            oo.str(ctx, "pattern");
            oo.finish(ctx);
        }
        o.finish(ctx);
        if name.is_empty() {
            ctx.err(&p, "a logger needs a 'name'");
            continue;
        }
        out.push(Logger {
            name,
            severity,
            debuglevel,
            outputs,
        });
    }
    out
}

fn read_multi_threading(ctx: &mut Ctx, o: Option<Obj>) {
    if let Some(mut o) = o {
        o.bool(ctx, "enable-multi-threading");
        o.u32(ctx, "thread-pool-size");
        o.u32(ctx, "packet-queue-size");
        o.finish(ctx);
    }
}

/// `user-context.xdhcp` at the top of a section: settings Kea has no key for.
fn read_tuning(ctx: &mut Ctx, uc: Option<&Value>, path: &str) -> (Tuning, FsyncPolicy) {
    let mut t = Tuning {
        offer_hold_secs: 30,
        workers: 0,
        backend: Backend::Socket,
        ring_size: 2048,
        frame_count: 8192,
        journal_queue: 65536,
        replication: Replication::Asynchronous,
        sync_ack_timeout_ms: 2000,
        parked_packet_limit: 256,
        idle_spin_us: crate::model::DEFAULT_IDLE_SPIN_US,
        prefault_tables: true,
    };
    let mut fsync = FsyncPolicy::IntervalMs(crate::model::DEFAULT_JOURNAL_FSYNC_MS);
    let Some(Value::Object(m)) = uc else {
        return (t, fsync);
    };
    let Some(x) = m.get("xdhcp") else {
        return (t, fsync);
    };
    let xp = format!("{path}.user-context.xdhcp");
    let Some(mut o) = Obj::new(ctx, x, &xp, "xdhcp's own settings") else {
        return (t, fsync);
    };
    if let Some(v) = o.int(ctx, "offer-hold-secs", 1, 3600) {
        t.offer_hold_secs = v as u32;
    }
    if let Some(v) = o.int(ctx, "workers", 0, 1024) {
        t.workers = v as u32;
    }
    if let Some(b) = o.str(ctx, "backend") {
        t.backend = match b {
            "socket" => Backend::Socket,
            "xdp" => Backend::Xdp,
            _ => {
                ctx.err(&o.p("backend"), format!("'{b}' is not socket or xdp"));
                Backend::Socket
            }
        };
    }
    for (k, dst) in [
        ("ring-size", &mut t.ring_size),
        ("frame-count", &mut t.frame_count),
    ] {
        if let Some(v) = o.int(ctx, k, 64, 1 << 20) {
            if (v as u32).is_power_of_two() {
                *dst = v as u32;
            } else {
                ctx.err(&o.p(k), format!("{v} must be a power of two"));
            }
        }
    }
    if let Some(v) = o.int(ctx, "journal-queue", 64, 1 << 24) {
        t.journal_queue = v as u32;
    }
    if let Some(r) = o.str(ctx, "replication") {
        t.replication = match r {
            "asynchronous" => Replication::Asynchronous,
            "synchronous" => Replication::Synchronous,
            _ => {
                ctx.err(
                    &o.p("replication"),
                    format!("'{r}' is not \"synchronous\" or \"asynchronous\""),
                );
                Replication::Asynchronous
            }
        };
    }
    if let Some(v) = o.bool(ctx, "prefault-tables") {
        t.prefault_tables = v;
    }
    if let Some(v) = o.int(ctx, "idle-spin-us", 0, 1_000_000) {
        t.idle_spin_us = v as u32;
    }
    if let Some(v) = o.int(ctx, "sync-ack-timeout-ms", 10, 60_000) {
        t.sync_ack_timeout_ms = v as u32;
    }
    if let Some(v) = o.take("journal-fsync") {
        match v {
            Value::String(s) if s == "never" => fsync = FsyncPolicy::Never,
            Value::String(s) if s == "every-batch" => fsync = FsyncPolicy::EveryBatch,
            Value::Number(n) if n.as_u64().is_some_and(|n| n > 0 && n <= 60_000) => {
                fsync = FsyncPolicy::IntervalMs(n.as_u64().unwrap_or(0) as u32)
            }
            _ => ctx.err(
                &o.p("journal-fsync"),
                "must be \"never\", \"every-batch\" or an interval in milliseconds (1..60000)",
            ),
        }
    }
    // The AF_XDP backend keeps a fill ring and a TX ring of ring-size frames each in flight.
    if u64::from(t.frame_count) < 2 * u64::from(t.ring_size) {
        ctx.err(
            &o.p("frame-count"),
            format!(
                "frame-count ({}) must be at least twice ring-size ({}): the AF_XDP backend keeps a full fill ring and a full TX ring of frames",
                t.frame_count, t.ring_size
            ),
        );
    }
    o.finish(ctx);
    (t, fsync)
}

fn read_host_ids(ctx: &mut Ctx, o: &mut Obj, fam: Fam) -> Vec<String> {
    let allowed: &[&str] = match fam {
        Fam::V4 => &["hw-address", "duid", "circuit-id", "client-id", "flex-id"],
        Fam::V6 => &["hw-address", "duid", "flex-id"],
    };
    let mut out = Vec::new();
    if !o.has("host-reservation-identifiers") {
        return allowed.iter().map(|s| s.to_string()).collect();
    }
    for (p, s) in o.str_list(ctx, "host-reservation-identifiers") {
        if allowed.contains(&s) {
            out.push(s.to_string());
        } else {
            ctx.err(&p, format!("'{s}' is not one of {}", allowed.join(", ")));
        }
    }
    out
}

fn id_kind(id: &HostIdentifier) -> &'static str {
    match id {
        HostIdentifier::HwAddress(_) => "hw-address",
        HostIdentifier::ClientId(_) => "client-id",
        HostIdentifier::Duid(_) => "duid",
        HostIdentifier::CircuitId(_) => "circuit-id",
        HostIdentifier::FlexId(_) => "flex-id",
    }
}

// ---------------------------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------------------------

struct ResCtx<'a> {
    defs: &'a OptionDefs,
    host_ids: &'a [String],
    ip_unique: bool,
}

fn read_res4(
    ctx: &mut Ctx,
    list: Vec<(String, &Value)>,
    rc: &ResCtx,
    subnet: Option<&Subnet4>,
) -> Vec<Reservation4> {
    let mut out: Vec<Reservation4> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    // Indexes, not scans: an ISP configuration can hold hundreds of thousands of reservations.
    let mut by_id: HashMap<HostIdentifier, usize> = HashMap::new();
    let mut by_ip: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "a host reservation") else {
            continue;
        };
        let id = read_identifier(
            &mut o,
            ctx,
            &["hw-address", "client-id", "duid", "circuit-id", "flex-id"],
        );
        let ip = o
            .str(ctx, "ip-address")
            .and_then(|s| match s.parse::<Ipv4Addr>() {
                Ok(a) if a.is_unspecified() => None,
                Ok(a) => Some(a),
                Err(_) => {
                    ctx.err(&o.p("ip-address"), format!("'{s}' is not an IPv4 address"));
                    None
                }
            });
        let hostname = o
            .str(ctx, "hostname")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ol = o.list(ctx, "option-data");
        let options = read_options(ctx, ol, rc.defs);
        let classes: Vec<String> = o
            .str_list(ctx, "client-classes")
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect();
        let mut prm = Params::default();
        if let Some(s) = o.str(ctx, "next-server") {
            match s.parse::<Ipv4Addr>() {
                Ok(a) if !a.is_unspecified() => prm.next_server = Some(a),
                Ok(_) => {}
                Err(_) => ctx.err(&o.p("next-server"), format!("'{s}' is not an IPv4 address")),
            }
        }
        let server_hostname = o
            .str(ctx, "server-hostname")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let boot_file_name = o
            .str(ctx, "boot-file-name")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        o.finish(ctx);
        let Some(id) = id else { continue };
        if !rc.host_ids.iter().any(|k| k == id_kind(&id)) {
            ctx.warn(&p, format!("identified by {} which is not in host-reservation-identifiers: this reservation never matches", id_kind(&id)));
        }
        if let (Some(a), Some(s)) = (ip, subnet) {
            if !s.contains(a) {
                ctx.err(
                    &format!("{p}.ip-address"),
                    format!("{a} is outside the subnet {}/{}", s.network, s.prefix_len),
                );
            }
        }
        if let Some(&i) = by_id.get(&id) {
            ctx.err(
                &p,
                format!(
                    "duplicate reservation: the same {} is reserved at {}",
                    id_kind(&id),
                    paths[i]
                ),
            );
            continue;
        }
        if let Some(a) = ip {
            if rc.ip_unique {
                if let Some(&i) = by_ip.get(&a) {
                    ctx.err(&format!("{p}.ip-address"), format!("{a} is already reserved at {} (set ip-reservations-unique: false to allow it)", paths[i]));
                    continue;
                }
            }
        }
        by_id.insert(id.clone(), out.len());
        if let Some(a) = ip {
            by_ip.insert(a, out.len());
        }
        paths.push(p);
        out.push(Reservation4 {
            identifier: id,
            ip_address: ip,
            hostname,
            options,
            client_classes: classes,
            next_server: prm.next_server,
            server_hostname,
            boot_file_name,
        });
    }
    out
}

fn read_res6(
    ctx: &mut Ctx,
    list: Vec<(String, &Value)>,
    rc: &ResCtx,
    subnet: Option<(Ipv6Addr, u8)>,
) -> Vec<Reservation6> {
    let mut out: Vec<Reservation6> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut by_id: HashMap<HostIdentifier, usize> = HashMap::new();
    let mut by_ip: HashMap<Ipv6Addr, usize> = HashMap::new();
    for (p, v) in list {
        let Some(mut o) = Obj::new(ctx, v, &p, "a host reservation") else {
            continue;
        };
        let id = read_identifier(&mut o, ctx, &["duid", "hw-address", "flex-id"]);
        let mut addrs = Vec::new();
        for (ap, s) in o.str_list(ctx, "ip-addresses") {
            match s.parse::<Ipv6Addr>() {
                Ok(a) => {
                    if let Some((n, l)) = subnet {
                        if u128::from(a) & mask6(l) != u128::from(n) & mask6(l) {
                            ctx.err(&ap, format!("{a} is outside the subnet {n}/{l}"));
                        }
                    }
                    addrs.push(a)
                }
                Err(_) => ctx.err(&ap, format!("'{s}' is not an IPv6 address")),
            }
        }
        let mut prefixes = Vec::new();
        for (pp, s) in o.str_list(ctx, "prefixes") {
            match v6_cidr(s) {
                Ok((a, l)) if u128::from(a) & !mask6(l) == 0 => prefixes.push((a, l)),
                Ok((a, l)) => ctx.err(
                    &pp,
                    format!("{a}/{l} has bits set beyond the prefix length"),
                ),
                Err(e) => ctx.err(&pp, e),
            }
        }
        let hostname = o
            .str(ctx, "hostname")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ol = o.list(ctx, "option-data");
        let options = read_options(ctx, ol, rc.defs);
        let classes: Vec<String> = o
            .str_list(ctx, "client-classes")
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect();
        o.finish(ctx);
        let Some(id) = id else { continue };
        if !rc.host_ids.iter().any(|k| k == id_kind(&id)) {
            ctx.warn(&p, format!("identified by {} which is not in host-reservation-identifiers: this reservation never matches", id_kind(&id)));
        }
        if let Some(&i) = by_id.get(&id) {
            ctx.err(
                &p,
                format!(
                    "duplicate reservation: the same {} is reserved at {}",
                    id_kind(&id),
                    paths[i]
                ),
            );
            continue;
        }
        if rc.ip_unique {
            if let Some((a, &i)) = addrs.iter().find_map(|a| by_ip.get(a).map(|i| (a, i))) {
                ctx.err(
                    &format!("{p}.ip-addresses"),
                    format!("{a} is already reserved at {}", paths[i]),
                );
                continue;
            }
        }
        by_id.insert(id.clone(), out.len());
        for a in &addrs {
            by_ip.insert(*a, out.len());
        }
        paths.push(p);
        out.push(Reservation6 {
            identifier: id,
            ip_addresses: addrs,
            prefixes,
            hostname,
            options,
            client_classes: classes,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------

/// The global keys both sections handle the same way, read before subnets.
struct Common {
    defs: OptionDefs,
    classes: Vec<ClientClass>,
    global_options: OptionSet,
    params: Params,
    host_ids: Vec<String>,
    ip_unique: bool,
    decline: u32,
    lease_db: LeaseDatabase,
    expired: ExpiredLeasesProcessing,
    control_socket: Option<ControlSocket>,
    loggers: Vec<Logger>,
    ha: Vec<HaRelationship>,
    tuning: Tuning,
    interfaces: Vec<InterfaceSpec>,
    socket: SocketType,
}

fn read_common(ctx: &mut Ctx, o: &mut Obj, fam: Fam) -> Common {
    let u = fam.universe();
    let mut defs = OptionDefs::standard(u);
    let dl = o.list(ctx, "option-def");
    read_option_defs(ctx, dl, &mut defs, false);
    let cl = o.list(ctx, "client-classes");
    let classes = read_classes(ctx, cl, &defs, fam);
    let ol = o.list(ctx, "option-data");
    let global_options = read_options(ctx, ol, &defs);
    let params = read_params(o, ctx, fam, Level::Global);
    let host_ids = read_host_ids(ctx, o, fam);
    let ip_unique = o.bool(ctx, "ip-reservations-unique").unwrap_or(true);
    let decline = o.u32(ctx, "decline-probation-period").unwrap_or(86400);
    let path = o.path.clone();
    let uc = o.take("user-context");
    let (tuning, fsync) = read_tuning(ctx, uc, &path);
    let ldb = o.obj(ctx, "lease-database", "the lease database");
    let lease_db = read_lease_db(ctx, ldb, fsync);
    let mut tuning = tuning;
    // Kea's limit on parked packets; xdhcp parks replies only in synchronous replication.
    if let Some(v) = o.int(ctx, "parked-packet-limit", 0, 1 << 20) {
        tuning.parked_packet_limit = v as u32;
    }
    let ex = o.obj(ctx, "expired-leases-processing", "lease reclamation");
    let expired = read_expired(ctx, ex);
    let cs = o.obj(ctx, "control-socket", "the control socket");
    let control_socket = read_control_socket(ctx, cs);
    let ll = o.list(ctx, "loggers");
    let loggers = read_loggers(ctx, ll);
    let mt = o.obj(ctx, "multi-threading", "multi-threading");
    read_multi_threading(ctx, mt);
    let hl = o.list(ctx, "hooks-libraries");
    let ha = crate::ha::read_hooks(ctx, hl, fam == Fam::V6);
    let ic = o.obj(ctx, "interfaces-config", "the interfaces to serve");
    let (interfaces, socket) = read_interfaces(ctx, ic, fam);
    if tuning.replication == Replication::Synchronous {
        let rp = format!("{path}.user-context.xdhcp.replication");
        if ha.is_empty() {
            ctx.err(
                &rp,
                "synchronous replication needs a high-availability relationship (libdhcp_ha.so parameters)",
            );
        } else if !lease_db.persist || lease_db.path.is_none() {
            ctx.err(
                &rp,
                "synchronous replication ships the lease journal: lease-database needs \"persist\": true and a \"name\"",
            );
        }
    }
    Common {
        defs,
        classes,
        global_options,
        params,
        host_ids,
        ip_unique,
        decline,
        lease_db,
        expired,
        control_socket,
        loggers,
        ha,
        tuning,
        interfaces,
        socket,
    }
}

struct IdAlloc {
    next: u32,
    seen: HashMap<u32, String>,
}

impl IdAlloc {
    fn id(&mut self, ctx: &mut Ctx, o: &mut Obj) -> Option<u32> {
        let path = o.path.clone();
        let id = match o.has("id") {
            true => o.int(ctx, "id", 1, u32::MAX as i64).map(|n| n as u32)?,
            false => {
                let id = self.next;
                self.next += 1;
                ctx.warn(&path, format!("no \"id\": numbered {id} by position as Kea does; set it explicitly, since lease files and HA partners identify subnets by id"));
                id
            }
        };
        if let Some(prev) = self.seen.get(&id) {
            ctx.err(
                &format!("{path}.id"),
                format!("subnet id {id} is already used by {prev}; subnet ids must be unique"),
            );
            return None;
        }
        self.seen.insert(id, path);
        Some(id)
    }
}

/// A subnet bound to an interface xdhcp does not serve never sees a direct client: almost always a mistake.
fn check_subnet_interfaces<'a>(
    ctx: &mut Ctx,
    served: &[InterfaceSpec],
    paths: &[(String, Option<String>)],
    ifaces: impl Iterator<Item = Option<&'a str>>,
) {
    for ((p, _), i) in paths.iter().zip(ifaces) {
        if let Some(i) = i {
            if !served.iter().any(|s| s.name == i) {
                ctx.warn(
                    &format!("{p}.interface"),
                    format!("'{i}' is not in interfaces-config.interfaces, so clients directly on it are not served; add it there or remove it here"),
                );
            }
        }
    }
}

fn check_ha_names(ctx: &mut Ctx, ha: &[HaRelationship], subnets: &[(String, Option<String>)]) {
    if ha.is_empty() {
        return;
    }
    for (p, name) in subnets {
        match name {
            Some(n) if !ha.iter().any(|r| r.peers.iter().any(|peer| &peer.name == n)) => {
                ctx.err(&format!("{p}.user-context.ha-server-name"), format!("'{n}' is not a peer of any high-availability relationship"));
            }
            Some(_) => {}
            None if ha.len() > 1 => ctx.err(
                p,
                "with several high-availability relationships every subnet needs \"user-context\": {\"ha-server-name\": ...} naming the relationship that serves it",
            ),
            None => {}
        }
    }
}

fn family_mask(fam: Fam, len: u8) -> u128 {
    match fam {
        Fam::V4 if len == 0 => 0,
        Fam::V4 => (u32::MAX << (32 - len)) as u128,
        Fam::V6 => mask6(len),
    }
}

fn family_addr(fam: Fam, n: u128) -> IpAddr {
    match fam {
        Fam::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The relay addresses of one family among those configured at a scope.
fn relays<A>(prm: &Params, pick: fn(IpAddr) -> Option<A>) -> Vec<A> {
    prm.relay
        .iter()
        .flatten()
        .filter_map(|a| pick(*a))
        .collect()
}

fn v4_of(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6_of(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The keys of a subnet both families read the same way; the family then builds its own subnet from it
/// and reads its pools (`pd_pools` stays empty in DHCPv4, where Kea has no such key).
struct SubnetHead<'v> {
    id: Option<u32>,
    network: u128,
    len: u8,
    prm: Params,
    options: OptionSet,
    lifetimes: Lifetimes,
    pools: Vec<(String, &'v Value)>,
    pd_pools: Vec<(String, &'v Value)>,
    reservations: Vec<(String, &'v Value)>,
}

/// The keys of an address pool both families read the same way, already checked against its subnet.
struct PoolHead {
    first: u128,
    last: u128,
    options: OptionSet,
    client_class: Option<String>,
    require_client_classes: Vec<String>,
}

/// A shared network's own keys; its subnets were read into the family's subnet list.
struct SharedHead {
    name: String,
    subnets: Vec<usize>,
    params: Params,
    options: OptionSet,
}

/// What reading the subnets of a section accumulates in both families: id numbering, duplicate
/// prefixes, pool ranges for the overlap check and each subnet's path and HA relationship.
struct SubnetReader<'c> {
    fam: Fam,
    common: &'c Common,
    ids: IdAlloc,
    prefixes: HashMap<(u128, u8), String>,
    pool_ranges: Vec<(u128, u128, String)>,
    paths: Vec<(String, Option<String>)>,
}

impl<'c> SubnetReader<'c> {
    fn new(fam: Fam, common: &'c Common) -> Self {
        SubnetReader {
            fam,
            common,
            ids: IdAlloc {
                next: 1,
                seen: HashMap::new(),
            },
            prefixes: HashMap::new(),
            pool_ranges: Vec::new(),
            paths: Vec::new(),
        }
    }

    /// Reads the shared keys of the subnet at `p`; `None` when it cannot be used at all (the reason is
    /// in `ctx`). `parent` holds the parameters it inherits; `shared` its shared network, if any.
    fn head<'v>(
        &mut self,
        ctx: &mut Ctx,
        p: &str,
        v: &'v Value,
        parent: &Params,
        shared: Option<usize>,
    ) -> Option<SubnetHead<'v>> {
        let fam = self.fam;
        let mut so = Obj::new(ctx, v, p, "a subnet")?;
        let id = self.ids.id(ctx, &mut so);
        let net = so.str(ctx, "subnet");
        let sp = read_params(&mut so, ctx, fam, Level::Subnet);
        if let (Some(si), Some(pi)) = (&sp.interface, &parent.interface) {
            if shared.is_some() && si != pi {
                ctx.err(&so.p("interface"), format!("interface '{si}' differs from the shared network's '{pi}'; all subnets of a shared network are on one link"));
            }
        }
        let prm = sp.over(parent);
        let ol = so.list(ctx, "option-data");
        let options = read_options(ctx, ol, &self.common.defs);
        let pools = so.list(ctx, "pools");
        let pd_pools = match fam {
            Fam::V6 => so.list(ctx, "pd-pools"),
            Fam::V4 => Vec::new(),
        };
        let reservations = so.list(ctx, "reservations");
        so.finish(ctx);
        let Some(net) = net else {
            let example = match fam {
                Fam::V4 => "192.0.2.0/24",
                Fam::V6 => "2001:db8:1::/64",
            };
            ctx.err(p, format!("a subnet needs \"subnet\": \"{example}\""));
            return None;
        };
        let (addr, len) = match family_cidr(fam, net) {
            Ok(x) => x,
            Err(e) => {
                ctx.err(&format!("{p}.subnet"), e);
                return None;
            }
        };
        let network = addr & family_mask(fam, len);
        let shown = family_addr(fam, network);
        if network != addr {
            ctx.warn(
                &format!("{p}.subnet"),
                format!("{net} has host bits set; read as {shown}/{len}"),
            );
        }
        if let Some(prev) = self.prefixes.get(&(network, len)) {
            ctx.err(
                &format!("{p}.subnet"),
                format!("subnet {shown}/{len} is already defined at {prev}"),
            );
        }
        self.prefixes.insert((network, len), p.to_string());
        if let Some(cc) = &prm.client_class {
            check_class_ref(ctx, &format!("{p}.client-class"), cc, &self.common.classes);
        }
        let lifetimes = lifetimes(&prm, fam, ctx, p);
        Some(SubnetHead {
            id,
            network,
            len,
            prm,
            options,
            lifetimes,
            pools,
            pd_pools,
            reservations,
        })
    }

    /// Reads the address pool at `pp` of subnet `s`; `None` when it is unusable (the reason is in `ctx`).
    fn pool(&mut self, ctx: &mut Ctx, pp: &str, pv: &Value, s: &SubnetHead) -> Option<PoolHead> {
        let fam = self.fam;
        let mut po = Obj::new(ctx, pv, pp, "an address pool")?;
        let range = po.str(ctx, "pool");
        let ol = po.list(ctx, "option-data");
        let options = read_options(ctx, ol, &self.common.defs);
        let client_class = po.str(ctx, "client-class").map(str::to_string);
        let require_client_classes: Vec<String> = po
            .str_list(ctx, "require-client-classes")
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect();
        if fam == Fam::V6 && !require_client_classes.is_empty() {
            ctx.err(
                &po.p("require-client-classes"),
                "not supported by xdhcp for DHCPv6 yet; use client-class or class tests",
            );
        }
        po.finish(ctx);
        let Some(range) = range else {
            ctx.err(
                pp,
                "a pool needs \"pool\": \"first - last\" or \"prefix/len\"",
            );
            return None;
        };
        let (first, last) = match family_range(fam, range) {
            Ok(r) => r,
            Err(e) => {
                ctx.err(&format!("{pp}.pool"), e);
                return None;
            }
        };
        let mask = family_mask(fam, s.len);
        if first & mask != s.network || last & mask != s.network {
            let (f, l, n, len) = (
                family_addr(fam, first),
                family_addr(fam, last),
                family_addr(fam, s.network),
                s.len,
            );
            ctx.err(&format!("{pp}.pool"), format!("pool {f} - {l} is not inside the subnet {n}/{len}; move it into the subnet or fix the subnet prefix"));
            return None;
        }
        if let Some(cc) = &client_class {
            check_class_ref(ctx, &format!("{pp}.client-class"), cc, &self.common.classes);
        }
        self.pool_ranges.push((first, last, format!("{pp}.pool")));
        Some(PoolHead {
            first,
            last,
            options,
            client_class,
            require_client_classes,
        })
    }

    /// Records a subnet that was read whole (it has an id): its path and HA relationship are checked
    /// once all subnets are known.
    fn keep(&mut self, p: String, head: &SubnetHead) -> bool {
        if head.id.is_none() {
            return false;
        }
        self.paths.push((p, head.prm.ha_server_name.clone()));
        true
    }

    /// The checks that need every subnet of the section: pool overlaps, HA names, unused global
    /// reservations, subnets bound to interfaces that are not served.
    fn finish<'a>(
        self,
        ctx: &mut Ctx,
        global_reservations: bool,
        any_subnet_uses_global: bool,
        subnet_interfaces: impl Iterator<Item = Option<&'a str>>,
    ) {
        check_overlaps(ctx, self.pool_ranges, "pool");
        check_ha_names(ctx, &self.common.ha, &self.paths);
        if global_reservations && !any_subnet_uses_global {
            let section = match self.fam {
                Fam::V4 => "Dhcp4.reservations",
                Fam::V6 => "Dhcp6.reservations",
            };
            ctx.warn(section, "global reservations are configured but no subnet has reservations-global: true, so none is used");
        }
        check_subnet_interfaces(ctx, &self.common.interfaces, &self.paths, subnet_interfaces);
    }
}

/// Reads one subnet (path, JSON, inherited parameters, shared network index) into the list.
type ReadSubnet<'a, S> =
    dyn FnMut(&mut Ctx, String, &Value, &Params, Option<usize>, &mut Vec<S>) + 'a;

/// Reads the section's `shared-networks`, each subnet by `read_subnet` into `subnets` (which records the
/// shared network's index in it).
fn read_shared_networks<S>(
    ctx: &mut Ctx,
    o: &mut Obj,
    fam: Fam,
    global: &Params,
    defs: &OptionDefs,
    subnets: &mut Vec<S>,
    read_subnet: &mut ReadSubnet<'_, S>,
) -> Vec<SharedHead> {
    let mut out: Vec<SharedHead> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (p, v) in o.list(ctx, "shared-networks") {
        let Some(mut so) = Obj::new(ctx, v, &p, "a shared network") else {
            continue;
        };
        let name = so.str(ctx, "name").map(str::to_string);
        let params = read_params(&mut so, ctx, fam, Level::Shared).over(global);
        let ol = so.list(ctx, "option-data");
        let options = read_options(ctx, ol, defs);
        let subs = so.list(ctx, fam.subnets_key());
        so.finish(ctx);
        let Some(name) = name else {
            ctx.err(&p, "a shared network needs a 'name'");
            continue;
        };
        if let Some(prev) = names.insert(name.clone(), p.clone()) {
            ctx.err(
                &format!("{p}.name"),
                format!("shared network '{name}' is already defined at {prev}"),
            );
        }
        let idx = out.len();
        let before = subnets.len();
        for (sp, sv) in subs {
            read_subnet(ctx, sp, sv, &params, Some(idx), subnets);
        }
        out.push(SharedHead {
            name,
            subnets: (before..subnets.len()).collect(),
            params,
            options,
        });
    }
    out
}

pub(crate) fn read_dhcp4(ctx: &mut Ctx, v: &Value) -> Option<Dhcp4> {
    let fam = Fam::V4;
    let mut o = Obj::new(ctx, v, "Dhcp4", "the DHCPv4 server")?;
    let c = read_common(ctx, &mut o, fam);
    let gp = c.params.clone();
    let mut subnets: Vec<Subnet4> = Vec::new();
    let mut reader = SubnetReader::new(fam, &c);
    let rc = ResCtx {
        defs: &c.defs,
        host_ids: &c.host_ids,
        ip_unique: c.ip_unique,
    };

    let mut read_subnet = |ctx: &mut Ctx,
                           p: String,
                           v: &Value,
                           parent: &Params,
                           shared: Option<usize>,
                           subnets: &mut Vec<Subnet4>| {
        let Some(h) = reader.head(ctx, &p, v, parent, shared) else {
            return;
        };
        let prm = &h.prm;
        let mut s = Subnet4 {
            id: h.id.unwrap_or(0),
            network: Ipv4Addr::from(h.network as u32),
            prefix_len: h.len,
            pools: Vec::new(),
            options: h.options.clone(),
            relay: relays(prm, v4_of),
            interface: prm.interface.clone(),
            reservations: Vec::new(),
            lifetimes: h.lifetimes,
            shared_network: shared,
            client_class: prm.client_class.clone(),
            require_client_classes: prm.require_classes.clone().unwrap_or_default(),
            ha_server_name: prm.ha_server_name.clone(),
            match_client_id: prm.match_client_id.unwrap_or(true),
            authoritative: prm.authoritative.unwrap_or(false),
            next_server: prm.next_server,
            server_hostname: prm.server_hostname.clone(),
            boot_file_name: prm.boot_file_name.clone(),
            reservations_in_subnet: prm.res_in_subnet.unwrap_or(true),
            reservations_out_of_pool: prm.res_out_of_pool.unwrap_or(false),
            reservations_global: prm.res_global.unwrap_or(false),
        };
        for (pp, pv) in &h.pools {
            if let Some(pool) = reader.pool(ctx, pp, pv, &h) {
                s.pools.push(Pool4 {
                    first: Ipv4Addr::from(pool.first as u32),
                    last: Ipv4Addr::from(pool.last as u32),
                    options: pool.options,
                    client_class: pool.client_class,
                    require_client_classes: pool.require_client_classes,
                });
            }
        }
        s.reservations = read_res4(ctx, h.reservations.clone(), &rc, Some(&s));
        if reader.keep(p, &h) {
            subnets.push(s);
        }
    };

    let shared_networks = read_shared_networks(
        ctx,
        &mut o,
        fam,
        &gp,
        &c.defs,
        &mut subnets,
        &mut read_subnet,
    )
    .into_iter()
    .map(|sn| SharedNetwork4 {
        name: sn.name,
        subnets: sn.subnets,
        interface: sn.params.interface.clone(),
        relay: relays(&sn.params, v4_of),
        options: sn.options,
    })
    .collect();
    for (p, v) in o.list(ctx, fam.subnets_key()) {
        read_subnet(ctx, p, v, &gp, None, &mut subnets);
    }
    let rl = o.list(ctx, "reservations");
    let global_reservations = read_res4(ctx, rl, &rc, None);
    let echo = o.bool(ctx, "echo-client-id").unwrap_or(true);
    o.finish(ctx);

    reader.finish(
        ctx,
        !global_reservations.is_empty(),
        subnets.iter().any(|s| s.reservations_global),
        subnets.iter().map(|s| s.interface.as_deref()),
    );
    let lifetimes = lifetimes(&gp, fam, ctx, "Dhcp4");
    Some(Dhcp4 {
        interfaces: c.interfaces,
        socket_type: c.socket,
        subnets,
        shared_networks,
        global_options: c.global_options,
        global_reservations,
        client_classes: c.classes,
        lifetimes,
        match_client_id: gp.match_client_id.unwrap_or(true),
        authoritative: gp.authoritative.unwrap_or(false),
        echo_client_id: echo,
        decline_probation_period_secs: c.decline,
        lease_database: c.lease_db,
        expired_leases: c.expired,
        high_availability: c.ha,
        control_socket: c.control_socket,
        loggers: c.loggers,
        tuning: c.tuning,
    })
}

fn read_server_id(ctx: &mut Ctx, o: Option<Obj>) -> ServerIdConfig {
    let mut s = ServerIdConfig {
        kind: "LLT".into(),
        identifier: None,
        htype: None,
        time: None,
        enterprise_id: None,
        persist: true,
    };
    let Some(mut o) = o else { return s };
    if let Some(t) = o.str(ctx, "type") {
        if ["LLT", "EN", "LL"].contains(&t) {
            s.kind = t.to_string();
        } else {
            ctx.err(&o.p("type"), format!("'{t}' is not LLT, EN or LL"));
        }
    }
    if let Some(h) = o.str(ctx, "identifier") {
        match options::parse_hex(h) {
            Ok(b) if !b.is_empty() => s.identifier = Some(b),
            Ok(_) => {}
            Err(e) => ctx.err(&o.p("identifier"), e),
        }
    }
    s.htype = o.int(ctx, "htype", 0, 65535).map(|n| n as u16);
    s.time = o.u32(ctx, "time");
    s.enterprise_id = o.u32(ctx, "enterprise-id");
    if let Some(p) = o.bool(ctx, "persist") {
        s.persist = p;
    }
    if s.kind == "EN" && s.enterprise_id.is_none() && s.identifier.is_some() {
        s.enterprise_id = Some(2495);
    }
    o.finish(ctx);
    s
}

pub(crate) fn read_dhcp6(ctx: &mut Ctx, v: &Value) -> Option<Dhcp6> {
    let fam = Fam::V6;
    let mut o = Obj::new(ctx, v, "Dhcp6", "the DHCPv6 server")?;
    let c = read_common(ctx, &mut o, fam);
    let gp = c.params.clone();
    let mut subnets: Vec<Subnet6> = Vec::new();
    let mut reader = SubnetReader::new(fam, &c);
    let mut pd: Vec<(u128, u128, String)> = Vec::new();
    let rc = ResCtx {
        defs: &c.defs,
        host_ids: &c.host_ids,
        ip_unique: c.ip_unique,
    };

    let mut read_subnet = |ctx: &mut Ctx,
                           p: String,
                           v: &Value,
                           parent: &Params,
                           shared: Option<usize>,
                           subnets: &mut Vec<Subnet6>| {
        let Some(h) = reader.head(ctx, &p, v, parent, shared) else {
            return;
        };
        let prm = &h.prm;
        let network = Ipv6Addr::from(h.network);
        let mut s = Subnet6 {
            id: h.id.unwrap_or(0),
            network,
            prefix_len: h.len,
            pools: Vec::new(),
            pd_pools: Vec::new(),
            options: h.options.clone(),
            relay: relays(prm, v6_of),
            interface: prm.interface.clone(),
            interface_id: prm.interface_id.clone(),
            reservations: Vec::new(),
            lifetimes: h.lifetimes,
            shared_network: shared,
            client_class: prm.client_class.clone(),
            ha_server_name: prm.ha_server_name.clone(),
            rapid_commit: prm.rapid_commit.unwrap_or(false),
            reservations_in_subnet: prm.res_in_subnet.unwrap_or(true),
            reservations_out_of_pool: prm.res_out_of_pool.unwrap_or(false),
            reservations_global: prm.res_global.unwrap_or(false),
        };
        for (pp, pv) in &h.pools {
            if let Some(pool) = reader.pool(ctx, pp, pv, &h) {
                s.pools.push(Pool6 {
                    first: Ipv6Addr::from(pool.first),
                    last: Ipv6Addr::from(pool.last),
                    options: pool.options,
                    client_class: pool.client_class,
                });
            }
        }
        for (pp, pv) in &h.pd_pools {
            if let Some(pool) = read_pd_pool(ctx, pp, pv, &c) {
                pd.push((
                    u128::from(pool.prefix),
                    u128::from(pool.prefix) | !mask6(pool.prefix_len),
                    format!("{pp}.prefix"),
                ));
                s.pd_pools.push(pool);
            }
        }
        s.reservations = read_res6(ctx, h.reservations.clone(), &rc, Some((network, h.len)));
        if reader.keep(p, &h) {
            subnets.push(s);
        }
    };

    let shared_networks = read_shared_networks(
        ctx,
        &mut o,
        fam,
        &gp,
        &c.defs,
        &mut subnets,
        &mut read_subnet,
    )
    .into_iter()
    .map(|sn| SharedNetwork6 {
        name: sn.name,
        subnets: sn.subnets,
        interface: sn.params.interface.clone(),
        interface_id: sn.params.interface_id.clone(),
        relay: relays(&sn.params, v6_of),
        options: sn.options,
        rapid_commit: sn.params.rapid_commit.unwrap_or(false),
    })
    .collect();
    for (p, v) in o.list(ctx, fam.subnets_key()) {
        read_subnet(ctx, p, v, &gp, None, &mut subnets);
    }
    let rl = o.list(ctx, "reservations");
    let global_reservations = read_res6(ctx, rl, &rc, None);
    let sid = o.obj(ctx, "server-id", "the server DUID");
    let server_id = read_server_id(ctx, sid);
    let data_directory = o.str(ctx, "data-directory").map(PathBuf::from);
    o.finish(ctx);

    check_overlaps(ctx, pd, "pd-pool prefix");
    reader.finish(
        ctx,
        !global_reservations.is_empty(),
        subnets.iter().any(|s| s.reservations_global),
        subnets.iter().map(|s| s.interface.as_deref()),
    );
    let lifetimes = lifetimes(&gp, fam, ctx, "Dhcp6");
    Some(Dhcp6 {
        interfaces: c.interfaces,
        subnets,
        shared_networks,
        global_options: c.global_options,
        global_reservations,
        client_classes: c.classes,
        lifetimes,
        decline_probation_period_secs: c.decline,
        lease_database: c.lease_db,
        expired_leases: c.expired,
        high_availability: c.ha,
        control_socket: c.control_socket,
        loggers: c.loggers,
        server_id,
        data_directory,
        tuning: c.tuning,
    })
}

/// A Kea `pd-pools` entry: the pool prefix, the delegated length and the optional excluded prefix
/// (RFC 6603), each checked against the others.
fn read_pd_pool(ctx: &mut Ctx, pp: &str, pv: &Value, c: &Common) -> Option<PdPool6> {
    let mut po = Obj::new(ctx, pv, pp, "a prefix delegation pool")?;
    let prefix = po.str(ctx, "prefix");
    let plen = po.int(ctx, "prefix-len", 1, 128);
    let dlen = po.int(ctx, "delegated-len", 1, 128);
    let ex = po.str(ctx, "excluded-prefix");
    let exlen = po.int(ctx, "excluded-prefix-len", 0, 128);
    let ol = po.list(ctx, "option-data");
    let options = read_options(ctx, ol, &c.defs);
    let client_class = po.str(ctx, "client-class").map(str::to_string);
    if !po.str_list(ctx, "require-client-classes").is_empty() {
        ctx.err(
            &po.p("require-client-classes"),
            "not supported by xdhcp for DHCPv6 yet; use client-class or class tests",
        );
    }
    po.finish(ctx);
    let (Some(prefix), Some(plen), Some(dlen)) = (prefix, plen, dlen) else {
        for k in ["prefix", "prefix-len", "delegated-len"] {
            if pv.get(k).is_none() {
                ctx.err(pp, format!("a pd-pool needs '{k}'"));
            }
        }
        return None;
    };
    let (plen, dlen) = (plen as u8, dlen as u8);
    let Ok(pa) = prefix.trim().parse::<Ipv6Addr>() else {
        ctx.err(
            &format!("{pp}.prefix"),
            format!("'{prefix}' is not an IPv6 address"),
        );
        return None;
    };
    if u128::from(pa) & !mask6(plen) != 0 {
        ctx.err(
            &format!("{pp}.prefix"),
            format!("{pa}/{plen} has bits set beyond prefix-len {plen}"),
        );
        return None;
    }
    if dlen < plen {
        ctx.err(
            &format!("{pp}.delegated-len"),
            format!("delegated-len ({dlen}) must not be shorter than prefix-len ({plen})"),
        );
        return None;
    }
    let excluded = match (ex, exlen) {
        (None, None) | (None, Some(0)) => None,
        (Some(e), Some(el)) if el > 0 => {
            let el = el as u8;
            match e.trim().parse::<Ipv6Addr>() {
                Err(_) => {
                    ctx.err(
                        &format!("{pp}.excluded-prefix"),
                        format!("'{e}' is not an IPv6 address"),
                    );
                    None
                }
                Ok(ea) => {
                    if el <= dlen {
                        ctx.err(&format!("{pp}.excluded-prefix-len"), format!("excluded-prefix-len ({el}) must be longer than delegated-len ({dlen})"));
                        None
                    } else if u128::from(ea) & mask6(plen) != u128::from(pa) & mask6(plen) {
                        ctx.err(
                            &format!("{pp}.excluded-prefix"),
                            format!("{ea}/{el} is not inside the pool prefix {pa}/{plen}"),
                        );
                        None
                    } else if u128::from(ea) & !mask6(el) != 0 {
                        ctx.err(
                            &format!("{pp}.excluded-prefix"),
                            format!("{ea}/{el} has bits set beyond excluded-prefix-len"),
                        );
                        None
                    } else {
                        Some((ea, el))
                    }
                }
            }
        }
        _ => {
            ctx.err(
                pp,
                "excluded-prefix and excluded-prefix-len must be given together",
            );
            None
        }
    };
    Some(PdPool6 {
        prefix: pa,
        prefix_len: plen,
        delegated_len: dlen,
        excluded_prefix: excluded,
        options,
        client_class,
    })
}
