//! Pure builders and parsers of the JSON that goes between HA peers, exactly as Kea 2.2 writes and
//! reads it (`command_creator.cc`, `Lease4::toElement`, `Lease6::toElement`, `lease_cmds`). No I/O:
//! the HTTP shells call these. Responses sent to a peer are always JSON lists, because Kea 2.2
//! reads a bare map as an error.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// One encoding of Kea's lease JSON for the whole project: the dataplane's control socket and
/// the HA peer protocol must agree byte for byte.
pub use xdhcp_dataplane::lease::json::{hex_colon, lease4_to_json, lease6_to_json};

use serde_json::{json, Map, Value};
use xdhcp_dataplane::lease::{HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseState};

use super::state::{HeartbeatInfo, State};

/// Why a peer's JSON could not be used. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("response is not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
    #[error("peer answered with result {result}: {text}")]
    Result { result: i64, text: String },
}

fn shape(msg: impl Into<String>) -> WireError {
    WireError::Shape(msg.into())
}

/// DHCPv4 or DHCPv6: the `service` of a command and the lease family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// 4 or 6, as the dataplane's HA commands name the family.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    pub fn service(self) -> &'static str {
        match self {
            Family::V4 => "dhcp4",
            Family::V6 => "dhcp6",
        }
    }
}

/// `{"command": name, "service": [svc], "arguments": args?}`.
pub fn command(name: &str, family: Family, args: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("command".into(), Value::String(name.into()));
    m.insert("service".into(), json!([family.service()]));
    if let Some(a) = args {
        m.insert("arguments".into(), a);
    }
    Value::Object(m)
}

pub fn ha_heartbeat(family: Family) -> Value {
    command("ha-heartbeat", family, None)
}

pub fn ha_reset(family: Family) -> Value {
    command("ha-reset", family, None)
}

pub fn ha_sync_complete_notify(family: Family) -> Value {
    command("ha-sync-complete-notify", family, None)
}

pub fn ha_maintenance_notify(family: Family, cancel: bool) -> Value {
    command(
        "ha-maintenance-notify",
        family,
        Some(json!({ "cancel": cancel })),
    )
}

/// `dhcp-disable` as Kea's HA sends it: `max-period` only when non-zero.
pub fn dhcp_disable(family: Family, max_period_secs: u32) -> Value {
    let mut a = Map::new();
    a.insert("origin".into(), json!("ha-partner"));
    if max_period_secs > 0 {
        a.insert("max-period".into(), json!(max_period_secs));
    }
    command("dhcp-disable", family, Some(Value::Object(a)))
}

pub fn dhcp_enable(family: Family) -> Value {
    command(
        "dhcp-enable",
        family,
        Some(json!({ "origin": "ha-partner" })),
    )
}

/// `lease4-get-page` / `lease6-get-page`: `from` is "start" or the last address of the previous
/// page.
pub fn lease_get_page(family: Family, from: Option<String>, limit: u32) -> Value {
    let name = match family {
        Family::V4 => "lease4-get-page",
        Family::V6 => "lease6-get-page",
    };
    command(
        name,
        family,
        Some(json!({ "from": from.unwrap_or_else(|| "start".into()), "limit": limit.max(1) })),
    )
}

// ---------------------------------------------------------------------------------------------
// Lease JSON
// ---------------------------------------------------------------------------------------------

/// Parses Kea's hex forms: `01:02:03`, `01-02-03`, `010203`, `1:2:3`.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    xdhcp_dataplane::lease::json::parse_hex(s).ok()
}

pub fn lease6_type_name(t: Lease6Type) -> &'static str {
    match t {
        Lease6Type::Na => "IA_NA",
        Lease6Type::Ta => "IA_TA",
        Lease6Type::Pd => "IA_PD",
    }
}

/// Kea's `insertLeaseExpireTime`: `expire = cltt + valid-lft`, `cltt` removed.
fn with_expire(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        let cltt = m.get("cltt").and_then(Value::as_i64).unwrap_or(0);
        let lft = m.get("valid-lft").and_then(Value::as_i64).unwrap_or(0);
        m.insert("expire".into(), json!(cltt + lft));
        m.remove("cltt");
    }
    v
}

