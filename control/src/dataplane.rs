//! The control process's view of the dataplane: Kea-style JSON commands over the dataplane's UNIX
//! control socket (one request per connection, one response map back; see the dataplane's
//! `control_socket.rs`). Behind the [`Dataplane`] trait so the HA shell can be tested with a fake.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::ha::commands::{parse_answer, Answer, Family};

/// Version of the control ⇄ dataplane IPC this control process speaks (`xdhcp-hello`).
/// 2: the HA commands (`xdhcp-ha-serving`, `xdhcp-ha-observations`, `xdhcp-alloc-policy`) name
/// their family, since a dual-stack dataplane gates each family for its own control process.
pub const IPC_VERSION: u64 = 2;
/// Largest response accepted from the dataplane (a full lease4-get-all of a big store).
const RESPONSE_MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error("dataplane control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataplane answer: {0}")]
    Wire(#[from] crate::ha::commands::WireError),
}

/// One command in, one answer out.
pub trait Dataplane: Send + Sync {
    fn call(&self, cmd: &Value) -> Result<Answer, DpError>;
}

/// The real dataplane, on its UNIX socket.
#[derive(Debug, Clone)]
pub struct UnixDataplane {
    pub path: PathBuf,
    pub timeout: Duration,
}

impl UnixDataplane {
    pub fn new(path: PathBuf) -> UnixDataplane {
        UnixDataplane {
            path,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Dataplane for UnixDataplane {
    fn call(&self, cmd: &Value) -> Result<Answer, DpError> {
        let io = |source| DpError::Io {
            path: self.path.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.path).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        s.write_all(cmd.to_string().as_bytes()).map_err(io)?;
        s.shutdown(std::net::Shutdown::Write).map_err(io)?;
        let mut buf = Vec::new();
        s.take(RESPONSE_MAX_BYTES)
            .read_to_end(&mut buf)
            .map_err(io)?;
        Ok(parse_answer(&buf)?)
    }
}

/// `{"command": name, "arguments": args}` as the dataplane takes it (no `service`).
pub fn cmd(name: &str, args: Option<Value>) -> Value {
    match args {
        Some(a) => json!({ "command": name, "arguments": a }),
        None => json!({ "command": name }),
    }
}

/// `xdhcp-hello {"version": 1}`; the dataplane answers with its version.
pub fn hello(dp: &dyn Dataplane) -> Result<u64, String> {
    let a = dp
        .call(&cmd("xdhcp-hello", Some(json!({ "version": IPC_VERSION }))))
        .map_err(|e| e.to_string())?;
    if a.result != 0 {
        return Err(a.text);
    }
    Ok(a.arguments
        .as_ref()
        .and_then(|v| v.get("version"))
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

/// One relationship's serving instruction for `xdhcp-ha-serving`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub this_server_name: String,
    pub enabled: bool,
    pub scopes: Vec<String>,
}

pub fn ha_serving(dp: &dyn Dataplane, family: Family, rels: &[Serving]) -> Result<(), String> {
    let list: Vec<Value> = rels
        .iter()
        .map(|r| json!({ "this-server-name": r.this_server_name, "enabled": r.enabled, "scopes": r.scopes }))
        .collect();
    let a = dp
        .call(&cmd(
            "xdhcp-ha-serving",
            Some(json!({ "family": family.number(), "relationships": list })),
        ))
        .map_err(|e| e.to_string())?;
    if a.result != 0 {
        return Err(a.text);
    }
    Ok(())
}

pub fn alloc_policy(
    dp: &dyn Dataplane,
    family: Family,
    relationship: &str,
    partner_free: bool,
) -> Result<(), String> {
    let a = dp
        .call(&cmd(
            "xdhcp-alloc-policy",
            Some(json!({ "family": family.number(), "relationship": relationship, "partner-free": partner_free })),
        ))
        .map_err(|e| e.to_string())?;
    if a.result != 0 {
        return Err(a.text);
    }
    Ok(())
}

/// Per relationship: packets analysed and the unanswered (out of scope) clients with their `secs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    pub this_server_name: String,
    pub analyzed: u64,
    pub unanswered: Vec<(Vec<u8>, u16)>,
}

pub fn observations(dp: &dyn Dataplane, family: Family) -> Result<Vec<Observations>, String> {
    let a = dp
        .call(&cmd(
            "xdhcp-ha-observations",
            Some(json!({ "family": family.number() })),
        ))
        .map_err(|e| e.to_string())?;
    if a.result != 0 {
        return Err(a.text);
    }
    let mut out = Vec::new();
    let rels = a
        .arguments
        .as_ref()
        .and_then(|v| v.get("relationships"))
        .and_then(Value::as_array);
    for r in rels.into_iter().flatten() {
        let mut o = Observations {
            this_server_name: r
                .get("this-server-name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            analyzed: r
                .get("analyzed-packets")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            unanswered: Vec::new(),
        };
        for u in r
            .get("unanswered")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = u
                .get("key")
                .and_then(Value::as_str)
                .and_then(crate::ha::commands::parse_hex);
            let secs = u
                .get("secs")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(u64::from(u16::MAX)) as u16;
            if let Some(k) = key {
                o.unanswered.push((k, secs));
            }
        }
        out.push(o);
    }
    Ok(out)
}

/// A scripted dataplane for unit tests: answers from a closure and records every call.
#[cfg(test)]
pub struct FakeDataplane {
    pub calls: parking_lot_free::Mutex<Vec<Value>>,
    pub answer: Box<dyn Fn(&Value) -> Answer + Send + Sync>,
}

#[cfg(test)]
mod parking_lot_free {
    pub type Mutex<T> = std::sync::Mutex<T>;
}

#[cfg(test)]
impl Dataplane for FakeDataplane {
    fn call(&self, cmd: &Value) -> Result<Answer, DpError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd.clone());
        Ok((self.answer)(cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip_and_observation_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = String::new();
            s.read_to_string(&mut req).unwrap();
            let v: Value = serde_json::from_str(&req).unwrap();
            assert_eq!(v["command"], "xdhcp-ha-observations");
            assert_eq!(v["arguments"]["family"], 6);
            s.write_all(
                br#"{"result":0,"text":"","arguments":{"relationships":[{"this-server-name":"server2","analyzed-packets":5,"unanswered":[{"key":"01:02","secs":12}]}]}}"#,
            )
            .unwrap();
        });
        let dp = UnixDataplane::new(path);
        let obs = observations(&dp, Family::V6).unwrap();
        t.join().unwrap();
        assert_eq!(
            obs,
            vec![Observations {
                this_server_name: "server2".into(),
                analyzed: 5,
                unanswered: vec![(vec![1, 2], 12)]
            }]
        );
    }

    #[test]
    fn fake_records_serving_calls() {
        let fake = FakeDataplane {
            calls: Default::default(),
            answer: Box::new(|_| Answer {
                result: 0,
                text: String::new(),
                arguments: None,
            }),
        };
        ha_serving(
            &fake,
            Family::V4,
            &[Serving {
                this_server_name: "s1".into(),
                enabled: true,
                scopes: vec!["s1".into()],
            }],
        )
        .unwrap();
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            calls[0],
            json!({"command":"xdhcp-ha-serving","arguments":{"family":4,"relationships":[{"this-server-name":"s1","enabled":true,"scopes":["s1"]}]}})
        );
    }
}
