//! Kea 2.2's `lease6-*` commands on the control socket: get, get-all, get-page, add, update, del,
//! and `lease6-bulk-apply` (what a Kea HA partner sends for every DHCPv6 packet it answers).
//! Lease JSON is Kea's (see `lease::json`); changes are journaled like the workers' own, and
//! `Offered` holds (ADVERTISE) are never shown, as Kea has no such state.

use super::{journal_change, now, reply, Context};
use crate::lease::json::*;
use crate::lease::{Lease6, Lease6Type, LeaseChange, LeaseState};
use serde_json::{json, Value};
use std::net::Ipv6Addr;

pub const COMMANDS: &[&str] = &[
    "lease6-add",
    "lease6-bulk-apply",
    "lease6-del",
    "lease6-get",
    "lease6-get-all",
    "lease6-get-page",
    "lease6-update",
];

fn lease_type_arg(args: &Value) -> Result<Lease6Type, Value> {
    match args.get("type").and_then(|v| v.as_str()).unwrap_or("IA_NA") {
        "IA_NA" => Ok(Lease6Type::Na),
        "IA_TA" => Ok(Lease6Type::Ta),
        "IA_PD" => Ok(Lease6Type::Pd),
        other => Err(reply(
            1,
            format!("unknown lease type '{other}', expected IA_NA, IA_TA or IA_PD"),
            None,
        )),
    }
}

fn addr_arg(args: &Value) -> Result<Option<Ipv6Addr>, Value> {
    match args.get("ip-address").and_then(|v| v.as_str()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| reply(1, "'ip-address' is not an IPv6 address", None)),
    }
}

fn visible(l: &Lease6) -> bool {
    l.state != LeaseState::Offered
}

/// Dispatch one `lease6-*` command.
pub fn handle(ctx: &Context, cmd: &str, args: &Value) -> Value {
    match cmd {
        "lease6-get" => get(ctx, args),
        "lease6-get-all" => get_all(ctx, args),
        "lease6-get-page" => get_page(ctx, args),
        "lease6-add" | "lease6-update" => match write(ctx, cmd, args) {
            Ok(text) => reply(0, text, None),
            Err(e) => e,
        },
        "lease6-del" => match del(ctx, args) {
            Ok(()) => reply(0, "IPv6 lease deleted.", None),
            Err(e) => e,
        },
        "lease6-bulk-apply" => bulk_apply(ctx, args),
        other => reply(2, format!("'{other}' command not supported."), None),
    }
}

fn get(ctx: &Context, args: &Value) -> Value {
    let store = &ctx.shared.store;
    let ty = match lease_type_arg(args) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let found = match addr_arg(args) {
        Err(e) => return e,
        Ok(Some(a)) => store.get_by_addr6(a, ty),
        Ok(None) => {
            let (Some(kind), Some(id), Some(iaid), Some(subnet)) = (
                args.get("identifier-type").and_then(|v| v.as_str()),
                args.get("identifier").and_then(|v| v.as_str()),
                args.get("iaid").and_then(|v| v.as_u64()),
                args.get("subnet-id").and_then(|v| v.as_u64()),
            ) else {
                return reply(
                    1,
                    "give 'ip-address', or 'identifier-type', 'identifier', 'iaid' and 'subnet-id'",
                    None,
                );
            };
            if kind != "duid" {
                return reply(
                    1,
                    format!(
                        "identifier-type '{kind}' is not supported for IPv6 leases, use 'duid'"
                    ),
                    None,
                );
            }
            let Ok(bytes) = parse_hex(id) else {
                return reply(1, "'identifier' is not hexadecimal", None);
            };
            let key = crate::lease::store::ClientKey::v6(subnet as u32, &bytes, iaid as u32, ty);
            store.get_by_client6(&key, ty)
        }
    };
    match found.filter(visible) {
        Some(l) => reply(0, "IPv6 lease found.", Some(lease6_to_json(&l))),
        None => reply(3, "Lease not found.", None),
    }
}

