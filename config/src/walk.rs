//! Walking Kea's JSON with precise JSON paths: the diagnostic sink ([`Ctx`]) and a map reader ([`Obj`]) that
//! records which keys were read, so that every key left over is reported — as a warning when xdhcp can
//! safely ignore it, as an error when ignoring it would change behaviour or when it is not a Kea key at all.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::Diagnostic;

pub(crate) struct Ctx {
    pub file: PathBuf,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Ctx {
    pub fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            json_path: path.to_string(),
            message: msg.into(),
        });
    }
    pub fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.warnings.push(Diagnostic {
            file: self.file.clone(),
            json_path: path.to_string(),
            message: msg.into(),
        });
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Kea keys that xdhcp accepts but does not act on, where doing nothing is safe: the reason is shown in the
/// warning. Matched by exact name, or by prefix for the `ddns-` family.
const SAFE_IGNORED: &[(&str, &str)] = &[
    ("ddns-", "xdhcp does not send DNS updates"),
    ("dhcp-ddns", "xdhcp does not send DNS updates"),
    (
        "hostname-char-set",
        "xdhcp does not rewrite client host names (no DNS updates)",
    ),
    (
        "hostname-char-replacement",
        "xdhcp does not rewrite client host names (no DNS updates)",
    ),
    (
        "sanity-checks",
        "xdhcp validates every lease it loads from its journal itself",
    ),
    (
        "server-tag",
        "xdhcp does not use Kea's configuration backend",
    ),
    (
        "statistic-default-sample-count",
        "xdhcp exports counters as Prometheus metrics instead",
    ),
    (
        "statistic-default-sample-age",
        "xdhcp exports counters as Prometheus metrics instead",
    ),
    (
        "cache-threshold",
        "xdhcp does not reuse cached lease times; renewals extend the lease",
    ),
    (
        "cache-max-age",
        "xdhcp does not reuse cached lease times; renewals extend the lease",
    ),
    (
        "store-extended-info",
        "xdhcp does not store relay information in leases",
    ),
    (
        "dhcp-queue-control",
        "xdhcp workers have their own bounded queues (user-context.xdhcp)",
    ),
    (
        "dhcp4o6-port",
        "DHCPv4-over-DHCPv6 is not supported; nothing is served on it",
    ),
    (
        "4o6-interface",
        "DHCPv4-over-DHCPv6 is not supported; nothing is served on it",
    ),
    (
        "4o6-interface-id",
        "DHCPv4-over-DHCPv6 is not supported; nothing is served on it",
    ),
    (
        "4o6-subnet",
        "DHCPv4-over-DHCPv6 is not supported; nothing is served on it",
    ),
    (
        "early-global-reservations-lookup",
        "xdhcp looks reservations up by subnet and globally as configured",
    ),
    (
        "reservations-lookup-first",
        "xdhcp always checks reservations before allocating",
    ),
    ("compatibility", "xdhcp applies strict option parsing"),
    ("re-detect", "xdhcp serves exactly the interfaces listed"),
    (
        "outbound-interface",
        "xdhcp replies on the interface a query came in on",
    ),
    (
        "service-sockets-require-all",
        "xdhcp fails to start when a listed interface cannot be opened",
    ),
    (
        "service-sockets-max-retries",
        "xdhcp fails to start when a listed interface cannot be opened",
    ),
    (
        "service-sockets-retry-wait-time",
        "xdhcp fails to start when a listed interface cannot be opened",
    ),
    (
        "relay-supplied-options",
        "xdhcp does not echo relay-supplied options",
    ),
    (
        "mac-sources",
        "xdhcp takes the MAC from the link layer or the client-linklayer-address relay option",
    ),
    (
        "max-row-errors",
        "xdhcp's journal skips no lease records silently: a damaged record stops the load",
    ),
];

/// Kea keys whose effect xdhcp cannot provide, where ignoring them would change behaviour.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("hosts-database", "host reservations in a database are not supported; put reservations in the configuration file"),
    ("hosts-databases", "host reservations in a database are not supported; put reservations in the configuration file"),
    ("config-control", "Kea's configuration backend is not supported; keep the whole configuration in the file"),
];

/// A JSON map being read. Keys are marked as they are read; [`Obj::finish`] reports the rest.
pub(crate) struct Obj<'v> {
    pub path: String,
    map: &'v Map<String, Value>,
    used: HashSet<&'v str>,
    /// Every key the reader looked for, present or not: the vocabulary for "did you mean" hints.
    asked: Vec<String>,
}

