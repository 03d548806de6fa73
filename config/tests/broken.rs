//! Broken configurations: every error names the file, the JSON path and the reason, and all errors of a
//! file are reported together.

mod common;
use common::*;

const S: &str =
    r#"{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.10 - 192.0.2.20"}]}"#;

#[test]
fn pool_outside_subnet() {
    let e = errors(&v4(
        "",
        r#"{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.10-192.0.2.20"}, {"pool": "192.0.3.1 - 192.0.3.9"}]}"#,
    ));
    has(
        &e,
        "Dhcp4.subnet4[0].pools[1].pool",
        "not inside the subnet 192.0.2.0/24",
    );
    assert_eq!(e[0].file, std::path::PathBuf::from("test.json"));
    assert!(e[0]
        .to_string()
        .starts_with("test.json: Dhcp4.subnet4[0].pools[1].pool: pool 192.0.3.1 - 192.0.3.9"));
}

#[test]
fn overlapping_pools_even_across_subnets() {
    let e = errors(&v4(
        "",
        r#"{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.10-192.0.2.20"}, {"pool": "192.0.2.0/28"}]},
           {"id": 2, "subnet": "192.0.2.0/25", "pools": [{"pool": "192.0.2.100-192.0.2.120"}]},
           {"id": 3, "subnet": "192.0.2.128/25", "pools": [{"pool": "192.0.2.130-192.0.2.140"}]}"#,
    ));
    has(
        &e,
        "Dhcp4.subnet4[0].pools[0].pool",
        "overlaps the one at Dhcp4.subnet4[0].pools[1].pool",
    );
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn duplicate_ids_and_prefixes() {
    let e = errors(&v4(
        "",
        &format!("{S}, {{\"id\": 1, \"subnet\": \"192.0.2.0/24\"}}"),
    ));
    has(
        &e,
        "Dhcp4.subnet4[1].id",
        "subnet id 1 is already used by Dhcp4.subnet4[0]",
    );
    let e = errors(&v4(
        "",
        &format!("{S}, {{\"id\": 2, \"subnet\": \"192.0.2.0/24\"}}"),
    ));
    has(
        &e,
        "Dhcp4.subnet4[1].subnet",
        "already defined at Dhcp4.subnet4[0]",
    );
    // An automatic id collides with an explicit one exactly as in Kea.
    let e = errors(&v4(
        "",
        r#"{"subnet": "10.0.0.0/24"}, {"id": 1, "subnet": "10.0.1.0/24"}"#,
    ));
    has(&e, "Dhcp4.subnet4[1].id", "already used");
    let e = errors(&v4("", r#"{"id": 0, "subnet": "10.0.0.0/24"}"#));
    has(&e, "Dhcp4.subnet4[0].id", "between 1 and 4294967295");
}

#[test]
fn reservations() {
    let e = errors(&v4(
        "",
        r#"{"id": 1, "subnet": "192.0.2.0/24", "reservations": [
            {"hw-address": "01:02:03:04:05:06", "ip-address": "192.0.3.5"},
            {"hw-address": "01:02:03:04:05:07", "client-id": "01:aa", "ip-address": "192.0.2.5"},
            {"hw-address": "01:02:03:04:05:08", "ip-address": "192.0.2.6"},
            {"hw-address": "01:02:03:04:05:08", "ip-address": "192.0.2.7"},
            {"hw-address": "01:02:03:04:05:09", "ip-address": "192.0.2.6"},
            {"hw-address": "zz", "ip-address": "192.0.2.9"},
            {"ip-address": "192.0.2.10"}
        ]}"#,
    ));
    has(
        &e,
        "Dhcp4.subnet4[0].reservations[0].ip-address",
        "192.0.3.5 is outside the subnet 192.0.2.0/24",
    );
    has(
        &e,
        "Dhcp4.subnet4[0].reservations[1]",
        "exactly one identifier, found hw-address and client-id",
    );
    has(&e, "Dhcp4.subnet4[0].reservations[3]", "duplicate reservation: the same hw-address is reserved at Dhcp4.subnet4[0].reservations[2]");
    has(
        &e,
        "Dhcp4.subnet4[0].reservations[4].ip-address",
        "192.0.2.6 is already reserved at Dhcp4.subnet4[0].reservations[2]",
    );
    has(
        &e,
        "Dhcp4.subnet4[0].reservations[5].hw-address",
        "bad identifier 'zz'",
    );
    has(
        &e,
        "Dhcp4.subnet4[0].reservations[6]",
        "needs exactly one identifier",
    );
    assert_eq!(e.len(), 6, "{e:?}");
}

#[test]
fn bad_addresses_and_values() {
    let e = errors(&v4(
        r#""valid-lifetime": -1, "match-client-id": "yes","#,
        r#"{"id": 1, "subnet": "192.0.2.0/33", "relay": {"ip-addresses": ["192.0.2.300"]}},
           {"id": 2, "subnet": "2001:db8::/64"},
           {"id": 3, "subnet": "192.0.3.0/24", "pools": [{"pool": "192.0.3.9 - 192.0.3.1"}], "next-server": "x"}"#,
    ));
    has(&e, "Dhcp4.valid-lifetime", "between 0 and 4294967295");
    has(&e, "Dhcp4.match-client-id", "must be true or false");
    has(&e, "Dhcp4.subnet4[0].subnet", "'33' is not a prefix length");
    has(
        &e,
        "Dhcp4.subnet4[0].relay.ip-addresses[0]",
        "'192.0.2.300' is not an IPv4 address",
    );
    has(
        &e,
        "Dhcp4.subnet4[1].subnet",
        "'2001:db8::' is not an IPv4 address",
    );
    has(
        &e,
        "Dhcp4.subnet4[2].pools[0].pool",
        "starts at 192.0.3.9 which is after its end 192.0.3.1",
    );
    has(
        &e,
        "Dhcp4.subnet4[2].next-server",
        "'x' is not an IPv4 address",
    );
}

#[test]
fn options() {
    let e = errors(&v4(
        r#""option-data": [
            {"name": "routers", "data": "192.0.2.256"},
            {"name": "domain-nameservers", "data": "192.0.2.1"},
            {"code": 3, "name": "domain-name-servers", "data": "192.0.2.1"},
            {"name": "default-ip-ttl", "data": "300"},
            {"code": 222, "data": "abc"},
            {"name": "routers", "data": "192.0.2.1", "space": "nowhere"},
            {"name": "domain-name"}
        ],"#,
        S,
    ));
    has(
        &e,
        "Dhcp4.option-data[0].data",
        "bad data for option 'routers' (code 3): '192.0.2.256' is not an IPv4 address",
    );
    has(
        &e,
        "Dhcp4.option-data[1].name",
        "unknown option name 'domain-nameservers'",
    );
    has(
        &e,
        "Dhcp4.option-data[2].code",
        "option 'domain-name-servers' has code 6",
    );
    has(
        &e,
        "Dhcp4.option-data[3].data",
        "300 is out of range for uint8",
    );
    has(
        &e,
        "Dhcp4.option-data[4]",
        "has no definition: give data as hex",
    );
    has(
        &e,
        "Dhcp4.option-data[5].space",
        "option space 'nowhere' is not defined",
    );
    has(&e, "Dhcp4.option-data[6]", "needs 'data'");
    assert_eq!(e.len(), 7, "{e:?}");
}

