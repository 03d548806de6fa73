//! High-availability hook parameters: modes, roles, defaults (kea-ha-wire.md §4) and every validation error.

mod common;
use common::*;
use xdhcp_config::model::*;

fn with_ha(ha: &str) -> String {
    v4(
        &format!(
            r#""hooks-libraries": [{{"library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_ha.so", "parameters": {{"high-availability": {ha}}}}}],"#
        ),
        r#"{"id": 1, "subnet": "192.0.2.0/24"}"#,
    )
}

const PEERS_HS: &str = r#"[{"name": "a", "url": "http://10.0.0.1:8000/", "role": "primary"},
                           {"name": "b", "url": "http://10.0.0.2:8000/", "role": "standby", "auto-failover": false},
                           {"name": "c", "url": "http://10.0.0.3:8000/", "role": "backup"},
                           {"name": "d", "url": "http://10.0.0.4:8000/", "role": "backup"}]"#;

#[test]
fn hot_standby_defaults() {
    let d = ok(&with_ha(&format!(
        r#"[{{"this-server-name": "b", "mode": "hot-standby", "peers": {PEERS_HS}}}]"#
    )))
    .config
    .dhcp4
    .unwrap();
    let r = &d.high_availability[0];
    assert_eq!(r.mode, HaMode::HotStandby);
    assert_eq!(r.this_peer().role, HaRole::Standby);
    assert!(!r.this_peer().auto_failover);
    assert!(r.peers[0].auto_failover);
    assert_eq!(
        r.peers.iter().filter(|p| p.role == HaRole::Backup).count(),
        2
    );
    assert_eq!(
        (
            r.heartbeat_delay_ms,
            r.max_response_delay_ms,
            r.max_ack_delay_ms,
            r.max_unacked_clients
        ),
        (10000, 60000, 10000, 10)
    );
    assert_eq!(
        (
            r.delayed_updates_limit,
            r.sync_timeout_ms,
            r.sync_page_limit
        ),
        (0, 60000, 10000)
    );
    assert!(r.send_lease_updates && r.sync_leases && !r.wait_backup_ack && r.require_client_certs);
    assert!(!r.multi_threading && !r.http_dedicated_listener);
    assert!(r.paused_states.is_empty());
}

#[test]
fn load_balancing_as_a_single_map_with_everything_set() {
    let d = ok(&with_ha(
        r#"{"this-server-name": "s2", "mode": "load-balancing", "heartbeat-delay": 2000, "max-response-delay": 7000,
            "max-ack-delay": 1500, "max-unacked-clients": 0, "delayed-updates-limit": 5, "sync-timeout": 3000,
            "sync-page-limit": 500, "send-lease-updates": false, "sync-leases": false, "require-client-certs": false,
            "multi-threading": {"enable-multi-threading": true, "http-dedicated-listener": true, "http-listener-threads": 2, "http-client-threads": 2},
            "state-machine": {"states": [{"state": "waiting", "pause": "once"}, {"state": "ready", "pause": "never"}]},
            "peers": [{"name": "s1", "url": "http://[2001:db8::1]:8443/", "role": "primary", "basic-auth-user": "u", "basic-auth-password": "p"},
                      {"name": "s2", "url": "http://host.example/", "role": "secondary"}]}"#,
    ))
    .config
    .dhcp4
    .unwrap();
    let r = &d.high_availability[0];
    assert_eq!(r.mode, HaMode::LoadBalancing);
    assert_eq!(r.this_peer().role, HaRole::Secondary);
    assert_eq!(
        (
            r.heartbeat_delay_ms,
            r.max_response_delay_ms,
            r.max_ack_delay_ms,
            r.max_unacked_clients
        ),
        (2000, 7000, 1500, 0)
    );
    assert_eq!(
        (
            r.delayed_updates_limit,
            r.sync_timeout_ms,
            r.sync_page_limit
        ),
        (5, 3000, 500)
    );
    assert!(!r.send_lease_updates && !r.sync_leases && !r.require_client_certs);
    assert!(r.multi_threading && r.http_dedicated_listener);
    assert_eq!(
        r.paused_states,
        vec![("waiting".to_string(), "once".to_string())]
    );
    let p1 = &r.peers[0];
    assert_eq!(
        (p1.host.as_str(), p1.port, p1.tls),
        // https:// needs the TLS files (see tls.rs); without them it is refused, as by Kea.
        ("2001:db8::1", 8443, false)
    );
    assert_eq!(
        (
            p1.basic_auth_user.as_deref(),
            p1.basic_auth_password.as_deref()
        ),
        (Some("u"), Some("p"))
    );
    assert_eq!(
        (r.peers[1].host.as_str(), r.peers[1].port, r.peers[1].tls),
        ("host.example", 80, false)
    );
}