impl<'v> Obj<'v> {
    pub fn new(ctx: &mut Ctx, v: &'v Value, path: &str, what: &str) -> Option<Obj<'v>> {
        match v {
            Value::Object(map) => Some(Obj {
                path: path.to_string(),
                map,
                used: HashSet::new(),
                asked: Vec::new(),
            }),
            other => {
                ctx.err(
                    path,
                    format!(
                        "must be a map (JSON object) describing {what}, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    pub fn p(&self, k: &str) -> String {
        join(&self.path, k)
    }

    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    pub fn take(&mut self, k: &str) -> Option<&'v Value> {
        if !self.asked.iter().any(|a| a == k) {
            self.asked.push(k.to_string());
        }
        let (key, v) = self.map.get_key_value(k)?;
        self.used.insert(key.as_str());
        Some(v)
    }

    pub fn accept(&mut self, k: &str) {
        let _ = self.take(k);
    }

    pub fn str(&mut self, ctx: &mut Ctx, k: &str) -> Option<&'v str> {
        match self.take(k)? {
            Value::String(s) => Some(s),
            other => {
                ctx.err(
                    &self.p(k),
                    format!("must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, ctx: &mut Ctx, k: &str) -> Option<bool> {
        match self.take(k)? {
            Value::Bool(b) => Some(*b),
            other => {
                ctx.err(
                    &self.p(k),
                    format!("must be true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&mut self, ctx: &mut Ctx, k: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.take(k)?;
        match v.as_i64() {
            Some(n) if n >= min && n <= max => Some(n),
            Some(n) => {
                ctx.err(
                    &self.p(k),
                    format!("{n} is out of range; it must be between {min} and {max}"),
                );
                None
            }
            None => {
                ctx.err(
                    &self.p(k),
                    format!(
                        "must be an integer between {min} and {max}, found {}",
                        type_name(v)
                    ),
                );
                None
            }
        }
    }

    pub fn u32(&mut self, ctx: &mut Ctx, k: &str) -> Option<u32> {
        self.int(ctx, k, 0, u32::MAX as i64).map(|n| n as u32)
    }

    pub fn f64(&mut self, ctx: &mut Ctx, k: &str) -> Option<f64> {
        let v = self.take(k)?;
        match v.as_f64() {
            Some(f) => Some(f),
            None => {
                ctx.err(
                    &self.p(k),
                    format!("must be a number, found {}", type_name(v)),
                );
                None
            }
        }
    }

    /// A list; each element with its path.
    pub fn list(&mut self, ctx: &mut Ctx, k: &str) -> Vec<(String, &'v Value)> {
        match self.take(k) {
            None => Vec::new(),
            Some(Value::Array(a)) => {
                let base = self.p(k);
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{base}[{i}]"), v))
                    .collect()
            }
            Some(other) => {
                ctx.err(
                    &self.p(k),
                    format!("must be a list, found {}", type_name(other)),
                );
                Vec::new()
            }
        }
    }

    /// A list of strings.
    pub fn str_list(&mut self, ctx: &mut Ctx, k: &str) -> Vec<(String, &'v str)> {
        let mut out = Vec::new();
        for (p, v) in self.list(ctx, k) {
            match v {
                Value::String(s) => out.push((p, s.as_str())),
                other => ctx.err(&p, format!("must be a string, found {}", type_name(other))),
            }
        }
        out
    }

    pub fn obj(&mut self, ctx: &mut Ctx, k: &str, what: &str) -> Option<Obj<'v>> {
        let v = self.take(k)?;
        let p = self.p(k);
        Obj::new(ctx, v, &p, what)
    }

    /// Reports every key not read: `user-context` and `comment` are always fine.
    pub fn finish(self, ctx: &mut Ctx) {
        for k in self.map.keys() {
            if self.used.contains(k.as_str()) || k == "user-context" || k == "comment" {
                continue;
            }
            let p = join(&self.path, k);
            if let Some((_, why)) = SAFE_IGNORED.iter().find(|(n, _)| {
                if n.ends_with('-') {
                    k.starts_with(n)
                } else {
                    k == n
                }
            }) {
                ctx.warn(&p, format!("ignored: {why}"));
            } else if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| k == n) {
                ctx.err(&p, format!("not supported: {why}"));
            } else {
                let hint = self
                    .asked
                    .iter()
                    .filter(|a| !self.map.contains_key(a.as_str()))
                    .map(|a| (edit_distance(a, k), a))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, a)| format!("; did you mean '{a}'?"))
                    .unwrap_or_default();
                ctx.err(
                    &p,
                    format!("unknown parameter '{k}' (not a Kea 2.2 parameter at this place: check the spelling and the nesting){hint}"),
                );
            }
        }
    }
}

/// Levenshtein distance, for spelling hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