#[test]
fn option_def_errors() {
    let e = errors(&v4(
        r#""option-def": [
            {"name": "routers", "code": 3, "type": "ipv4-address"},
            {"name": "x", "code": 240, "type": "float"},
            {"name": "y", "code": 241, "type": "record", "record-types": "uint8, bogus"}
        ],"#,
        S,
    ));
    has(
        &e,
        "Dhcp4.option-def[0]",
        "standard dhcp4 option; it cannot be redefined",
    );
    has(
        &e,
        "Dhcp4.option-def[1].type",
        "'float' is not a Kea option type",
    );
    has(
        &e,
        "Dhcp4.option-def[2].record-types",
        "'bogus' cannot be a record field type",
    );
}

#[test]
fn unknown_and_unsupported_keys() {
    let e = errors(&v4(
        r#""valid-lifetme": 3600, "hosts-database": {"type": "mysql"}, "config-control": {}, "lease-database": {"type": "mysql", "name": "kea"},"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.10-192.0.2.20", "pool-id": 3}]}"#,
    ));
    has(
        &e,
        "Dhcp4.valid-lifetme",
        "unknown parameter 'valid-lifetme'",
    );
    has(&e, "Dhcp4.valid-lifetme", "did you mean 'valid-lifetime'?");
    has(
        &e,
        "Dhcp4.hosts-database",
        "not supported: host reservations in a database",
    );
    has(
        &e,
        "Dhcp4.config-control",
        "not supported: Kea's configuration backend",
    );
    has(
        &e,
        "Dhcp4.lease-database.type",
        "lease database type 'mysql' is not supported",
    );
    has(&e, "Dhcp4.subnet4[0].pools[0].pool-id", "unknown parameter");
    assert_eq!(e.len(), 5, "{e:?}");
}

