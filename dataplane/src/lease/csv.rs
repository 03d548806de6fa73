//! Kea memfile CSV import and export (`kea-leases4.csv`, `kea-leases6.csv`), so users can move
//! between Kea 2.2 and xdhcp in both directions.
//!
//! The rules follow Kea 2.2's `CSVLeaseFile4/6`, `VersionedCSVFile` and `LeaseFileLoader`:
//! - the header names the columns; older files with fewer columns (down to `hostname`) are
//!   upgraded with Kea's defaults, files from newer versions with extra columns are accepted and
//!   the extra columns ignored;
//! - values are split on every comma (no quoting); `hostname` and `user_context` escape `,` and `&`
//!   as `&#x2c` / `&#x26` (we also escape control characters the same way, which Kea decodes);
//! - the file is an append log: the last row for an address wins, and a row with
//!   `valid_lifetime` 0 deletes the address;
//! - `cltt = expire - valid_lifetime`.
//!
//! xdhcp's lease records have no `user_context`: it is validated on import (a JSON map, as Kea
//! requires) and then dropped; export writes it empty. Offered leases are never exported.

use crate::lease::types::{HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseState};
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Kea 2.2's lease4 header (schema 2.1).
pub const LEASE4_HEADER: &str =
    "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";
/// Kea 2.2's lease6 header (schema 4.0).
pub const LEASE6_HEADER: &str =
    "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,\
prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source";

const V4_COLS: [&str; 11] = [
    "address",
    "hwaddr",
    "client_id",
    "valid_lifetime",
    "expire",
    "subnet_id",
    "fqdn_fwd",
    "fqdn_rev",
    "hostname",
    "state",
    "user_context",
];
/// Defaults Kea fills in when upgrading an older file (`addColumn(name, version, default)`).
const V4_DEFAULTS: [&str; 11] = ["", "", "", "", "", "", "", "", "", "0", ""];
const V6_COLS: [&str; 17] = [
    "address",
    "duid",
    "valid_lifetime",
    "expire",
    "subnet_id",
    "pref_lifetime",
    "lease_type",
    "iaid",
    "prefix_len",
    "fqdn_fwd",
    "fqdn_rev",
    "hostname",
    "hwaddr",
    "state",
    "user_context",
    "hwtype",
    "hwaddr_source",
];
const V6_DEFAULTS: [&str; 17] = [
    "", "", "", "", "", "", "", "", "", "", "", "", "", "0", "", "", "",
];

/// Kea's maximum DUID / client-id length.
const MAX_DUID_LEN: usize = 128;

/// An import or export failure; import errors carry the 1-based line number and the column.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("lease CSV: {0}")]
    Io(#[from] io::Error),
    #[error("lease CSV has no header line (empty file)")]
    NoHeader,
    #[error("lease CSV line {line}: invalid header: {reason}")]
    Header { line: usize, reason: String },
    #[error("lease CSV line {line}, column {column}: {reason}")]
    Field {
        line: usize,
        column: &'static str,
        reason: String,
    },
    #[error("lease CSV line {line}: {reason}")]
    Row { line: usize, reason: String },
}

