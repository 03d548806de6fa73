//! The server DUID (RFC 8415 §11): generated from Kea's `server-id` configuration (DUID-LLT by
//! default, from an interface MAC and the current time; DUID-EN; DUID-LL) and persisted so a
//! restarted server keeps its identity, as Kea keeps `kea-dhcp6-serverid`. The file holds the DUID
//! as colon-separated hex on one line (Kea's format). The file is read and written once at
//! startup by the shell; the engine only ever sees the bytes.

use std::path::{Path, PathBuf};
use xdhcp_config::model::{Dhcp6, ServerIdConfig};

/// File name inside the data directory.
pub const DUID_FILE: &str = "xdhcp-dhcp6-serverid";
/// Seconds between the unix epoch and 2000-01-01 00:00 UTC (the DUID-LLT time origin).
const DUID_EPOCH_OFFSET: u64 = 946_684_800;
/// ISC's enterprise number, Kea's default for DUID-EN.
pub const ISC_ENTERPRISE: u32 = 2495;

#[derive(Debug, thiserror::Error)]
pub enum DuidError {
    #[error("Dhcp6.server-id.type '{0}' is not LLT, EN or LL")]
    UnknownType(String),
    #[error("Dhcp6.server-id: a DUID-{0} needs a link-layer address: set server-id.identifier or serve an interface with a MAC address")]
    NoLinkLayer(&'static str),
    #[error("server DUID file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the DUID file lives: `data-directory`, else the lease database's directory, else the
/// current directory.
pub fn duid_path(d6: &Dhcp6) -> PathBuf {
    let dir = d6
        .data_directory
        .clone()
        .or_else(|| {
            d6.lease_database
                .path
                .as_ref()
                .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(DUID_FILE)
}

/// Build a DUID as configured. `mac` is the first served interface's MAC; `now_unix` the time;
/// `random` six bytes for a DUID-EN without a configured identifier.
pub fn generate(
    cfg: &ServerIdConfig,
    mac: Option<[u8; 6]>,
    now_unix: u64,
    random: [u8; 6],
) -> Result<Vec<u8>, DuidError> {
    let htype = cfg.htype.unwrap_or(1);
    let link = |kind: &'static str| -> Result<Vec<u8>, DuidError> {
        match (&cfg.identifier, mac) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(m)) => Ok(m.to_vec()),
            (None, None) => Err(DuidError::NoLinkLayer(kind)),
        }
    };
    let mut d = Vec::with_capacity(18);
    match cfg.kind.to_ascii_uppercase().as_str() {
        "LLT" | "" => {
            let time = cfg
                .time
                .unwrap_or_else(|| now_unix.saturating_sub(DUID_EPOCH_OFFSET) as u32);
            d.extend_from_slice(&1u16.to_be_bytes());
            d.extend_from_slice(&htype.to_be_bytes());
            d.extend_from_slice(&time.to_be_bytes());
            d.extend_from_slice(&link("LLT")?);
        }
        "EN" => {
            d.extend_from_slice(&2u16.to_be_bytes());
            d.extend_from_slice(&cfg.enterprise_id.unwrap_or(ISC_ENTERPRISE).to_be_bytes());
            match &cfg.identifier {
                Some(id) => d.extend_from_slice(id),
                None => d.extend_from_slice(&random),
            }
        }
        "LL" => {
            d.extend_from_slice(&3u16.to_be_bytes());
            d.extend_from_slice(&htype.to_be_bytes());
            d.extend_from_slice(&link("LL")?);
        }
        other => return Err(DuidError::UnknownType(other.to_string())),
    }
    Ok(d)
}

/// Whether a stored DUID still agrees with the configuration: same type, and every field the
/// configuration sets explicitly has the configured value (Kea regenerates otherwise).
pub fn matches_config(duid: &[u8], cfg: &ServerIdConfig) -> bool {
    if duid.len() < 2 {
        return false;
    }
    let ty = u16::from_be_bytes([duid[0], duid[1]]);
    match (cfg.kind.to_ascii_uppercase().as_str(), ty) {
        ("LLT" | "", 1) if duid.len() >= 8 => {
            cfg.htype.is_none_or(|h| h.to_be_bytes() == duid[2..4])
                && cfg.time.is_none_or(|t| t.to_be_bytes() == duid[4..8])
                && cfg
                    .identifier
                    .as_ref()
                    .is_none_or(|id| id.as_slice() == &duid[8..])
        }
        ("EN", 2) if duid.len() >= 6 => {
            cfg.enterprise_id
                .is_none_or(|e| e.to_be_bytes() == duid[2..6])
                && cfg
                    .identifier
                    .as_ref()
                    .is_none_or(|id| id.as_slice() == &duid[6..])
        }
        ("LL", 3) if duid.len() >= 4 => {
            cfg.htype.is_none_or(|h| h.to_be_bytes() == duid[2..4])
                && cfg
                    .identifier
                    .as_ref()
                    .is_none_or(|id| id.as_slice() == &duid[4..])
        }
        _ => false,
    }
}

fn parse_file(text: &str) -> Option<Vec<u8>> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let d = crate::lease::json::parse_hex(line).ok()?;
    (2..=130).contains(&d.len()).then_some(d)
}