#[test]
fn load_balancing_default_delayed_updates_limit_and_passive_backup() {
    let d = ok(&with_ha(
        r#"[{"this-server-name": "p", "mode": "load-balancing", "peers": [
              {"name": "p", "url": "http://10.0.0.1:8000/", "role": "primary"},
              {"name": "s", "url": "http://10.0.0.2:8000/", "role": "secondary"}]}]"#,
    ))
    .config
    .dhcp4
    .unwrap();
    assert_eq!(d.high_availability[0].delayed_updates_limit, 100);
    let d = ok(&with_ha(
        r#"[{"this-server-name": "p", "mode": "passive-backup", "wait-backup-ack": true, "peers": [
              {"name": "p", "url": "http://10.0.0.1:8000/", "role": "primary"},
              {"name": "b1", "url": "http://10.0.0.2:8000/", "role": "backup"},
              {"name": "b2", "url": "http://10.0.0.3:8000/", "role": "backup"}]}]"#,
    ))
    .config
    .dhcp4
    .unwrap();
    assert_eq!(d.high_availability[0].mode, HaMode::PassiveBackup);
    assert!(d.high_availability[0].wait_backup_ack);
}

#[test]
fn role_and_mode_errors() {
    let base = "Dhcp4.hooks-libraries[0].parameters.high-availability[0]";
    let e = errors(&with_ha(
        r#"[{"this-server-name": "x", "mode": "hot-standby", "wait-backup-ack": true, "peers": [
              {"name": "a", "url": "http://10.0.0.1:8000/", "role": "primary"},
              {"name": "b", "url": "http://10.0.0.2:8000/", "role": "secondary"}]}]"#,
    ));
    has(
        &e,
        &format!("{base}.peers"),
        "hot-standby needs exactly one standby peer, found 0",
    );
    has(
        &e,
        &format!("{base}.peers"),
        "the secondary role is not valid in hot-standby mode",
    );
    has(
        &e,
        &format!("{base}.this-server-name"),
        "'x' is not the name of any peer (a, b)",
    );
    has(
        &e,
        &format!("{base}.wait-backup-ack"),
        "only valid in passive-backup mode",
    );
    let e = errors(&with_ha(
        r#"[{"this-server-name": "a", "mode": "load-balancing", "peers": [
              {"name": "a", "url": "http://10.0.0.1:8000/", "role": "primary"},
              {"name": "b", "url": "http://10.0.0.2:8000/", "role": "primary"}]}]"#,
    ));
    has(
        &e,
        &format!("{base}.peers"),
        "load-balancing needs exactly one primary peer, found 2",
    );
    has(
        &e,
        &format!("{base}.peers"),
        "needs exactly one secondary peer, found 0",
    );
    let e = errors(&with_ha(
        r#"[{"this-server-name": "a", "mode": "passive-backup", "peers": [
              {"name": "a", "url": "http://10.0.0.1:8000/", "role": "primary"},
              {"name": "b", "url": "http://10.0.0.2:8000/", "role": "standby"}]}]"#,
    ));
    has(
        &e,
        &format!("{base}.peers"),
        "the standby role is not valid in passive-backup mode",
    );
    let e = errors(&with_ha(
        r#"[{"this-server-name": "a", "mode": "active-active", "peers": []}]"#,
    ));
    has(
        &e,
        &format!("{base}.mode"),
        "'active-active' is not hot-standby, load-balancing or passive-backup",
    );
}