pub fn lease4_update(l: &Lease4) -> Value {
    let mut v = with_expire(lease4_to_json(l));
    if let Value::Object(m) = &mut v {
        m.insert("force-create".into(), json!(true));
    }
    command("lease4-update", Family::V4, Some(v))
}

/// `lease4-del` carries the whole lease like Kea's; for a delete known only by address the other
/// fields are those Kea's receiver ignores (it deletes by `ip-address`).
pub fn lease4_del(l: &Lease4) -> Value {
    command(
        "lease4-del",
        Family::V4,
        Some(with_expire(lease4_to_json(l))),
    )
}

pub fn lease4_del_addr(addr: Ipv4Addr) -> Value {
    command(
        "lease4-del",
        Family::V4,
        Some(json!({ "ip-address": addr.to_string() })),
    )
}

pub fn lease6_bulk_apply(leases: &[Lease6], deleted: &[Value]) -> Value {
    let leases: Vec<Value> = leases
        .iter()
        .map(|l| with_expire(lease6_to_json(l)))
        .collect();
    command(
        "lease6-bulk-apply",
        Family::V6,
        Some(json!({ "deleted-leases": deleted, "leases": leases })),
    )
}

/// A v6 delete known by address and type, for `deleted-leases` (lease_cmds deletes by both).
pub fn lease6_delete_entry(addr: Ipv6Addr, t: Lease6Type) -> Value {
    json!({ "ip-address": addr.to_string(), "type": lease6_type_name(t) })
}

/// One lease a partner could not apply, from a `lease6-bulk-apply` answer's `failed-leases` or
/// `failed-deleted-leases` (`[{type, ip-address | duid, result, error-message}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFailure {
    /// From `failed-deleted-leases` (true) or `failed-leases` (false).
    pub deleted: bool,
    /// `ip-address`, or `duid` when the lease had no address.
    pub lease: String,
    pub lease_type: String,
    pub result: i64,
    pub message: String,
}

impl BulkFailure {
    /// A delete the partner did not find (result 3) is what the delete wanted: Kea's HA does not
    /// count it as a failed update either.
    pub fn is_real(&self) -> bool {
        !(self.deleted && self.result == 3)
    }
}

/// Per-lease failures in a `lease6-bulk-apply` answer. The command as a whole must have succeeded
/// (result 0) for the lists to mean anything; an answer without them applied everything.
pub fn bulk_apply_failures(a: &Answer) -> Result<Vec<BulkFailure>, WireError> {
    let mut out = Vec::new();
    let Some(args) = a.arguments.as_ref().and_then(Value::as_object) else {
        return Ok(out);
    };
    for (key, deleted) in [("failed-deleted-leases", true), ("failed-leases", false)] {
        let list = match args.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(l)) => l,
            Some(_) => return Err(shape(format!("'{key}' must be a list"))),
        };
        for f in list {
            let m = f
                .as_object()
                .ok_or_else(|| shape(format!("an entry of '{key}' must be a map")))?;
            let lease = get_str(m, "ip-address")?
                .or(get_str(m, "duid")?)
                .unwrap_or("")
                .to_string();
            out.push(BulkFailure {
                deleted,
                lease,
                lease_type: get_str(m, "type")?.unwrap_or("").to_string(),
                result: m.get("result").and_then(Value::as_i64).unwrap_or(1),
                message: get_str(m, "error-message")?.unwrap_or("").to_string(),
            });
        }
    }
    Ok(out)
}

fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, WireError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(shape(format!("'{k}' must be a string"))),
    }
}

fn get_u64(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, WireError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| shape(format!("'{k}' must be a non-negative integer"))),
    }
}

fn get_bool(m: &Map<String, Value>, k: &str) -> Result<bool, WireError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(shape(format!("'{k}' must be a boolean"))),
    }
}

/// `cltt` from either form: `cltt` (get-page answers) or `expire - valid-lft` (update commands).
fn cltt_of(m: &Map<String, Value>, valid: u64) -> Result<u64, WireError> {
    if let Some(c) = get_u64(m, "cltt")? {
        return Ok(c);
    }
    if let Some(e) = get_u64(m, "expire")? {
        if e < valid {
            return Err(shape("'expire' must not be lower than 'valid-lft'"));
        }
        return Ok(e - valid);
    }
    Err(shape("lease has neither 'cltt' nor 'expire'"))
}