#[test]
fn safe_keys_warn_with_path() {
    let l = ok(&v4(
        r#""ddns-send-updates": true, "hostname-char-set": "[^A-Za-z0-9.-]", "sanity-checks": {"lease-checks": "fix"},
           "dhcp-ddns": {"enable-updates": false}, "server-tag": "a", "statistic-default-sample-count": 5,
           "multi-threading": {"enable-multi-threading": true, "thread-pool-size": 4, "packet-queue-size": 64},
           "hooks-libraries": [{"library": "/usr/lib/kea/hooks/libdhcp_flex_id.so", "parameters": {"x": 1}},
                               {"library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_lease_cmds.so"}],"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24", "ddns-qualifying-suffix": "example.org", "user-context": {"anything": [1, 2]}}"#,
    ));
    for p in [
        "Dhcp4.ddns-send-updates",
        "Dhcp4.hostname-char-set",
        "Dhcp4.sanity-checks",
        "Dhcp4.dhcp-ddns",
        "Dhcp4.server-tag",
        "Dhcp4.statistic-default-sample-count",
        "Dhcp4.subnet4[0].ddns-qualifying-suffix",
    ] {
        has(&l.warnings, p, "ignored: ");
    }
    has(
        &l.warnings,
        "Dhcp4.hooks-libraries[0].library",
        "'libdhcp_flex_id.so' is not loaded",
    );
    assert_eq!(l.warnings.len(), 8, "{:?}", l.warnings);
}

#[test]
fn top_level_objects() {
    let e = errors(r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["xd0"]}}, "Logging": {}}"#);
    has(&e, "Logging", "unknown top-level object");
    let e = errors(r#"{"DhcpDdns": {}}"#);
    has(&e, "", "no \"Dhcp4\" or \"Dhcp6\"");
    let l = ok(
        r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["xd0"]}}, "Control-agent": {"http-port": 8000}}"#,
    );
    has(&l.warnings, "Control-agent", "another Kea daemon");
    let e = errors(r#"[1, 2]"#);
    has(&e, "", "must be a JSON map");
}

#[test]
fn interfaces() {
    let e = errors(
        r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["eth1", "*", "eth2/2001:db8::1", "a b"], "dhcp-socket-type": "tcp"}}}"#,
    );
    has(
        &e,
        "Dhcp4.interfaces-config.interfaces[1]",
        "\"*\" (all interfaces) is refused",
    );
    has(
        &e,
        "Dhcp4.interfaces-config.interfaces[2]",
        "is not an IPv4 address",
    );
    has(
        &e,
        "Dhcp4.interfaces-config.interfaces[3]",
        "not a valid interface name",
    );
    has(
        &e,
        "Dhcp4.interfaces-config.dhcp-socket-type",
        "'tcp' is not raw or udp",
    );
    let l = ok(
        r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["eth1/192.0.2.1", "eth2"], "dhcp-socket-type": "udp"}}}"#,
    );
    let d = l.config.dhcp4.unwrap();
    assert_eq!(d.interfaces[0].address, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(d.socket_type, xdhcp_config::model::SocketType::Udp);
}