#[test]
fn value_errors() {
    let base = "Dhcp4.hooks-libraries[0].parameters.high-availability[0]";
    let e = errors(&with_ha(
        r#"[{"this-server-name": "a", "mode": "hot-standby", "heartbeat-delay": 70000, "max-ack-delay": -1,
             "sync-page-limit": 0, "lease-update-retries": 3,
             "state-machine": {"states": [{"state": "sleeping", "pause": "always"}, {"state": "ready", "pause": "sometimes"}]},
             "peers": [
              {"name": "a", "url": "ftp://10.0.0.1:8000/", "role": "primary"},
              {"name": "b", "url": "http://10.0.0.2:99999/", "role": "standby"},
              {"name": "b", "url": "http://10.0.0.3/", "role": "backup"},
              {"name": "c", "url": "http://10.0.0.4/", "role": "leader"},
              {"name": "d", "url": "http://10.0.0.5/", "role": "backup", "trust-anchor": "/ca.pem"},
              {"name": "e", "url": "http://10.0.0.6/", "role": "backup", "basic-auth-password": "p"},
              {"url": "http://10.0.0.7/", "role": "backup"}]}]"#,
    ));
    has(
        &e,
        &format!("{base}.heartbeat-delay"),
        "70000 is out of range; it must be between 0 and 65535",
    );
    has(&e, &format!("{base}.max-ack-delay"), "-1 is out of range");
    has(&e, &format!("{base}.sync-page-limit"), "between 1 and");
    has(
        &e,
        &format!("{base}.lease-update-retries"),
        "unknown parameter",
    );
    has(
        &e,
        &format!("{base}.state-machine.states[0].state"),
        "'sleeping' is not an HA state",
    );
    has(
        &e,
        &format!("{base}.state-machine.states[1].pause"),
        "'sometimes' is not always, never or once",
    );
    has(
        &e,
        &format!("{base}.peers[0].url"),
        "must start with http:// or https://",
    );
    has(&e, &format!("{base}.peers[1].url"), "'99999' is not a port");
    has(
        &e,
        &format!("{base}.peers[2].name"),
        "peer name 'b' is used twice",
    );
    has(
        &e,
        &format!("{base}.peers[3].role"),
        "'leader' is not primary, secondary, standby or backup",
    );
    has(
        &e,
        &format!("{base}.peers[4]"),
        "trust-anchor, cert-file and key-file must be given all three or none",
    );
    has(
        &e,
        &format!("{base}.peers[5]"),
        "a basic-auth password needs basic-auth-user",
    );
    has(&e, &format!("{base}.peers[6]"), "an HA peer needs 'name'");
}

#[test]
fn password_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    std::fs::write(&f, "s3cret\n").unwrap();
    let d = ok(&with_ha(&format!(
        r#"[{{"this-server-name": "a", "mode": "hot-standby", "peers": [
              {{"name": "a", "url": "http://10.0.0.1:8000/", "role": "primary"}},
              {{"name": "b", "url": "http://10.0.0.2:8000/", "role": "standby", "basic-auth-user": "kea", "basic-auth-password-file": "{}"}}]}}]"#,
        f.display()
    )))
    .config
    .dhcp4
    .unwrap();
    assert_eq!(
        d.high_availability[0].peers[1]
            .basic_auth_password
            .as_deref(),
        Some("s3cret")
    );
}

#[test]
fn several_relationships_need_subnet_tags() {
    let rels = r#"[
        {"this-server-name": "s2", "mode": "hot-standby", "peers": [
            {"name": "s1", "url": "http://10.0.0.1:8000/", "role": "primary"},
            {"name": "s2", "url": "http://10.0.0.2:8000/", "role": "standby"}]},
        {"this-server-name": "s4", "mode": "hot-standby", "peers": [
            {"name": "s3", "url": "http://10.0.0.3:8001/", "role": "primary"},
            {"name": "s4", "url": "http://10.0.0.2:8001/", "role": "standby"}]}]"#;
    let cfg = |subnets: &str| {
        v4(
            &format!(
                r#""hooks-libraries": [{{"library": "libdhcp_ha.so", "parameters": {{"high-availability": {rels}}}}}],"#
            ),
            subnets,
        )
    };
    let e = errors(&cfg(
        r#"{"id": 1, "subnet": "192.0.2.0/24", "user-context": {"ha-server-name": "s9"}}, {"id": 2, "subnet": "192.0.3.0/24"}"#,
    ));
    has(
        &e,
        "Dhcp4.subnet4[0].user-context.ha-server-name",
        "'s9' is not a peer of any high-availability relationship",
    );
    has(
        &e,
        "Dhcp4.subnet4[1]",
        "every subnet needs \"user-context\": {\"ha-server-name\"",
    );
    let d = ok(&cfg(
        r#"{"id": 1, "subnet": "192.0.2.0/24", "user-context": {"ha-server-name": "s2"}}, {"id": 2, "subnet": "192.0.3.0/24", "user-context": {"ha-server-name": "s4"}}"#,
    ))
    .config
    .dhcp4
    .unwrap();
    assert_eq!(d.high_availability.len(), 2);
    assert_eq!(d.subnets[1].ha_server_name.as_deref(), Some("s4"));
}