impl CsvError {
    /// The line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            CsvError::Header { line, .. }
            | CsvError::Field { line, .. }
            | CsvError::Row { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// The result of a lenient import: leases plus the rows that were skipped (Kea's behaviour with
/// `max-row-errors` 0: log and go on).
#[derive(Debug, Default)]
pub struct CsvImport<L> {
    pub leases: Vec<L>,
    pub skipped: Vec<CsvError>,
    /// Rows read (valid or not), excluding the header.
    pub rows: usize,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub written: usize,
    /// Offered (not yet acknowledged) leases are not leases for Kea.
    pub skipped_offered: usize,
    /// Leases Kea would refuse to load: a v4 lease with neither hardware address nor a valid
    /// client-id, a v6 lease without DUID, unless declined.
    pub skipped_unrepresentable: usize,
}

// ---------------------------------------------------------------------------------------------
// Escaping and hex (Kea's CSVRow::escapeCharacters / unescapeCharacters, util::str)
// ---------------------------------------------------------------------------------------------

/// Escape `,` and `&` (and control characters, which would break the line format) as `&#xNN`.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c == ',' || c == '&' || (c as u32) < 0x20 || c == '\x7f';
    if !s.chars().any(needs) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) {
            out.push_str(&format!("&#x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Undo `&#xNN` escapes; a tag not followed by two hex digits is kept as text (as Kea does).
pub fn unescape(s: &str) -> Result<String, String> {
    const TAG: &[u8] = b"&#x";
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(TAG) {
            let d = &b[i + 3..];
            if d.len() >= 2 && d[0].is_ascii_hexdigit() && d[1].is_ascii_hexdigit() {
                let hi = (d[0] as char).to_digit(16).unwrap_or(0);
                let lo = (d[1] as char).to_digit(16).unwrap_or(0);
                out.push((hi * 16 + lo) as u8);
                i += 5;
            } else {
                out.extend_from_slice(TAG);
                i += 3;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8 after unescaping".to_string())
}

fn push_hex_colon(out: &mut String, b: &[u8]) {
    use std::fmt::Write as _;
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{x:02x}");
    }
}

fn hex_colon(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    push_hex_colon(&mut s, b);
    s
}

/// Kea's `decodeSeparatedHexString`: tokens of one or two hex digits; an empty string is empty.
fn decode_separated(s: &str, sep: char) -> Result<Vec<u8>, String> {
    let tokens: Vec<&str> = s.split(sep).collect();
    let mut out = Vec::with_capacity(tokens.len());
    for t in &tokens {
        if tokens.len() > 1 && t.is_empty() {
            return Err(format!("two consecutive separators in '{s}'"));
        }
        if t.len() > 2 {
            return Err(format!("invalid hex octet '{t}' in '{s}'"));
        }
        if t.is_empty() {
            continue;
        }
        let v =
            u8::from_str_radix(t, 16).map_err(|_| format!("'{t}' is not hexadecimal in '{s}'"))?;
        out.push(v);
    }
    Ok(out)
}

/// Kea's `decodeFormattedHexString`: colon- or space-separated octets, or plain hex digits with an
/// optional `0x` prefix (an odd count gets a leading zero).
fn decode_formatted(s: &str) -> Result<Vec<u8>, String> {
    if s.contains(':') {
        return decode_separated(s, ':');
    }
    if s.contains(' ') {
        return decode_separated(s, ' ');
    }
    let digits = if s.len() > 2 && s.starts_with("0x") {
        &s[2..]
    } else {
        s
    };
    let padded: String = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    let mut out = Vec::with_capacity(padded.len() / 2);
    for i in (0..padded.len()).step_by(2) {
        let t = padded
            .get(i..i + 2)
            .ok_or_else(|| format!("'{s}' is not a valid string of hexadecimal digits"))?;
        out.push(
            u8::from_str_radix(t, 16)
                .map_err(|_| format!("'{s}' is not a valid string of hexadecimal digits"))?,
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// How the file's header relates to the schema we know (Kea's input schema state).
struct Schema {
    cols: &'static [&'static str],
    defaults: &'static [&'static str],
    /// Columns the file's header has.
    header_count: usize,
    /// Leading header columns that match ours.
    valid_count: usize,
}

impl Schema {
    fn from_header(
        line: usize,
        header: &str,
        cols: &'static [&'static str],
        defaults: &'static [&'static str],
        min_valid: usize,
    ) -> Result<Schema, CsvError> {
        let names: Vec<&str> = header.split(',').collect();
        let mut i = 0;
        while i < names.len() && i < cols.len() {
            if names[i] != cols[i] {
                return Err(CsvError::Header {
                    line,
                    reason: format!("column {} is '{}', expected '{}'", i + 1, names[i], cols[i]),
                });
            }
            i += 1;
        }
        if i < min_valid {
            return Err(CsvError::Header {
                line,
                reason: format!(
                    "only {i} known column(s); a Kea lease file has at least {min_valid}"
                ),
            });
        }
        Ok(Schema {
            cols,
            defaults,
            header_count: names.len(),
            valid_count: i,
        })
    }

    /// Split a row and bring it to our column count, as Kea's VersionedCSVFile::next does.
    fn row<'a>(&self, line: usize, text: &'a str) -> Result<Vec<&'a str>, CsvError> {
        let mut v: Vec<&'a str> = text.split(',').collect();
        let n = v.len();
        let ncols = self.cols.len();
        if self.valid_count < ncols {
            // Older file: fill missing columns with defaults.
            if n < self.valid_count || n > ncols {
                return Err(CsvError::Row {
                    line,
                    reason: format!(
                        "{n} columns; this file's header needs {}..={ncols}",
                        self.valid_count
                    ),
                });
            }
            v.extend_from_slice(&self.defaults[n..ncols]);
        } else if self.header_count > ncols {
            // Newer file: drop the extra columns.
            if n < ncols || n > self.header_count {
                return Err(CsvError::Row {
                    line,
                    reason: format!(
                        "{n} columns; this file's header needs {ncols}..={}",
                        self.header_count
                    ),
                });
            }
            v.truncate(ncols);
        } else if n != ncols {
            return Err(CsvError::Row {
                line,
                reason: format!("{n} columns, the header has {ncols}"),
            });
        }
        Ok(v)
    }
}

struct Row<'a> {
    line: usize,
    v: Vec<&'a str>,
    cols: &'static [&'static str],
}