fn state_of(m: &Map<String, Value>) -> Result<LeaseState, WireError> {
    let code = get_u64(m, "state")?.unwrap_or(0);
    LeaseState::from_kea_code(code).ok_or_else(|| shape(format!("'state' {code} is not 0, 1 or 2")))
}

fn hostname_of(m: &Map<String, Value>) -> Result<Option<Arc<str>>, WireError> {
    Ok(get_str(m, "hostname")?
        .filter(|s| !s.is_empty())
        .map(Arc::from))
}

/// Parses a v4 lease as Kea's `lease4-update` / `lease4-get-page` carry it.
pub fn lease4_from_json(v: &Value) -> Result<Lease4, WireError> {
    let m = v
        .as_object()
        .ok_or_else(|| shape("a lease must be a map"))?;
    let addr: Ipv4Addr = get_str(m, "ip-address")?
        .ok_or_else(|| shape("'ip-address' is missing"))?
        .parse()
        .map_err(|_| shape("'ip-address' is not an IPv4 address"))?;
    let hw = get_str(m, "hw-address")?.ok_or_else(|| shape("'hw-address' is missing"))?;
    let hw = parse_hex(hw).ok_or_else(|| shape("'hw-address' is not hex"))?;
    let client_id = match get_str(m, "client-id")? {
        Some(s) => parse_hex(s).ok_or_else(|| shape("'client-id' is not hex"))?,
        None => Vec::new(),
    };
    let valid = get_u64(m, "valid-lft")?.unwrap_or(0);
    let cltt = cltt_of(m, valid)?;
    Ok(Lease4 {
        addr,
        hwaddr: HwAddr::new(1, &hw),
        client_id: IdBuf::from_slice(&client_id),
        subnet_id: get_u64(m, "subnet-id")?
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32,
        cltt,
        valid_lft: valid.min(u64::from(u32::MAX)) as u32,
        state: state_of(m)?,
        fqdn_fwd: get_bool(m, "fqdn-fwd")?,
        fqdn_rev: get_bool(m, "fqdn-rev")?,
        hostname: hostname_of(m)?,
    })
}

pub fn lease6_type_from_name(s: &str) -> Option<Lease6Type> {
    match s {
        "IA_NA" | "0" => Some(Lease6Type::Na),
        "IA_TA" | "1" => Some(Lease6Type::Ta),
        "IA_PD" | "2" => Some(Lease6Type::Pd),
        _ => None,
    }
}

pub fn lease6_from_json(v: &Value) -> Result<Lease6, WireError> {
    let m = v
        .as_object()
        .ok_or_else(|| shape("a lease must be a map"))?;
    let addr: Ipv6Addr = get_str(m, "ip-address")?
        .ok_or_else(|| shape("'ip-address' is missing"))?
        .parse()
        .map_err(|_| shape("'ip-address' is not an IPv6 address"))?;
    let lease_type = match get_str(m, "type")? {
        Some(t) => {
            lease6_type_from_name(t).ok_or_else(|| shape("'type' must be IA_NA, IA_TA or IA_PD"))?
        }
        None => Lease6Type::Na,
    };
    let duid = get_str(m, "duid")?.ok_or_else(|| shape("'duid' is missing"))?;
    let duid = parse_hex(duid).ok_or_else(|| shape("'duid' is not hex"))?;
    let hwaddr = match get_str(m, "hw-address")? {
        Some(s) => Some(HwAddr::new(
            1,
            &parse_hex(s).ok_or_else(|| shape("'hw-address' is not hex"))?,
        )),
        None => None,
    };
    let valid = get_u64(m, "valid-lft")?.unwrap_or(0);
    let cltt = cltt_of(m, valid)?;
    let prefix_len = if lease_type == Lease6Type::Pd {
        get_u64(m, "prefix-len")?
            .ok_or_else(|| shape("'prefix-len' is missing for IA_PD"))?
            .min(128) as u8
    } else {
        128
    };
    Ok(Lease6 {
        addr,
        prefix_len,
        lease_type,
        duid: IdBuf::from_slice(&duid),
        iaid: get_u64(m, "iaid")?.unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        subnet_id: get_u64(m, "subnet-id")?
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32,
        cltt,
        valid_lft: valid.min(u64::from(u32::MAX)) as u32,
        preferred_lft: get_u64(m, "preferred-lft")?
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32,
        state: state_of(m)?,
        hwaddr,
        fqdn_fwd: get_bool(m, "fqdn-fwd")?,
        fqdn_rev: get_bool(m, "fqdn-rev")?,
        hostname: hostname_of(m)?,
    })
}