#[test]
fn hook_library_errors() {
    let e = errors(&v4(
        r#""hooks-libraries": [{"library": "/x/libdhcp_ha.so"}, {"parameters": {}}, {"library": "/y/libdhcp_ha.so", "parameters": {"high-availability": 5}}],"#,
        "",
    ));
    has(
        &e,
        "Dhcp4.hooks-libraries[0]",
        "libdhcp_ha.so needs \"parameters\"",
    );
    has(
        &e,
        "Dhcp4.hooks-libraries[1]",
        "a hook library needs \"library\"",
    );
    has(&e, "Dhcp4.hooks-libraries[2].library", "loaded twice");
    has(
        &e,
        "Dhcp4.hooks-libraries[2].parameters.high-availability",
        "must be a list of relationships",
    );
}

/// `user-context.xdhcp.replication` (synchronous mode for pairs with Kea) and Kea's
/// `parked-packet-limit`: defaults, accepted values and every error, by JSON path.
#[test]
fn synchronous_replication_switch() {
    let ha = format!(
        r#""hooks-libraries": [{{"library": "libdhcp_ha.so", "parameters": {{"high-availability": [{{"this-server-name": "a", "mode": "hot-standby", "peers": {PEERS_HS}}}]}}}}],"#
    );
    let db = r#""lease-database": {"type": "memfile", "persist": true, "name": "/tmp/l4.csv"},"#;
    let subnet = r#"{"id": 1, "subnet": "192.0.2.0/24"}"#;
    // Default: asynchronous, Kea's parked-packet-limit 256.
    let d = ok(&v4(&format!("{ha} {db}"), subnet)).config.dhcp4.unwrap();
    assert_eq!(d.tuning.replication, Replication::Asynchronous);
    assert_eq!(d.tuning.parked_packet_limit, 256);
    let d = ok(&v4(
        &format!(
            r#"{ha} {db} "parked-packet-limit": 64, "user-context": {{"xdhcp": {{"replication": "synchronous", "sync-ack-timeout-ms": 500}}}},"#
        ),
        subnet,
    ))
    .config
    .dhcp4
    .unwrap();
    assert_eq!(d.tuning.replication, Replication::Synchronous);
    assert_eq!(d.tuning.parked_packet_limit, 64);
    assert_eq!(d.tuning.sync_ack_timeout_ms, 500);
    let rp = "Dhcp4.user-context.xdhcp.replication";
    // A misspelled mode.
    let e = errors(&v4(
        &format!(r#"{ha} {db} "user-context": {{"xdhcp": {{"replication": "sync"}}}},"#),
        subnet,
    ));
    has(&e, rp, "'sync' is not \"synchronous\" or \"asynchronous\"");
    assert!(e[0]
        .to_string()
        .starts_with("test.json: Dhcp4.user-context.xdhcp.replication"));
    // Synchronous without HA, or without a journal to ship.
    let e = errors(&v4(
        &format!(r#"{db} "user-context": {{"xdhcp": {{"replication": "synchronous"}}}},"#),
        subnet,
    ));
    has(&e, rp, "needs a high-availability relationship");
    let e = errors(&v4(
        &format!(r#"{ha} "user-context": {{"xdhcp": {{"replication": "synchronous"}}}},"#),
        subnet,
    ));
    has(&e, rp, "\"persist\": true");
    let e = errors(&v4(
        &format!(r#"{ha} {db} "parked-packet-limit": -1,"#),
        subnet,
    ));
    has(&e, "Dhcp4.parked-packet-limit", "out of range");
}