impl<'a> Row<'a> {
    fn idx(&self, col: &'static str) -> usize {
        // The column tables are constants; every name asked for is in them.
        self.cols.iter().position(|c| *c == col).unwrap_or(0)
    }
    fn get(&self, col: &'static str) -> &'a str {
        self.v.get(self.idx(col)).copied().unwrap_or("")
    }
    fn err(&self, column: &'static str, reason: impl Into<String>) -> CsvError {
        CsvError::Field {
            line: self.line,
            column,
            reason: reason.into(),
        }
    }
    fn num<T: std::str::FromStr>(&self, col: &'static str) -> Result<T, CsvError> {
        let s = self.get(col);
        s.parse::<T>()
            .map_err(|_| self.err(col, format!("'{s}' is not a valid number")))
    }
    fn flag(&self, col: &'static str) -> Result<bool, CsvError> {
        match self.get(col) {
            "1" => Ok(true),
            "0" => Ok(false),
            s => Err(self.err(col, format!("'{s}' is not 0 or 1"))),
        }
    }
    fn state(&self) -> Result<LeaseState, CsvError> {
        let code: u64 = self.num("state")?;
        LeaseState::from_kea_code(code)
            .ok_or_else(|| self.err("state", format!("unknown lease state {code}")))
    }
    fn hostname(&self) -> Result<Option<Arc<str>>, CsvError> {
        let h = unescape(self.get("hostname")).map_err(|e| self.err("hostname", e))?;
        Ok(if h.is_empty() {
            None
        } else {
            Some(Arc::from(h))
        })
    }
    fn check_user_context(&self) -> Result<(), CsvError> {
        let raw = unescape(self.get("user_context")).map_err(|e| self.err("user_context", e))?;
        if raw.is_empty() {
            return Ok(());
        }
        match serde_json::from_str::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            _ => Err(self.err("user_context", format!("'{raw}' is not a JSON map"))),
        }
    }
    fn cltt(&self, valid: u32) -> Result<u64, CsvError> {
        let expire: u64 = self.num("expire")?;
        expire.checked_sub(u64::from(valid)).ok_or_else(|| {
            self.err(
                "expire",
                format!("{expire} is before valid_lifetime {valid} after the epoch"),
            )
        })
    }
}

fn hwaddr_from(row: &Row<'_>, col: &'static str, htype: u8) -> Result<HwAddr, CsvError> {
    let b = decode_separated(row.get(col), ':').map_err(|e| row.err(col, e))?;
    if b.len() > 16 {
        return Err(row.err(col, format!("{} bytes; xdhcp keeps at most 16", b.len())));
    }
    if b.is_empty() {
        // One representation of "no hardware address", whatever type Kea assumed.
        return Ok(HwAddr::default());
    }
    Ok(HwAddr::new(htype, &b))
}