#[test]
fn syntax_errors_point_at_line_and_column() {
    let e =
        errors("{\n  \"Dhcp4\": {\n    \"valid-lifetime\": 4000\n    \"renew-timer\": 1\n  }\n}");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].json_path, "line 4, column 5");
    assert!(e[0].message.contains("invalid JSON"), "{}", e[0]);
    let e = errors(r#"{"Dhcp4": {"valid-lifetime": 1, "valid-lifetime": 2}}"#);
    has(
        &e,
        "Dhcp4.valid-lifetime",
        "duplicate key \"valid-lifetime\"",
    );
    let e = errors("{\"Dhcp4\": { /* unterminated comment }}");
    assert!(e[0].message.contains("invalid JSON"), "{}", e[0]);
}

#[test]
fn comments_and_trailing_commas_are_accepted() {
    let l = ok("# hash\n{\"Dhcp4\": { // line\n \"interfaces-config\": {\"interfaces\": [\"xd0\",]}, /* block */\n \"subnet4\": [],\n}}\n");
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    has(
        &l.warnings,
        "Dhcp4.interfaces-config.interfaces",
        "line 3, column 44: extraneous comma before ']'",
    );
    has(
        &l.warnings,
        "Dhcp4",
        "line 4, column 15: extraneous comma before '}'",
    );
}

#[test]
fn lifetimes_and_timers() {
    let e = errors(&v4(
        r#""min-valid-lifetime": 100, "valid-lifetime": 50,"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24", "renew-timer": 100, "rebind-timer": 50, "t1-percent": 1.5}"#,
    ));
    has(
        &e,
        "Dhcp4.valid-lifetime",
        "min-valid-lifetime (100) <= valid-lifetime (50)",
    );
    has(
        &e,
        "Dhcp4.subnet4[0]",
        "renew-timer (100) is greater than rebind-timer (50)",
    );
    has(
        &e,
        "Dhcp4.subnet4[0].t1-percent",
        "must be greater than 0 and less than 1",
    );
}