/// The checks Kea 2.2 applies to each lease of a sync page (`Lease4::fromElement` needs these):
/// `cltt > 0`, `subnet-id > 0`, and the mandatory fields present. Failing leases are skipped.
pub fn page_lease_acceptable(v: &Value) -> bool {
    let Some(m) = v.as_object() else { return false };
    let pos = |k: &str| m.get(k).and_then(Value::as_u64).is_some_and(|x| x > 0);
    pos("cltt")
        && pos("subnet-id")
        && ["fqdn-fwd", "fqdn-rev", "hostname", "state", "valid-lft"]
            .iter()
            .all(|k| m.contains_key(*k))
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// One answer map `{"result", "text", "arguments"?}`.
pub fn answer_map(result: i64, text: &str, args: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("result".into(), json!(result));
    m.insert("text".into(), json!(text));
    if let Some(a) = args {
        m.insert("arguments".into(), a);
    }
    Value::Object(m)
}

/// What goes back to an HTTP client (a Kea peer): always a list.
pub fn answer_list(result: i64, text: &str, args: Option<Value>) -> Value {
    Value::Array(vec![answer_map(result, text, args)])
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub result: i64,
    pub text: String,
    pub arguments: Option<Value>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.result == 0 || self.result == 3
    }

    /// Kea's `verifyAsyncResponse`: success or empty, else an error carrying the code.
    pub fn into_ok(self) -> Result<Answer, WireError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(WireError::Result {
                result: self.result,
                text: self.text,
            })
        }
    }
}

/// Parses a response body: a list (first element) or a bare map (our dataplane's UNIX socket
/// answers with maps, as kea-dhcp4's does).
pub fn parse_answer(body: &[u8]) -> Result<Answer, WireError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))?;
    parse_answer_value(&v)
}

pub fn parse_answer_value(v: &Value) -> Result<Answer, WireError> {
    let first = match v {
        Value::Array(a) => a
            .first()
            .ok_or_else(|| shape("list of responses must not be empty"))?,
        Value::Object(_) => v,
        _ => return Err(shape("body of the response must be a list")),
    };
    let m = first
        .as_object()
        .ok_or_else(|| shape("response must be a map"))?;
    let result = m
        .get("result")
        .and_then(Value::as_i64)
        .ok_or_else(|| shape("'result' is missing"))?;
    let text = m
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Answer {
        result,
        text,
        arguments: m.get("arguments").cloned(),
    })
}

/// The `ha-heartbeat` answer's arguments, as our server sends them.
pub fn heartbeat_args(state: State, scopes: &[String], unsent: u64, now: SystemTime) -> Value {
    json!({
        "state": state.name(),
        "date-time": rfc1123(now),
        "scopes": scopes,
        "unsent-update-count": unsent,
    })
}

/// Parses an `ha-heartbeat` answer as Kea's `asyncSendHeartbeat` does: `state` and `date-time`
/// required; `scopes` optional; `unsent-update-count` an integer when present.
pub fn parse_heartbeat(a: &Answer) -> Result<HeartbeatInfo, WireError> {
    if !a.is_success() {
        return Err(WireError::Result {
            result: a.result,
            text: a.text.clone(),
        });
    }
    let m = a
        .arguments
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| shape("returned arguments in the response must be a map"))?;
    let st = m.get("state").and_then(Value::as_str).ok_or_else(|| {
        shape(
            "server state not returned in response to a ha-heartbeat command or it is not a string",
        )
    })?;
    let state = State::from_name(st)
        .ok_or_else(|| shape(format!("unsupported HA partner state returned {st}")))?;
    let dt = m.get("date-time").and_then(Value::as_str).ok_or_else(|| {
        shape("date-time not returned in response to a ha-heartbeat command or it is not a string")
    })?;
    let partner_time_secs =
        parse_rfc1123(dt).ok_or_else(|| shape(format!("date-time '{dt}' is not RFC 1123")))?;
    let scopes = match m.get("scopes") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let unsent_update_count = match m.get("unsent-update-count") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            shape("unsent-update-count returned in the ha-heartbeat response is not an integer")
        })?),
    };
    Ok(HeartbeatInfo {
        state,
        partner_time_secs,
        scopes,
        unsent_update_count,
    })
}