fn collect(ctx: &Context, keep: &dyn Fn(&Lease6) -> bool) -> Vec<Lease6> {
    let mut leases = Vec::new();
    ctx.shared.store.for_each6(&mut |l| {
        if visible(l) && keep(l) {
            leases.push(l.clone());
        }
    });
    // Kea pages by address; a prefix and an address never share a key (type breaks ties).
    leases.sort_by_key(|l| (l.addr, l.lease_type as u8));
    leases
}

fn get_all(ctx: &Context, args: &Value) -> Value {
    let subnets: Option<Vec<u64>> = args
        .get("subnets")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect());
    let leases = collect(ctx, &|l| {
        subnets
            .as_ref()
            .is_none_or(|s| s.contains(&u64::from(l.subnet_id)))
    });
    let n = leases.len();
    let list: Vec<Value> = leases.iter().map(lease6_to_json).collect();
    reply(
        if n == 0 { 3 } else { 0 },
        format!("{n} IPv6 lease(s) found."),
        Some(json!({ "leases": list })),
    )
}

fn get_page(ctx: &Context, args: &Value) -> Value {
    let limit = match args.get("limit").and_then(|v| v.as_u64()) {
        Some(l) if l > 0 => l as usize,
        _ => return reply(1, "'limit' must be a positive integer", None),
    };
    let from = match args.get("from") {
        Some(Value::String(s)) if s == "start" => None,
        Some(Value::String(s)) => match s.parse::<Ipv6Addr>() {
            Ok(a) => Some(a),
            Err(_) => return reply(1, "'from' must be \"start\" or an IPv6 address", None),
        },
        _ => return reply(1, "'from' is required", None),
    };
    let mut leases = collect(ctx, &|l| from.is_none_or(|f| l.addr > f));
    leases.truncate(limit);
    let n = leases.len();
    let list: Vec<Value> = leases.iter().map(lease6_to_json).collect();
    reply(
        if n == 0 { 3 } else { 0 },
        format!("{n} IPv6 lease(s) found."),
        Some(json!({ "leases": list, "count": n })),
    )
}

/// Kea's subnet rules: a given subnet-id must exist and fit the lease; 0 or missing selects the
/// subnet containing the address (NA/TA) or the one with a pd-pool holding the prefix (PD).
fn resolve_subnet(ctx: &Context, l: &mut Lease6) -> Result<(), String> {
    let Some(rt) = ctx.shared.rt6.as_ref() else {
        return Ok(()); // no Dhcp6 configured: store as given (tests, migration)
    };
    let (ty, addr, plen) = (l.lease_type, l.addr, l.prefix_len);
    let fits = |s: &crate::engine::runtime6::SubnetRt6| match ty {
        Lease6Type::Pd => {
            s.pd_pools
                .iter()
                .any(|p| crate::engine::runtime6::prefix_contains(p.prefix, p.prefix_len, addr))
                || s.reserved_prefixes.contains_key(&(u128::from(addr), plen))
        }
        _ => s.cfg.contains(addr),
    };
    if l.subnet_id == 0 {
        match rt.subnets.iter().find(|s| fits(s)) {
            Some(s) => l.subnet_id = s.cfg.id,
            None => return Err(format!("no subnet fits {}/{}", l.addr, l.prefix_len)),
        }
    } else if !rt
        .subnets
        .iter()
        .any(|s| s.cfg.id == l.subnet_id && (fits(s) || ty == Lease6Type::Pd))
    {
        return Err(format!(
            "subnet-id {} does not exist or does not contain {}",
            l.subnet_id, l.addr
        ));
    }
    Ok(())
}