fn parse_lease4(row: &Row<'_>) -> Result<Lease4, CsvError> {
    let addr: Ipv4Addr = row.get("address").parse().map_err(|_| {
        row.err(
            "address",
            format!("'{}' is not an IPv4 address", row.get("address")),
        )
    })?;
    let cid_text = row.get("client_id");
    let client_id: IdBuf = if cid_text.is_empty() {
        IdBuf::new()
    } else {
        let b = decode_formatted(cid_text).map_err(|e| row.err("client_id", e))?;
        if b.len() < 2 || b.len() > MAX_DUID_LEN {
            return Err(row.err(
                "client_id",
                format!("{} bytes; a client-id has 2 to {MAX_DUID_LEN}", b.len()),
            ));
        }
        IdBuf::from_vec(b)
    };
    let hwaddr = hwaddr_from(row, "hwaddr", 1)?;
    let state = row.state()?;
    if hwaddr.is_empty() && client_id.is_empty() && state != LeaseState::Declined {
        return Err(CsvError::Row {
            line: row.line,
            reason: format!("lease {addr} has neither hardware address nor client id"),
        });
    }
    row.check_user_context()?;
    let valid_lft: u32 = row.num("valid_lifetime")?;
    Ok(Lease4 {
        addr,
        hwaddr,
        client_id,
        subnet_id: row.num("subnet_id")?,
        cltt: row.cltt(valid_lft)?,
        valid_lft,
        state,
        fqdn_fwd: row.flag("fqdn_fwd")?,
        fqdn_rev: row.flag("fqdn_rev")?,
        hostname: row.hostname()?,
    })
}

fn parse_lease6(row: &Row<'_>) -> Result<Lease6, CsvError> {
    let addr: Ipv6Addr = row.get("address").parse().map_err(|_| {
        row.err(
            "address",
            format!("'{}' is not an IPv6 address", row.get("address")),
        )
    })?;
    let duid = decode_formatted(row.get("duid")).map_err(|e| row.err("duid", e))?;
    if duid.is_empty() || duid.len() > MAX_DUID_LEN {
        return Err(row.err(
            "duid",
            format!("{} bytes; a DUID has 1 to {MAX_DUID_LEN}", duid.len()),
        ));
    }
    let state = row.state()?;
    // Kea's DUID::EMPTY() is the single byte 0, allowed only on declined leases.
    if duid == [0] && state != LeaseState::Declined {
        return Err(CsvError::Row {
            line: row.line,
            reason: "the empty DUID is only valid for declined leases".into(),
        });
    }
    let lease_type = match row.num::<i64>("lease_type")? {
        0 => Lease6Type::Na,
        1 => Lease6Type::Ta,
        2 => Lease6Type::Pd,
        t => return Err(row.err("lease_type", format!("unknown lease type {t}"))),
    };
    let prefix_len: u8 = match row.num::<i64>("prefix_len")? {
        p @ 0..=128 => p as u8,
        p => return Err(row.err("prefix_len", format!("{p} is not 0..128"))),
    };
    // Kea logs a bad hardware address in a v6 lease and carries on without it.
    let hwaddr = {
        let htype = match row.get("hwtype") {
            "" => Some(1u8),
            s => s.parse::<u8>().ok(),
        };
        match htype.map(|t| hwaddr_from(row, "hwaddr", t)) {
            Some(Ok(hw)) if !hw.is_empty() => Some(hw),
            Some(Err(e)) => {
                tracing::warn!("{e}; importing the lease without a hardware address");
                None
            }
            _ => None,
        }
    };
    row.check_user_context()?;
    let valid_lft: u32 = row.num("valid_lifetime")?;
    Ok(Lease6 {
        addr,
        prefix_len,
        lease_type,
        duid: if duid == [0] {
            IdBuf::new()
        } else {
            IdBuf::from_vec(duid)
        },
        iaid: row.num("iaid")?,
        subnet_id: row.num("subnet_id")?,
        cltt: row.cltt(valid_lft)?,
        valid_lft,
        preferred_lft: row.num("pref_lifetime")?,
        state,
        hwaddr,
        fqdn_fwd: row.flag("fqdn_fwd")?,
        fqdn_rev: row.flag("fqdn_rev")?,
        hostname: row.hostname()?,
    })
}

