//! Kea 2.2's lease JSON (control channel `lease4-*`/`lease6-*` commands, HA `lease4-update`,
//! `lease6-bulk-apply`, `lease*-get-page`): conversion to and from the lease records.

use super::types::*;
use serde_json::{json, Map, Value};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub fn hex_colon(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Parse Kea's hex forms: `01:02:ab`, `01-02-ab`, `01 02 ab`, `1:2:ab` (one-digit groups) and
/// `0102ab` / `0x0102ab`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("'{s}' is not a hexadecimal string of whole bytes");
    if s.contains([':', '-', ' ']) {
        s.split([':', '-', ' '])
            .map(|p| {
                if p.is_empty() || p.len() > 2 {
                    Err(bad())
                } else {
                    u8::from_str_radix(p, 16).map_err(|_| bad())
                }
            })
            .collect()
    } else {
        let h = s.strip_prefix("0x").unwrap_or(s);
        if h.len() % 2 != 0 {
            return Err(bad());
        }
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| bad()))
            .collect()
    }
}

pub fn lease4_to_json(l: &Lease4) -> Value {
    let mut m = Map::new();
    m.insert("ip-address".into(), json!(l.addr.to_string()));
    m.insert("hw-address".into(), json!(hex_colon(l.hwaddr.as_slice())));
    if !l.client_id.is_empty() {
        m.insert("client-id".into(), json!(hex_colon(&l.client_id)));
    }
    m.insert("subnet-id".into(), json!(l.subnet_id));
    m.insert("cltt".into(), json!(l.cltt));
    m.insert("valid-lft".into(), json!(l.valid_lft));
    m.insert("fqdn-fwd".into(), json!(l.fqdn_fwd));
    m.insert("fqdn-rev".into(), json!(l.fqdn_rev));
    m.insert(
        "hostname".into(),
        json!(l.hostname.as_deref().unwrap_or("")),
    );
    m.insert("state".into(), json!(l.state.kea_code()));
    Value::Object(m)
}

fn field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k).filter(|v| !v.is_null())
}

fn get_u64(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, String> {
    match field(m, k) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("'{k}' must be a non-negative integer")),
    }
}

fn get_bool(m: &Map<String, Value>, k: &str) -> Result<bool, String> {
    match field(m, k) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("'{k}' must be a boolean")),
    }
}

/// Timing from Kea's lease JSON: `cltt` when given (pages), else `expire - valid-lft` (updates),
/// else now.
fn timing(m: &Map<String, Value>, now: u64, default_valid: u32) -> Result<(u64, u32), String> {
    let valid = get_u64(m, "valid-lft")?
        .map(|v| v as u32)
        .unwrap_or(default_valid);
    let cltt = match (get_u64(m, "cltt")?, get_u64(m, "expire")?) {
        (Some(c), _) => c,
        (None, Some(e)) => {
            if e < u64::from(valid) {
                return Err("'expire' must not be lower than 'valid-lft'".into());
            }
            e - u64::from(valid)
        }
        (None, None) => now,
    };
    Ok((cltt, valid))
}

fn state_of(m: &Map<String, Value>) -> Result<LeaseState, String> {
    let code = get_u64(m, "state")?.unwrap_or(0);
    LeaseState::from_kea_code(code)
        .ok_or_else(|| format!("invalid lease state {code}, expected 0..2"))
}

fn hostname(m: &Map<String, Value>) -> Option<Arc<str>> {
    field(m, "hostname")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(Arc::from)
}

/// Parse a v4 lease (Kea `lease4-add`/`lease4-update` arguments or a page entry). `subnet-id` 0
/// or missing is returned as 0: the caller selects the subnet by address.
pub fn lease4_from_json(v: &Value, now: u64, default_valid: u32) -> Result<Lease4, String> {
    let m = v.as_object().ok_or("a lease must be a JSON map")?;
    let addr: Ipv4Addr = field(m, "ip-address")
        .and_then(|v| v.as_str())
        .ok_or("'ip-address' is required")?
        .parse()
        .map_err(|_| "'ip-address' is not an IPv4 address".to_string())?;
    let hw = field(m, "hw-address")
        .and_then(|v| v.as_str())
        .ok_or("'hw-address' is required")?;
    let hw = parse_hex(hw)?;
    let client_id = match field(m, "client-id").and_then(|v| v.as_str()) {
        Some(s) => IdBuf::from_vec(parse_hex(s)?),
        None => IdBuf::new(),
    };
    let (cltt, valid_lft) = timing(m, now, default_valid)?;
    let fqdn_fwd = get_bool(m, "fqdn-fwd")?;
    let fqdn_rev = get_bool(m, "fqdn-rev")?;
    let hostname = hostname(m);
    if (fqdn_fwd || fqdn_rev) && hostname.is_none() {
        return Err("'fqdn-fwd'/'fqdn-rev' true need a non-empty 'hostname'".into());
    }
    Ok(Lease4 {
        addr,
        hwaddr: HwAddr::new(1, &hw),
        client_id,
        subnet_id: get_u64(m, "subnet-id")?.unwrap_or(0) as u32,
        cltt,
        valid_lft,
        state: state_of(m)?,
        fqdn_fwd,
        fqdn_rev,
        hostname,
    })
}