#[test]
fn classes() {
    let e = errors(&v4(
        r#""client-classes": [
            {"name": "a", "test": "pkt4.mac == "},
            {"name": "b", "test": "member('c')"},
            {"name": "c", "test": "vendor[4491].exists"},
            {"name": "a"},
            {"test": "true"}
        ],"#,
        S,
    ));
    has(
        &e,
        "Dhcp4.client-classes[0].test",
        "cannot parse the class test \"pkt4.mac == \"",
    );
    has(
        &e,
        "Dhcp4.client-classes[1].test",
        "member('c') refers to a class that is not defined before 'b'",
    );
    has(
        &e,
        "Dhcp4.client-classes[2].test",
        "'vendor' at offset 0 ('vendor') is not supported by xdhcp",
    );
    has(
        &e,
        "Dhcp4.client-classes[3].name",
        "client class 'a' is defined twice",
    );
    has(&e, "Dhcp4.client-classes[4]", "needs a 'name'");
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let e = errors(&v4(
        r#""bogus": 1,"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "10.0.0.1-10.0.0.2"}]}, {"id": 1, "subnet": "x"}"#,
    ));
    assert_eq!(e.len(), 4, "{e:?}");
    has(
        &e,
        "Dhcp4.subnet4[1].subnet",
        "'x' is not a prefix/length such as 192.0.2.0/24",
    );
    let text = xdhcp_config::ConfigError {
        errors: e,
        warnings: Vec::new(),
    }
    .to_string();
    assert!(
        text.starts_with("configuration rejected (4 errors)"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn load_file_reports_unreadable_files() {
    let e = xdhcp_config::load_file(std::path::Path::new("/nonexistent/xdhcp.json")).unwrap_err();
    assert_eq!(
        e.errors[0].file,
        std::path::PathBuf::from("/nonexistent/xdhcp.json")
    );
    assert!(e.errors[0].message.contains("cannot read the file"));
}

#[test]
fn tuning_from_user_context() {
    let d = ok(&v4("", S)).config.dhcp4.unwrap();
    let t = &d.tuning;
    assert_eq!(
        (
            t.offer_hold_secs,
            t.workers,
            t.ring_size,
            t.frame_count,
            t.journal_queue
        ),
        (30, 0, 2048, 8192, 65536)
    );
    assert_eq!(t.backend, xdhcp_config::model::Backend::Socket);
    assert_eq!(
        d.lease_database.fsync,
        xdhcp_config::model::FsyncPolicy::IntervalMs(10)
    );
    assert_eq!(t.idle_spin_us, 50);
    assert!(t.prefault_tables);
    assert_eq!(d.decline_probation_period_secs, 86400);
    assert!(d.match_client_id && !d.authoritative && d.echo_client_id);
    let d = ok(&v4(
        r#""user-context": {"note": "x", "xdhcp": {"offer-hold-secs": 5, "workers": 2, "backend": "xdp", "ring-size": 4096, "frame-count": 16384, "journal-queue": 1024, "journal-fsync": 20, "idle-spin-us": 0, "prefault-tables": false}},"#,
        S,
    ))
    .config
    .dhcp4
    .unwrap();
    let t = &d.tuning;
    assert_eq!(
        (
            t.offer_hold_secs,
            t.workers,
            t.ring_size,
            t.frame_count,
            t.journal_queue
        ),
        (5, 2, 4096, 16384, 1024)
    );
    assert_eq!(t.backend, xdhcp_config::model::Backend::Xdp);
    assert_eq!(
        d.lease_database.fsync,
        xdhcp_config::model::FsyncPolicy::IntervalMs(20)
    );
    assert_eq!(t.idle_spin_us, 0);
    assert!(!t.prefault_tables);
    let e = errors(&v4(
        r#""user-context": {"xdhcp": {"ring-size": 1000, "wokers": 2, "idle-spin-us": 2000000}},"#,
        S,
    ));
    has(
        &e,
        "Dhcp4.user-context.xdhcp.ring-size",
        "must be a power of two",
    );
    has(&e, "Dhcp4.user-context.xdhcp.wokers", "unknown parameter");
    has(&e, "Dhcp4.user-context.xdhcp.idle-spin-us", "out of range");
}

#[test]
fn subnet_on_an_interface_that_is_not_served_warns() {
    let l = ok(&v4(
        "",
        r#"{"id": 1, "subnet": "192.0.2.0/24", "interface": "xd9"}"#,
    ));
    has(
        &l.warnings,
        "Dhcp4.subnet4[0].interface",
        "'xd9' is not in interfaces-config.interfaces",
    );
    let l = ok(&v4(
        "",
        r#"{"id": 1, "subnet": "192.0.2.0/24", "interface": "xd0"}"#,
    ));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn whole_file_findings_display_without_a_path() {
    let e = errors("[]");
    assert!(
        e[0].to_string()
            .starts_with("test.json: the configuration must be a JSON map"),
        "{}",
        e[0]
    );
}

#[test]
fn warnings_survive_a_rejection() {
    let e = xdhcp_config::load_str(
        &v4(r#""ddns-send-updates": true, "bogus": 1,"#, ""),
        std::path::Path::new("t.json"),
    )
    .unwrap_err();
    has(&e.errors, "Dhcp4.bogus", "unknown parameter");
    has(&e.warnings, "Dhcp4.ddns-send-updates", "ignored");
    assert!(!e.to_string().contains("ddns"));
}