/// Read a Kea memfile, applying its rows in order (last row per key wins; `valid_lifetime` 0
/// deletes). `strict` stops at the first bad row; otherwise bad rows are collected and skipped.
fn read_generic<R: BufRead, L, K: std::hash::Hash + Eq + Ord + Copy>(
    reader: R,
    cols: &'static [&'static str],
    defaults: &'static [&'static str],
    strict: bool,
    parse: impl Fn(&Row<'_>) -> Result<L, CsvError>,
    key: impl Fn(&L) -> K,
    valid: impl Fn(&L) -> u32,
) -> Result<CsvImport<L>, CsvError> {
    let min_valid = cols
        .iter()
        .position(|c| *c == "hostname")
        .map_or(cols.len(), |i| i + 1);
    let mut schema: Option<Schema> = None;
    let mut map: HashMap<K, L> = HashMap::new();
    let mut skipped = Vec::new();
    let mut rows = 0;
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line?;
        let text = line.strip_suffix('\r').unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        let Some(s) = &schema else {
            schema = Some(Schema::from_header(
                lineno, text, cols, defaults, min_valid,
            )?);
            continue;
        };
        rows += 1;
        let parsed = s.row(lineno, text).and_then(|v| {
            parse(&Row {
                line: lineno,
                v,
                cols,
            })
        });
        match parsed {
            Ok(l) => {
                let k = key(&l);
                if valid(&l) == 0 {
                    map.remove(&k);
                } else {
                    map.insert(k, l);
                }
            }
            Err(e) if strict => return Err(e),
            Err(e) => skipped.push(e),
        }
    }
    if schema.is_none() {
        return Err(CsvError::NoHeader);
    }
    let mut leases: Vec<(K, L)> = map.into_iter().collect();
    leases.sort_by_key(|(k, _)| *k);
    Ok(CsvImport {
        leases: leases.into_iter().map(|(_, l)| l).collect(),
        skipped,
        rows,
    })
}

/// Import a Kea lease4 memfile. Stops at the first invalid row (error names line and column).
pub fn read_lease4_csv<R: BufRead>(reader: R) -> Result<Vec<Lease4>, CsvError> {
    read_generic(
        reader,
        &V4_COLS,
        &V4_DEFAULTS,
        true,
        parse_lease4,
        |l| l.addr,
        |l| l.valid_lft,
    )
    .map(|i| i.leases)
}

/// Import a Kea lease4 memfile as Kea itself loads it: invalid rows are skipped and reported.
pub fn read_lease4_csv_lenient<R: BufRead>(reader: R) -> Result<CsvImport<Lease4>, CsvError> {
    read_generic(
        reader,
        &V4_COLS,
        &V4_DEFAULTS,
        false,
        parse_lease4,
        |l| l.addr,
        |l| l.valid_lft,
    )
}

/// Import a Kea lease6 memfile (keyed by address, as Kea's memfile is).
pub fn read_lease6_csv<R: BufRead>(reader: R) -> Result<Vec<Lease6>, CsvError> {
    read_generic(
        reader,
        &V6_COLS,
        &V6_DEFAULTS,
        true,
        parse_lease6,
        |l| l.addr,
        |l| l.valid_lft,
    )
    .map(|i| i.leases)
}

