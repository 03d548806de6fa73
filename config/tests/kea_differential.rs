//! Differential check against the real Kea 2.2 (`kea-dhcp4 -t` / `kea-dhcp6 -t`): configurations Kea accepts
//! load here, and configurations Kea rejects are rejected here too (with a JSON path). Deliberate
//! differences are listed at the end. Needs the Debian packages kea-dhcp4-server and kea-dhcp6-server.

mod common;
use std::path::Path;
use std::process::Command;

fn kea_accepts(v6: bool, json: &str) -> bool {
    let bin = if v6 { "kea-dhcp6" } else { "kea-dhcp4" };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.json");
    std::fs::write(&f, json).unwrap();
    let out = Command::new("timeout").arg("20").arg(bin).arg("-t").arg(&f).output().unwrap_or_else(|e| {
        panic!("cannot run {bin}: {e}; install it with: apt-get install -y kea-dhcp4-server kea-dhcp6-server")
    });
    assert!(
        out.status.code() != Some(127) && out.status.code() != Some(124),
        "{bin} is missing or hung (exit {:?}); install it with: apt-get install -y kea-dhcp4-server kea-dhcp6-server",
        out.status.code()
    );
    out.status.success()
}

fn xdhcp(json: &str) -> Result<(), Vec<xdhcp_config::Diagnostic>> {
    xdhcp_config::load_str(json, Path::new("c.json"))
        .map(|_| ())
        .map_err(|e| e.errors)
}

const V4_HEAD: &str = r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["lo"]}, "lease-database": {"type": "memfile", "persist": false},"#;
const V6_HEAD: &str = r#"{"Dhcp6": {"interfaces-config": {"interfaces": ["lo"]}, "lease-database": {"type": "memfile", "persist": false},"#;