fn random6() -> [u8; 6] {
    let mut b = [0u8; 6];
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        // 36 characters of a fresh random UUID: fold them into six bytes.
        for (i, c) in bytes.iter().enumerate() {
            b[i % 6] = b[i % 6].rotate_left(3) ^ c;
        }
    }
    b
}

/// The server DUID for `d6`: the persisted one if it agrees with the configuration, otherwise a
/// new one (written to the file when `server-id.persist` is true). Runs at startup only.
pub fn load_or_create(
    d6: &Dhcp6,
    mac: Option<[u8; 6]>,
    now_unix: u64,
) -> Result<Vec<u8>, DuidError> {
    let cfg = &d6.server_id;
    let path = duid_path(d6);
    if cfg.persist {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(d) = parse_file(&text).filter(|d| matches_config(d, cfg)) {
                    return Ok(d);
                }
                tracing::warn!(file = %path.display(), "stored server DUID is unreadable or differs from Dhcp6.server-id; generating a new one");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DuidError::Io { path, source: e }),
        }
    }
    let d = generate(cfg, mac, now_unix, random6())?;
    if cfg.persist {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DuidError::Io {
                path: path.clone(),
                source: e,
            })?;
        }
        let tmp = path.with_extension("tmp");
        let text = format!("{}\n", crate::lease::json::hex_colon(&d));
        std::fs::write(&tmp, text).map_err(|e| DuidError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| DuidError::Io {
            path: path.clone(),
            source: e,
        })?;
        tracing::info!(file = %path.display(), duid = %crate::lease::json::hex_colon(&d), "generated a new server DUID");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(kind: &str) -> ServerIdConfig {
        ServerIdConfig {
            kind: kind.into(),
            identifier: None,
            htype: None,
            time: None,
            enterprise_id: None,
            persist: true,
        }
    }

    #[test]
    fn llt_from_mac_and_time() {
        let d = generate(
            &sid("LLT"),
            Some([2, 0, 0, 0, 0, 9]),
            DUID_EPOCH_OFFSET + 1000,
            [0; 6],
        )
        .unwrap();
        assert_eq!(d, vec![0, 1, 0, 1, 0, 0, 0x03, 0xe8, 2, 0, 0, 0, 0, 9]);
        assert!(matches_config(&d, &sid("LLT")));
        assert!(!matches_config(&d, &sid("EN")));
        let mut fixed = sid("LLT");
        fixed.time = Some(5);
        assert!(!matches_config(&d, &fixed));
    }

    #[test]
    fn en_and_ll() {
        let mut c = sid("EN");
        c.identifier = Some(vec![0xab, 0xcd]);
        assert_eq!(
            generate(&c, None, 0, [0; 6]).unwrap(),
            vec![0, 2, 0, 0, 0x09, 0xbf, 0xab, 0xcd]
        );
        assert_eq!(
            generate(&sid("LL"), Some([1, 2, 3, 4, 5, 6]), 0, [0; 6]).unwrap(),
            vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]
        );
        assert!(generate(&sid("LL"), None, 0, [0; 6]).is_err());
        assert!(generate(&sid("XX"), None, 0, [0; 6]).is_err());
    }
}