/// Lenient lease6 import (see [`read_lease4_csv_lenient`]).
pub fn read_lease6_csv_lenient<R: BufRead>(reader: R) -> Result<CsvImport<Lease6>, CsvError> {
    read_generic(
        reader,
        &V6_COLS,
        &V6_DEFAULTS,
        false,
        parse_lease6,
        |l| l.addr,
        |l| l.valid_lft,
    )
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// Export lease4s as a Kea 2.2 memfile (header + one row per lease).
pub fn write_lease4_csv<'a, W: Write>(
    mut w: W,
    leases: impl IntoIterator<Item = &'a Lease4>,
) -> Result<ExportStats, CsvError> {
    let mut st = ExportStats::default();
    writeln!(w, "{LEASE4_HEADER}")?;
    let mut line = String::with_capacity(160);
    for l in leases {
        if l.state == LeaseState::Offered {
            st.skipped_offered += 1;
            continue;
        }
        // Kea refuses client-ids shorter than 2 bytes on load; leave such an id out.
        let cid = if l.client_id.len() >= 2 && l.client_id.len() <= MAX_DUID_LEN {
            &l.client_id[..]
        } else {
            &[]
        };
        if l.hwaddr.is_empty() && cid.is_empty() && l.state != LeaseState::Declined {
            st.skipped_unrepresentable += 1;
            continue;
        }
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(line, "{},", l.addr);
        push_hex_colon(&mut line, l.hwaddr.as_slice());
        line.push(',');
        push_hex_colon(&mut line, cid);
        let _ = write!(
            line,
            ",{},{},{},{},{},{},{},",
            l.valid_lft,
            l.expire(),
            l.subnet_id,
            flag(l.fqdn_fwd),
            flag(l.fqdn_rev),
            escape(l.hostname.as_deref().unwrap_or("")),
            l.state.kea_code()
        );
        line.push('\n');
        w.write_all(line.as_bytes())?;
        st.written += 1;
    }
    w.flush()?;
    Ok(st)
}

/// Export lease6s as a Kea 2.2 memfile.
pub fn write_lease6_csv<'a, W: Write>(
    mut w: W,
    leases: impl IntoIterator<Item = &'a Lease6>,
) -> Result<ExportStats, CsvError> {
    let mut st = ExportStats::default();
    writeln!(w, "{LEASE6_HEADER}")?;
    let mut line = String::with_capacity(200);
    for l in leases {
        if l.state == LeaseState::Offered {
            st.skipped_offered += 1;
            continue;
        }
        let duid = if l.duid.is_empty() || l.duid.len() > MAX_DUID_LEN {
            if l.state != LeaseState::Declined {
                st.skipped_unrepresentable += 1;
                continue;
            }
            "00".to_string()
        } else {
            hex_colon(&l.duid)
        };
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "{},{},{},{},{},{},{},{},{},{},{},{},",
            l.addr,
            duid,
            l.valid_lft,
            l.expire(),
            l.subnet_id,
            l.preferred_lft,
            l.lease_type as u8,
            l.iaid,
            l.prefix_len,
            flag(l.fqdn_fwd),
            flag(l.fqdn_rev),
            escape(l.hostname.as_deref().unwrap_or("")),
        );
        if let Some(hw) = l.hwaddr.as_ref().filter(|h| !h.is_empty()) {
            push_hex_colon(&mut line, hw.as_slice());
            // hwaddr_source 0 is Kea's HWADDR_SOURCE_UNKNOWN.
            let _ = write!(line, ",{},,{},0", l.state.kea_code(), hw.htype);
        } else {
            let _ = write!(line, ",{},,,", l.state.kea_code());
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
        st.written += 1;
    }
    w.flush()?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_kea() {
        assert_eq!(escape("a,b&c"), "a&#x2cb&#x26c");
        assert_eq!(unescape("a&#x2cb&#x26c").unwrap(), "a,b&c");
        assert_eq!(unescape("&#x2C").unwrap(), ",");
        // A tag without two hex digits stays text.
        assert_eq!(unescape("x&#xzz").unwrap(), "x&#xzz");
        assert_eq!(unescape("&#x").unwrap(), "&#x");
        assert_eq!(unescape(&escape("&#x2c")).unwrap(), "&#x2c");
    }

    #[test]
    fn hex_formats_as_kea_decodes_them() {
        assert_eq!(decode_formatted("01:02:0a").unwrap(), vec![1, 2, 10]);
        assert_eq!(decode_formatted("0x01020a").unwrap(), vec![1, 2, 10]);
        assert_eq!(decode_formatted("1020a").unwrap(), vec![1, 2, 10]);
        assert_eq!(decode_formatted("01 02").unwrap(), vec![1, 2]);
        assert!(decode_formatted("01::02").is_err());
        assert!(decode_formatted("zz").is_err());
        assert_eq!(decode_separated("a:b", ':').unwrap(), vec![10, 11]);
        assert_eq!(decode_separated("", ':').unwrap(), Vec::<u8>::new());
        assert!(decode_separated("123:4", ':').is_err());
    }
}