fn cases() -> Vec<(&'static str, bool, String, bool)> {
    let v4 = |body: &str| format!("{V4_HEAD} {body} }}}}");
    let v6 = |body: &str| format!("{V6_HEAD} {body} }}}}");
    vec![
        (
            "v4 full",
            false,
            v4(r#""valid-lifetime": 4000, "renew-timer": 1000, "rebind-timer": 2000,
               "option-data": [{"name": "domain-name-servers", "data": "192.0.2.1, 192.0.2.2"}, {"code": 15, "data": "example.org"}],
               "client-classes": [{"name": "voip", "test": "substring(option[60].hex,0,6) == 'Aastra'", "next-server": "192.0.2.254"}],
               "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.10 - 192.0.2.20"}, {"pool": "192.0.2.64/26"}],
                 "relay": {"ip-addresses": ["10.0.0.1"]}, "option-data": [{"name": "routers", "data": "192.0.2.1"}],
                 "reservations": [{"hw-address": "01:02:03:04:05:06", "ip-address": "192.0.2.200", "hostname": "h"}]}]"#),
            true,
        ),
        ("v4 trailing commas and comments", false, format!("// c\n{V4_HEAD} /* x */ \"subnet4\": [{{\"id\": 1, \"subnet\": \"10.0.0.0/8\",}},], # y\n}}}}"), true),
        ("v4 t1 above t2", false, v4(r#""subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "t1-percent": 0.9, "t2-percent": 0.8}]"#), true),
        (
            "v4 shared network",
            false,
            v4(r#""shared-networks": [{"name": "n", "relay": {"ip-addresses": ["10.1.1.1"]}, "subnet4": [{"id": 1, "subnet": "10.0.0.0/24"}, {"id": 2, "subnet": "10.0.1.0/24"}]}]"#),
            true,
        ),
        ("v4 duplicate key", false, v4(r#""valid-lifetime": 1, "valid-lifetime": 2"#), false),
        ("v4 auto id collides", false, v4(r#""subnet4": [{"subnet": "10.0.0.0/24"}, {"id": 1, "subnet": "10.0.1.0/24"}]"#), false),
        (
            "v4 reservation outside subnet",
            false,
            v4(r#""subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "reservations": [{"hw-address": "01:02:03:04:05:06", "ip-address": "10.0.1.5"}]}]"#),
            false,
        ),
        ("v4 renew above rebind", false, v4(r#""subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "renew-timer": 100, "rebind-timer": 50}]"#), false),
        ("v4 typo", false, v4(r#""valid-lifetme": 5"#), false),
        ("v4 pool outside subnet", false, v4(r#""subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "pools": [{"pool": "10.0.1.1-10.0.1.5"}]}]"#), false),
        ("v4 unknown option", false, v4(r#""option-data": [{"name": "rooters", "data": "10.0.0.1"}]"#), false),
        ("v4 bad option data", false, v4(r#""option-data": [{"name": "routers", "data": "10.0.0.256"}]"#), false),
        (
            "v6 pd with excluded prefix",
            true,
            v6(r#""subnet6": [{"id": 1, "subnet": "2001:db8::/64", "pools": [{"pool": "2001:db8::100-2001:db8::1ff"}],
               "pd-pools": [{"prefix": "2001:db8:1::", "prefix-len": 48, "delegated-len": 56, "excluded-prefix": "2001:db8:1:10::", "excluded-prefix-len": 60}],
               "reservations": [{"duid": "01:02:03", "ip-addresses": ["2001:db8::5"], "prefixes": ["2001:db8:2::/56"]}]}]"#),
            true,
        ),
        ("v6 interface and interface-id", true, v6(r#""subnet6": [{"id": 1, "subnet": "2001:db8::/64", "interface": "lo", "interface-id": "x"}]"#), false),
        (
            "v6 excluded-prefix-len too short",
            true,
            v6(r#""subnet6": [{"id": 1, "subnet": "2001:db8::/64", "pd-pools": [{"prefix": "2001:db8:1::", "prefix-len": 48, "delegated-len": 56, "excluded-prefix": "2001:db8:1::", "excluded-prefix-len": 56}]}]"#),
            false,
        ),
        ("v6 global rapid-commit", true, v6(r#""rapid-commit": true"#), false),
        ("v6 echo-client-id", true, v6(r#""echo-client-id": true"#), false),
    ]
}

#[test]
fn same_verdict_as_kea() {
    let mut mismatches = Vec::new();
    for (name, is_v6, json, want_ok) in cases() {
        let kea = kea_accepts(is_v6, &json);
        assert_eq!(
            kea, want_ok,
            "case '{name}': the expectation about Kea itself is wrong\n{json}"
        );
        match (xdhcp(&json), want_ok) {
            (Ok(()), true) => {}
            (Err(e), false) => assert!(
                e.iter()
                    .all(|d| !d.json_path.is_empty() || d.message.contains("JSON")),
                "{name}: {e:?}"
            ),
            (got, _) => mismatches.push(format!(
                "{name}: Kea {} but xdhcp {:?}",
                if kea { "accepts" } else { "rejects" },
                got
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn deliberate_differences_from_kea() {
    // Kea serves every interface with "*"; xdhcp never serves a wildcard.
    let json = r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["*"]}, "lease-database": {"type": "memfile", "persist": false}}}"#;
    assert!(kea_accepts(false, json));
    let e = xdhcp(json).unwrap_err();
    assert_eq!(e[0].json_path, "Dhcp4.interfaces-config.interfaces[0]");
}

#[test]
fn kea_examples_get_the_same_verdict_as_kea() {
    // The examples name eth0/eth1 and /opt hook paths; point them at lo and Debian's hook directory so
    // that Kea judges the configuration itself rather than this machine.
    let dir = common::data("kea-examples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut mismatches = Vec::new();
    for f in names {
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("\"eth0\"", "\"lo\"")
            .replace("\"eth1\"", "\"lo\"")
            .replace(
                "/opt/lib/kea/hooks/",
                "/usr/lib/x86_64-linux-gnu/kea/hooks/",
            );
        let is_v6 = f.file_name().unwrap().to_string_lossy().starts_with("kea6");
        let kea = kea_accepts(is_v6, &text);
        let ours = xdhcp(&text);
        let wildcard = text.contains("\"*\"");
        match (kea, &ours) {
            (true, Ok(())) | (false, Err(_)) => {}
            (true, Err(e)) if wildcard && e.len() == 1 && e[0].message.contains("refused") => {}
            _ => mismatches.push(format!(
                "{}: Kea accepts={kea}, xdhcp {:?}",
                f.display(),
                ours
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