/// RFC 1123 date as HTTP and Kea print it: `Sat, 21 Nov 2026 23:19:31 GMT`.
pub fn rfc1123(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Unix seconds of an RFC 1123 date.
pub fn parse_rfc1123(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

pub fn system_time_from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease4 {
        Lease4 {
            addr: "10.99.0.120".parse().unwrap(),
            hwaddr: HwAddr::ethernet([0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            client_id: IdBuf::from_slice(&[1, 0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            subnet_id: 1,
            cltt: 1_795_303_195,
            valid_lft: 3600,
            state: LeaseState::Assigned,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: Some(Arc::from("host")),
        }
    }

    #[test]
    fn lease4_update_is_byte_for_byte_what_kea_sends() {
        // kea-ha-wire.md §2, seen on the wire from Kea 2.2.
        let want: Value = serde_json::from_str(
            r#"{"command":"lease4-update","service":["dhcp4"],"arguments":{"ip-address":"10.99.0.120",
 "hw-address":"00:11:22:33:44:55","client-id":"01:00:11:22:33:44:55","subnet-id":1,"valid-lft":3600,
 "expire":1795306795,"fqdn-fwd":false,"fqdn-rev":false,"hostname":"host","state":0,"force-create":true}}"#,
        )
        .unwrap();
        assert_eq!(lease4_update(&lease()), want);
        let del = lease4_del(&lease());
        assert_eq!(del["command"], "lease4-del");
        assert!(del["arguments"].get("force-create").is_none());
        assert!(del["arguments"].get("cltt").is_none());
    }

    #[test]
    fn lease4_round_trips_through_both_forms() {
        let l = lease();
        assert_eq!(lease4_from_json(&lease4_to_json(&l)).unwrap(), l);
        assert_eq!(
            lease4_from_json(&lease4_update(&l)["arguments"]).unwrap(),
            l
        );
        assert!(page_lease_acceptable(&lease4_to_json(&l)));
        let mut bad = lease4_to_json(&l);
        bad["subnet-id"] = json!(0);
        assert!(!page_lease_acceptable(&bad));
    }

    #[test]
    fn lease4_parse_errors_name_the_field() {
        let e = lease4_from_json(&json!({"ip-address": "10.0.0.1"})).unwrap_err();
        assert!(e.to_string().contains("hw-address"), "{e}");
        let e = lease4_from_json(&json!({"ip-address": "x", "hw-address": "00:01"})).unwrap_err();
        assert!(e.to_string().contains("ip-address"), "{e}");
        let e = lease4_from_json(
            &json!({"ip-address": "10.0.0.1", "hw-address": "00:01", "valid-lft": 10, "expire": 5}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("expire"), "{e}");
    }

    #[test]
    fn lease6_bulk_apply_shape() {
        let l = Lease6 {
            addr: "2001:db8::5".parse().unwrap(),
            prefix_len: 128,
            lease_type: Lease6Type::Na,
            duid: IdBuf::from_slice(&[0, 1, 2, 3]),
            iaid: 7,
            subnet_id: 2,
            cltt: 1000,
            valid_lft: 400,
            preferred_lft: 300,
            state: LeaseState::Assigned,
            hwaddr: None,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: None,
        };
        let c = lease6_bulk_apply(
            std::slice::from_ref(&l),
            &[lease6_delete_entry(
                "2001:db8::6".parse().unwrap(),
                Lease6Type::Na,
            )],
        );
        assert_eq!(c["command"], "lease6-bulk-apply");
        assert_eq!(c["service"], json!(["dhcp6"]));
        assert_eq!(c["arguments"]["leases"][0]["expire"], 1400);
        assert_eq!(c["arguments"]["leases"][0]["type"], "IA_NA");
        assert_eq!(
            c["arguments"]["deleted-leases"][0]["ip-address"],
            "2001:db8::6"
        );
        assert_eq!(lease6_from_json(&c["arguments"]["leases"][0]).unwrap(), l);
    }

    fn lease6_na() -> Lease6 {
        Lease6 {
            addr: "2001:db8:1::120".parse().unwrap(),
            prefix_len: 128,
            lease_type: Lease6Type::Na,
            duid: IdBuf::from_slice(&[0, 3, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            iaid: 1,
            subnet_id: 1,
            cltt: 1_795_303_195,
            valid_lft: 3600,
            preferred_lft: 2400,
            state: LeaseState::Assigned,
            hwaddr: None,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: None,
        }
    }

    #[test]
    fn lease6_bulk_apply_is_what_kea_2_2_sends() {
        // command_creator.cc createLease6BulkApply: both lists always present, every lease is
        // Lease6::toElement with cltt replaced by expire = cltt + valid-lft, service dhcp6.
        let mut pd = lease6_na();
        pd.addr = "2001:db8:8000::".parse().unwrap();
        pd.lease_type = Lease6Type::Pd;
        pd.prefix_len = 56;
        pd.iaid = 2;
        let want: Value = serde_json::from_str(
            r#"{"command":"lease6-bulk-apply","service":["dhcp6"],"arguments":{
 "deleted-leases":[{"ip-address":"2001:db8:1::7","type":"IA_NA"}],
 "leases":[
  {"ip-address":"2001:db8:1::120","type":"IA_NA","iaid":1,"duid":"00:03:00:01:00:11:22:33:44:55",
   "subnet-id":1,"preferred-lft":2400,"valid-lft":3600,"expire":1795306795,"fqdn-fwd":false,
   "fqdn-rev":false,"hostname":"","state":0},
  {"ip-address":"2001:db8:8000::","type":"IA_PD","prefix-len":56,"iaid":2,
   "duid":"00:03:00:01:00:11:22:33:44:55","subnet-id":1,"preferred-lft":2400,"valid-lft":3600,
   "expire":1795306795,"fqdn-fwd":false,"fqdn-rev":false,"hostname":"","state":0}]}}"#,
        )
        .unwrap();
        let got = lease6_bulk_apply(
            &[lease6_na(), pd.clone()],
            &[lease6_delete_entry(
                "2001:db8:1::7".parse().unwrap(),
                Lease6Type::Na,
            )],
        );
        assert_eq!(got, want);
        // An empty side is still an (empty) list, as Kea writes it.
        let only_del = lease6_bulk_apply(&[], &[]);
        assert_eq!(
            only_del["arguments"],
            json!({"deleted-leases": [], "leases": []})
        );
        // What we send parses back to the same leases (the receiver's view: cltt = expire - valid).
        assert_eq!(
            lease6_from_json(&got["arguments"]["leases"][0]).unwrap(),
            lease6_na()
        );
        assert_eq!(
            lease6_from_json(&got["arguments"]["leases"][1]).unwrap(),
            pd
        );
    }

    #[test]
    fn lease6_bulk_apply_answer_failures_are_read_per_lease() {
        // lease_cmds lease6BulkApplyHandler: result 0, failures listed per lease.
        let body = r#"[{"result":0,"text":"Bulk apply of 2 IPv6 leases completed.","arguments":{
 "failed-deleted-leases":[{"type":"IA_NA","ip-address":"2001:db8:1::7","result":3,
   "error-message":"lease not found"}],
 "failed-leases":[{"type":"IA_NA","ip-address":"2001:db8:1::120","result":1,
   "error-message":"subnet-id 9 does not exist"},
  {"type":"IA_PD","duid":"00:01","result":1,"error-message":"bad"}]}}]"#;
        let a = parse_answer(body.as_bytes()).unwrap();
        assert!(a.is_success());
        let f = bulk_apply_failures(&a).unwrap();
        assert_eq!(f.len(), 3);
        assert!(f[0].deleted && f[0].result == 3 && !f[0].is_real());
        assert_eq!(f[1].lease, "2001:db8:1::120");
        assert!(!f[1].deleted && f[1].is_real());
        assert_eq!(f[1].message, "subnet-id 9 does not exist");
        assert_eq!(
            (f[2].lease.as_str(), f[2].lease_type.as_str()),
            ("00:01", "IA_PD")
        );
        // No arguments: everything applied.
        let ok = parse_answer(br#"[{"result":0,"text":"Bulk apply of 1 IPv6 leases completed."}]"#)
            .unwrap();
        assert!(bulk_apply_failures(&ok).unwrap().is_empty());
        // A malformed list is an error, not silently "all applied".
        let bad = answer_list(0, "", Some(json!({"failed-leases": {"x": 1}})));
        assert!(bulk_apply_failures(&parse_answer_value(&bad).unwrap()).is_err());
    }

    #[test]
    fn lease6_get_page_matches_kea() {
        assert_eq!(
            lease_get_page(Family::V6, None, 2000),
            json!({"command":"lease6-get-page","service":["dhcp6"],"arguments":{"from":"start","limit":2000}})
        );
        assert_eq!(
            lease_get_page(Family::V6, Some("2001:db8:1::ff".into()), 2000)["arguments"]["from"],
            "2001:db8:1::ff"
        );
        assert_eq!(
            ha_heartbeat(Family::V6),
            json!({"command":"ha-heartbeat","service":["dhcp6"]})
        );
        // A page lease (with cltt) from Kea's lease6-get-page is acceptable and parses.
        let l = lease6_to_json(&lease6_na());
        assert!(page_lease_acceptable(&l));
        assert_eq!(lease6_from_json(&l).unwrap(), lease6_na());
    }

    #[test]
    fn sync_commands_match_kea() {
        assert_eq!(
            dhcp_disable(Family::V4, 60),
            json!({"command":"dhcp-disable","service":["dhcp4"],"arguments":{"origin":"ha-partner","max-period":60}})
        );
        assert_eq!(
            dhcp_enable(Family::V4),
            json!({"command":"dhcp-enable","service":["dhcp4"],"arguments":{"origin":"ha-partner"}})
        );
        assert_eq!(
            lease_get_page(Family::V4, None, 10000),
            json!({"command":"lease4-get-page","service":["dhcp4"],"arguments":{"from":"start","limit":10000}})
        );
        assert_eq!(
            ha_heartbeat(Family::V4),
            json!({"command":"ha-heartbeat","service":["dhcp4"]})
        );
        assert_eq!(
            ha_maintenance_notify(Family::V6, true),
            json!({"command":"ha-maintenance-notify","service":["dhcp6"],"arguments":{"cancel":true}})
        );
    }

    #[test]
    fn heartbeat_round_trip_and_rfc1123() {
        let t = system_time_from_unix(1_795_303_171);
        assert_eq!(rfc1123(t), "Sat, 21 Nov 2026 23:19:31 GMT");
        assert_eq!(
            parse_rfc1123("Sat, 21 Nov 2026 23:19:31 GMT"),
            Some(1_795_303_171)
        );
        let body = answer_list(
            0,
            "HA peer status returned.",
            Some(heartbeat_args(State::HotStandby, &["server1".into()], 4, t)),
        );
        let a = parse_answer(body.to_string().as_bytes()).unwrap();
        let hb = parse_heartbeat(&a).unwrap();
        assert_eq!(hb.state, State::HotStandby);
        assert_eq!(hb.partner_time_secs, 1_795_303_171);
        assert_eq!(hb.scopes, vec!["server1".to_string()]);
        assert_eq!(hb.unsent_update_count, Some(4));
        // Missing date-time is an error, as in Kea.
        let bad = answer_list(0, "", Some(json!({"state": "waiting"})));
        assert!(parse_heartbeat(&parse_answer_value(&bad).unwrap()).is_err());
        let bad = answer_list(
            0,
            "",
            Some(json!({"state": "bogus", "date-time": "Sat, 21 Nov 2026 23:19:31 GMT"})),
        );
        assert!(parse_heartbeat(&parse_answer_value(&bad).unwrap()).is_err());
    }

    #[test]
    fn answers_are_lists_and_parse_from_maps_too() {
        let l = answer_list(3, "0 IPv4 lease(s) found.", None);
        assert!(l.is_array());
        let a = parse_answer_value(&l).unwrap();
        assert!(a.is_success());
        assert!(parse_answer(b"{\"result\":1,\"text\":\"no\"}")
            .unwrap()
            .into_ok()
            .is_err());
        assert!(parse_answer(b"[]").is_err());
        assert!(parse_answer(b"nope").is_err());
    }

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("01:02:ff"), Some(vec![1, 2, 255]));
        assert_eq!(parse_hex("0102ff"), Some(vec![1, 2, 255]));
        assert_eq!(parse_hex("1:2"), Some(vec![1, 2]));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(hex_colon(&[0, 0xab]), "00:ab");
    }
}