fn write(ctx: &Context, cmd: &str, args: &Value) -> Result<&'static str, Value> {
    let default_valid = ctx
        .shared
        .rt6
        .as_ref()
        .map_or(3600, |r| r.cfg.lifetimes.valid);
    let mut lease = lease6_from_json(args, now(), default_valid).map_err(|e| reply(1, e, None))?;
    resolve_subnet(ctx, &mut lease).map_err(|e| reply(1, e, None))?;
    let force = args
        .get("force-create")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let existing = ctx
        .shared
        .store
        .get_by_addr6(lease.addr, lease.lease_type)
        .filter(visible);
    match (cmd, existing.is_some()) {
        ("lease6-add", true) => {
            return Err(reply(
                1,
                format!("IPv6 lease for address {} already exists", lease.addr),
                None,
            ));
        }
        ("lease6-update", false) if !force => return Err(reply(3, "IPv6 lease not found", None)),
        _ => {}
    }
    let mut op = |stamp: &dyn Fn() -> u64| {
        let v = ctx.shared.store.put6_stamped(lease.clone(), stamp);
        Some((LeaseChange::Put6(lease.clone()), v))
    };
    journal_change(ctx, &mut op)?;
    Ok(if cmd == "lease6-add" {
        "Lease for address added."
    } else {
        "IPv6 lease updated."
    })
}

fn del(ctx: &Context, args: &Value) -> Result<(), Value> {
    let ty = lease_type_arg(args)?;
    let Some(addr) = addr_arg(args)? else {
        return Err(reply(1, "'ip-address' (IPv6) is required", None));
    };
    // Offers are not leases: a command never deletes one (and nothing was journaled for it).
    if !ctx
        .shared
        .store
        .get_by_addr6(addr, ty)
        .is_some_and(|l| visible(&l))
    {
        return Err(reply(3, "IPv6 lease not found.", None));
    }
    let mut op = |stamp: &dyn Fn() -> u64| {
        ctx.shared
            .store
            .delete6_stamped(addr, ty, stamp)
            .map(|(_, v)| (LeaseChange::Del6(addr, ty), v))
    };
    match journal_change(ctx, &mut op)? {
        true => Ok(()),
        false => Err(reply(3, "IPv6 lease not found.", None)),
    }
}

/// `lease6-bulk-apply {"deleted-leases": [...], "leases": [...]}`: deletions first, then
/// updates (created when missing, as Kea's HA partner expects). Failures are listed per lease;
/// the command itself succeeds, as in Kea.
fn bulk_apply(ctx: &Context, args: &Value) -> Value {
    let list = |k: &str| {
        args.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (deleted, updated) = (list("deleted-leases"), list("leases"));
    if args.get("deleted-leases").is_none() && args.get("leases").is_none() {
        return reply(1, "'deleted-leases' or 'leases' (lists) are required", None);
    }
    let failure = |l: &Value, result: u64, msg: String| {
        let mut m = json!({ "type": l.get("type").cloned().unwrap_or(json!("IA_NA")), "result": result, "error-message": msg });
        match l.get("ip-address") {
            Some(a) => m["ip-address"] = a.clone(),
            None => m["duid"] = l.get("duid").cloned().unwrap_or(Value::Null),
        }
        m
    };
    let result_of = |v: &Value| {
        (
            v["result"].as_u64().unwrap_or(1),
            v["text"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut failed_deleted = Vec::new();
    for l in &deleted {
        if let Err(e) = del(ctx, l) {
            let (r, t) = result_of(&e);
            failed_deleted.push(failure(l, r, t));
        }
    }
    let mut failed = Vec::new();
    for l in &updated {
        let mut with_force = l.clone();
        if let Some(m) = with_force.as_object_mut() {
            m.insert("force-create".into(), json!(true));
        }
        if let Err(e) = write(ctx, "lease6-update", &with_force) {
            let (r, t) = result_of(&e);
            failed.push(failure(l, r, t));
        }
    }
    let n = deleted.len() + updated.len();
    let args = (!failed_deleted.is_empty() || !failed.is_empty())
        .then(|| json!({ "failed-deleted-leases": failed_deleted, "failed-leases": failed }));
    reply(0, format!("Bulk apply of {n} IPv6 leases completed."), args)
}
