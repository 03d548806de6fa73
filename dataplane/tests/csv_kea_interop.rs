//! Interoperability with a real Kea 2.2: Kea loads the memfile CSV we export (checked through its
//! own `lease4-get-all` / `lease6-get-all`), and we import the CSV Kea writes after `leaseX-add`,
//! `leaseX-update` and `leaseX-del`. Kea runs with no interfaces, everything in a temporary
//! directory, and is killed at the end whatever happens.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use xdhcp_dataplane::lease::csv::*;
use xdhcp_dataplane::lease::types::{HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseState};

const HOOK: &str = "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_lease_cmds.so";

/// Kills Kea when dropped, also when an assertion fails.
struct Kea {
    child: Child,
    log: PathBuf,
}

impl Drop for Kea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn require(path: &str, pkg: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install it with `apt-get install {pkg}` (this test runs a real Kea 2.2)"
    );
}

fn start_kea(bin: &str, dir: &Path, config: Value) -> Kea {
    let cfg_path = dir.join("kea.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let log = dir.join("kea.log");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&cfg_path)
        .env("KEA_PIDFILE_DIR", dir)
        .env("KEA_LOCKFILE_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("kea.stdout")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("kea.stderr")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let mut kea = Kea { child, log };
    let sock = dir.join("kea.sock");
    let t0 = Instant::now();
    while !sock.exists() {
        if let Ok(Some(st)) = kea.child.try_wait() {
            panic!("{bin} exited with {st}: {}", diagnostics(dir, &kea.log));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{bin} did not open its control socket: {}",
            diagnostics(dir, &kea.log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kea
}

fn diagnostics(dir: &Path, log: &Path) -> String {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    format!(
        "log:\n{}\nstdout:\n{}\nstderr:\n{}",
        read(log.to_path_buf()),
        read(dir.join("kea.stdout")),
        read(dir.join("kea.stderr"))
    )
}

fn command(dir: &Path, cmd: Value) -> Value {
    let mut s = UnixStream::connect(dir.join("kea.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(cmd.to_string().as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let t0 = Instant::now();
    loop {
        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no complete answer to {cmd}"
        );
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading Kea's answer to {cmd}: {e}"),
        }
    }
    serde_json::from_slice(&buf).unwrap_or_else(|e| {
        panic!(
            "answer to {cmd} is not JSON ({e}): {}",
            String::from_utf8_lossy(&buf)
        )
    })
}

fn ok(dir: &Path, cmd: Value) -> Value {
    let r = command(dir, cmd.clone());
    assert_eq!(r["result"], 0, "{cmd} failed: {r}");
    r
}

fn logging(dir: &Path, name: &str) -> Value {
    json!([{"name": name, "output_options": [{"output": dir.join("kea.log")}], "severity": "INFO"}])
}

fn hexc(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn kea_dhcp4_reads_our_export_and_we_read_its_memfile() {
    require("/usr/sbin/kea-dhcp4", "kea-dhcp4-server");
    require(HOOK, "kea-dhcp4-server");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = now();
    let mk = |last: u8, state: LeaseState, cid: bool, host: Option<&str>| Lease4 {
        addr: Ipv4Addr::new(192, 0, 2, last),
        hwaddr: if state == LeaseState::Declined {
            HwAddr::default()
        } else {
            HwAddr::ethernet([2, 0, 0, 0, 0, last])
        },
        client_id: if cid {
            IdBuf::from_slice(&[1, 2, 0, 0, 0, 0, last])
        } else {
            IdBuf::new()
        },
        subnet_id: 1,
        cltt: t - 100,
        valid_lft: 3600 + u32::from(last),
        state,
        fqdn_fwd: last % 2 == 0,
        fqdn_rev: last % 3 == 0,
        hostname: host.map(Arc::from),
    };
    let ours = vec![
        mk(10, LeaseState::Assigned, true, Some("alpha,beta&gamma")),
        mk(11, LeaseState::Assigned, false, None),
        mk(12, LeaseState::Declined, false, None),
        mk(13, LeaseState::ExpiredReclaimed, true, Some("old.example")),
        mk(14, LeaseState::Assigned, true, Some("plain")),
    ];
    let csv = d.join("leases4.csv");
    write_lease4_csv(std::fs::File::create(&csv).unwrap(), &ours).unwrap();

    let config = json!({"Dhcp4": {
        "interfaces-config": {"interfaces": []},
        "control-socket": {"socket-type": "unix", "socket-name": d.join("kea.sock")},
        "lease-database": {"type": "memfile", "name": csv, "persist": true, "lfc-interval": 0},
        "hooks-libraries": [{"library": HOOK}],
        "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.100 - 192.0.2.200"}]}],
        "loggers": logging(d, "kea-dhcp4"),
    }});
    let kea = start_kea("/usr/sbin/kea-dhcp4", d, config);

    // 1. Kea loaded every lease of our export, field by field.
    let r = ok(d, json!({"command": "lease4-get-all"}));
    let mut leases = r["arguments"]["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    leases.sort_by_key(|l| {
        l["ip-address"]
            .as_str()
            .unwrap_or("")
            .parse::<Ipv4Addr>()
            .ok()
    });
    assert_eq!(
        leases.len(),
        ours.len(),
        "Kea loaded {leases:?}\n{}",
        diagnostics(d, &kea.log)
    );
    for (k, o) in leases.iter().zip(&ours) {
        assert_eq!(k["ip-address"], o.addr.to_string());
        assert_eq!(k["hw-address"], hexc(o.hwaddr.as_slice()), "{k}");
        if o.client_id.is_empty() {
            assert!(k.get("client-id").is_none(), "{k}");
        } else {
            assert_eq!(k["client-id"], hexc(&o.client_id), "{k}");
        }
        assert_eq!(k["valid-lft"], o.valid_lft, "{k}");
        assert_eq!(k["cltt"], o.cltt, "{k}");
        assert_eq!(k["subnet-id"], o.subnet_id, "{k}");
        assert_eq!(k["state"], o.state.kea_code(), "{k}");
        assert_eq!(k["fqdn-fwd"], o.fqdn_fwd, "{k}");
        assert_eq!(k["fqdn-rev"], o.fqdn_rev, "{k}");
        assert_eq!(k["hostname"], o.hostname.as_deref().unwrap_or(""), "{k}");
    }

    // 2. Kea appends to the memfile; we read what it wrote.
    ok(
        d,
        json!({"command": "lease4-add", "arguments": {
            "ip-address": "192.0.2.150", "hw-address": "1a:1b:1c:1d:1e:1f", "client-id": "01:1a:1b:1c:1d:1e:1f",
            "hostname": "added,by&kea", "valid-lft": 7200, "subnet-id": 1, "fqdn-fwd": true, "fqdn-rev": true,
            "user-context": {"comment": "a, b"}
        }}),
    );
    ok(
        d,
        json!({"command": "lease4-update", "arguments": {
            "ip-address": "192.0.2.14", "hw-address": "02:00:00:00:00:0e", "hostname": "renamed", "valid-lft": 600,
            "subnet-id": 1
        }}),
    );
    ok(
        d,
        json!({"command": "lease4-del", "arguments": {"ip-address": "192.0.2.11"}}),
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.lines().count() >= 1 + ours.len() + 3,
        "Kea appended rows:\n{text}"
    );
    assert!(
        text.contains("added&#x2cby&#x26kea"),
        "Kea escapes hostnames as we expect:\n{text}"
    );
    let back = read_lease4_csv(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let addrs: Vec<Ipv4Addr> = back.iter().map(|l| l.addr).collect();
    assert_eq!(
        addrs,
        [
            "192.0.2.10",
            "192.0.2.12",
            "192.0.2.13",
            "192.0.2.14",
            "192.0.2.150"
        ]
        .iter()
        .map(|s| s.parse::<Ipv4Addr>().unwrap())
        .collect::<Vec<_>>(),
        "last row wins, the deleted lease is gone:\n{text}"
    );
    for l in &back {
        if let Some(o) = ours
            .iter()
            .find(|o| o.addr == l.addr && o.addr != Ipv4Addr::new(192, 0, 2, 14))
        {
            assert_eq!(l, o, "unchanged lease round-trips through Kea");
        }
    }
    let added = back
        .iter()
        .find(|l| l.addr == Ipv4Addr::new(192, 0, 2, 150))
        .unwrap();
    assert_eq!(added.hostname.as_deref(), Some("added,by&kea"));
    assert_eq!(
        added.hwaddr,
        HwAddr::ethernet([0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f])
    );
    assert_eq!(
        added.client_id.as_slice(),
        &[1, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f]
    );
    assert_eq!(added.valid_lft, 7200);
    assert!(added.fqdn_fwd && added.fqdn_rev);
    assert!(
        added.cltt.abs_diff(now()) < 60,
        "cltt {} is now",
        added.cltt
    );
    let renamed = back
        .iter()
        .find(|l| l.addr == Ipv4Addr::new(192, 0, 2, 14))
        .unwrap();
    assert_eq!(renamed.hostname.as_deref(), Some("renamed"));
    assert_eq!(renamed.valid_lft, 600);
    drop(kea);
}

#[test]
fn kea_dhcp6_reads_our_export_and_we_read_its_memfile() {
    require("/usr/sbin/kea-dhcp6", "kea-dhcp6-server");
    require(HOOK, "kea-dhcp6-server");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = now();
    let mk = |last: u16, pd: bool, hw: bool, host: Option<&str>| Lease6 {
        addr: if pd {
            Ipv6Addr::new(0x2001, 0xdb8, 1, last, 0, 0, 0, 0)
        } else {
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last)
        },
        prefix_len: if pd { 64 } else { 128 },
        lease_type: if pd { Lease6Type::Pd } else { Lease6Type::Na },
        duid: IdBuf::from_slice(&[
            0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 8, 0, 0x27, 0, 0, last as u8,
        ]),
        iaid: 1000 + u32::from(last),
        subnet_id: 2,
        cltt: t - 50,
        valid_lft: 4000,
        preferred_lft: 3000,
        state: LeaseState::Assigned,
        hwaddr: hw.then(|| HwAddr::ethernet([8, 0, 0x27, 0, 0, last as u8])),
        fqdn_fwd: hw,
        fqdn_rev: false,
        hostname: host.map(Arc::from),
    };
    let ours = vec![
        mk(0x10, false, true, Some("six,one")),
        mk(0x11, false, false, None),
        mk(0x12, true, true, None),
    ];
    let csv = d.join("leases6.csv");
    write_lease6_csv(std::fs::File::create(&csv).unwrap(), &ours).unwrap();
    let config = json!({"Dhcp6": {
        "interfaces-config": {"interfaces": []},
        // Keep Kea's DUID out of /var/lib/kea.
        "server-id": {"type": "EN", "enterprise-id": 2495, "identifier": "0a0b0c", "persist": false},
        "control-socket": {"socket-type": "unix", "socket-name": d.join("kea.sock")},
        "lease-database": {"type": "memfile", "name": csv, "persist": true, "lfc-interval": 0},
        "hooks-libraries": [{"library": HOOK}],
        "subnet6": [{"id": 2, "subnet": "2001:db8:1::/48",
                     "pools": [{"pool": "2001:db8:1::100 - 2001:db8:1::1ff"}],
                     "pd-pools": [{"prefix": "2001:db8:1:100::", "prefix-len": 56, "delegated-len": 64}]}],
        "loggers": logging(d, "kea-dhcp6"),
    }});
    let kea = start_kea("/usr/sbin/kea-dhcp6", d, config);
    let r = ok(d, json!({"command": "lease6-get-all"}));
    let mut leases = r["arguments"]["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    leases.sort_by_key(|l| {
        l["ip-address"]
            .as_str()
            .unwrap_or("")
            .parse::<Ipv6Addr>()
            .ok()
    });
    let mut sorted = ours.clone();
    sorted.sort_by_key(|l| l.addr);
    assert_eq!(
        leases.len(),
        ours.len(),
        "Kea loaded {leases:?}\n{}",
        diagnostics(d, &kea.log)
    );
    for (k, o) in leases.iter().zip(&sorted) {
        assert_eq!(k["ip-address"], o.addr.to_string());
        assert_eq!(k["duid"], hexc(&o.duid), "{k}");
        assert_eq!(k["iaid"], o.iaid, "{k}");
        assert_eq!(
            k["type"],
            if o.lease_type == Lease6Type::Pd {
                "IA_PD"
            } else {
                "IA_NA"
            },
            "{k}"
        );
        if o.lease_type == Lease6Type::Pd {
            assert_eq!(k["prefix-len"], o.prefix_len, "{k}");
        }
        assert_eq!(k["valid-lft"], o.valid_lft, "{k}");
        assert_eq!(k["preferred-lft"], o.preferred_lft, "{k}");
        assert_eq!(k["cltt"], o.cltt, "{k}");
        assert_eq!(k["subnet-id"], o.subnet_id, "{k}");
        assert_eq!(k["hostname"], o.hostname.as_deref().unwrap_or(""), "{k}");
        match &o.hwaddr {
            Some(hw) => assert_eq!(k["hw-address"], hexc(hw.as_slice()), "{k}"),
            None => assert!(k.get("hw-address").is_none(), "{k}"),
        }
    }
    ok(
        d,
        json!({"command": "lease6-add", "arguments": {
            "ip-address": "2001:db8:1::150", "duid": "01:02:03:04:05:06:07:08", "iaid": 77, "subnet-id": 2,
            "hostname": "six,added", "valid-lft": 5000, "preferred-lft": 2500, "hw-address": "0a:0b:0c:0d:0e:0f"
        }}),
    );
    ok(
        d,
        json!({"command": "lease6-del", "arguments": {"ip-address": "2001:db8:1::11"}}),
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let back = read_lease6_csv(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.len(), 3, "{text}");
    for o in &ours {
        if o.addr != Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11) {
            assert_eq!(
                back.iter().find(|l| l.addr == o.addr),
                Some(o),
                "round-trips through Kea:\n{text}"
            );
        }
    }
    let added = back
        .iter()
        .find(|l| l.addr == "2001:db8:1::150".parse::<Ipv6Addr>().unwrap())
        .unwrap();
    assert_eq!(added.duid.as_slice(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(added.iaid, 77);
    assert_eq!(added.hostname.as_deref(), Some("six,added"));
    assert_eq!((added.valid_lft, added.preferred_lft), (5000, 2500));
    assert_eq!(
        added.hwaddr,
        Some(HwAddr::ethernet([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]))
    );
    drop(kea);
}