pub fn lease6_type_name(t: Lease6Type) -> &'static str {
    match t {
        Lease6Type::Na => "IA_NA",
        Lease6Type::Ta => "IA_TA",
        Lease6Type::Pd => "IA_PD",
    }
}

pub fn lease6_to_json(l: &Lease6) -> Value {
    let mut m = Map::new();
    m.insert("ip-address".into(), json!(l.addr.to_string()));
    m.insert("type".into(), json!(lease6_type_name(l.lease_type)));
    if l.lease_type == Lease6Type::Pd {
        m.insert("prefix-len".into(), json!(l.prefix_len));
    }
    m.insert("duid".into(), json!(hex_colon(&l.duid)));
    m.insert("iaid".into(), json!(l.iaid));
    m.insert("subnet-id".into(), json!(l.subnet_id));
    m.insert("cltt".into(), json!(l.cltt));
    m.insert("valid-lft".into(), json!(l.valid_lft));
    m.insert("preferred-lft".into(), json!(l.preferred_lft));
    if let Some(hw) = &l.hwaddr {
        m.insert("hw-address".into(), json!(hex_colon(hw.as_slice())));
    }
    m.insert("fqdn-fwd".into(), json!(l.fqdn_fwd));
    m.insert("fqdn-rev".into(), json!(l.fqdn_rev));
    m.insert(
        "hostname".into(),
        json!(l.hostname.as_deref().unwrap_or("")),
    );
    m.insert("state".into(), json!(l.state.kea_code()));
    Value::Object(m)
}

pub fn lease6_from_json(v: &Value, now: u64, default_valid: u32) -> Result<Lease6, String> {
    let m = v.as_object().ok_or("a lease must be a JSON map")?;
    let addr: Ipv6Addr = field(m, "ip-address")
        .and_then(|v| v.as_str())
        .ok_or("'ip-address' is required")?
        .parse()
        .map_err(|_| "'ip-address' is not an IPv6 address".to_string())?;
    let duid = parse_hex(
        field(m, "duid")
            .and_then(|v| v.as_str())
            .ok_or("'duid' is required")?,
    )?;
    let lease_type = match field(m, "type").and_then(|v| v.as_str()).unwrap_or("IA_NA") {
        "IA_NA" => Lease6Type::Na,
        "IA_TA" => Lease6Type::Ta,
        "IA_PD" => Lease6Type::Pd,
        other => return Err(format!("unknown lease type '{other}'")),
    };
    let prefix_len = match lease_type {
        Lease6Type::Pd => {
            get_u64(m, "prefix-len")?.ok_or("'prefix-len' is required for IA_PD")? as u8
        }
        _ => 128,
    };
    let (cltt, valid_lft) = timing(m, now, default_valid)?;
    let hwaddr = match field(m, "hw-address").and_then(|v| v.as_str()) {
        Some(s) => Some(HwAddr::new(1, &parse_hex(s)?)),
        None => None,
    };
    Ok(Lease6 {
        addr,
        prefix_len,
        lease_type,
        duid: IdBuf::from_vec(duid),
        iaid: get_u64(m, "iaid")?.unwrap_or(0) as u32,
        subnet_id: get_u64(m, "subnet-id")?.unwrap_or(0) as u32,
        cltt,
        valid_lft,
        preferred_lft: get_u64(m, "preferred-lft")?
            .map(|v| v as u32)
            .unwrap_or(valid_lft),
        state: state_of(m)?,
        hwaddr,
        fqdn_fwd: get_bool(m, "fqdn-fwd")?,
        fqdn_rev: get_bool(m, "fqdn-rev")?,
        hostname: hostname(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kea_update_json_round_trips() {
        let v = json!({"ip-address":"10.99.0.120","hw-address":"00:11:22:33:44:55","client-id":"01:00:11:22:33:44:55",
            "subnet-id":1,"valid-lft":3600,"expire":1795306795u64,"fqdn-fwd":false,"fqdn-rev":false,"hostname":"host","state":0,"force-create":true});
        let l = lease4_from_json(&v, 0, 0).unwrap();
        assert_eq!(l.cltt, 1795306795 - 3600);
        assert_eq!(
            l.client_id.as_slice(),
            &[1, 0, 0x11, 0x22, 0x33, 0x44, 0x55]
        );
        let back = lease4_to_json(&l);
        assert_eq!(back["hw-address"], "00:11:22:33:44:55");
        assert_eq!(back["cltt"], 1795306795u64 - 3600);
        assert_eq!(lease4_from_json(&back, 0, 0).unwrap(), l);
        assert!(lease4_from_json(&json!({"ip-address":"10.0.0.1"}), 0, 0).is_err());
        assert!(
            lease4_from_json(&json!({"ip-address":"10.0.0.1","hw-address":"zz"}), 0, 0).is_err()
        );
    }
}
