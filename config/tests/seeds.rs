//! The five server configurations of the Kea hub-and-spoke experiment (issue 2: they must pass), and every
//! Kea 2.2 example configuration: it loads, or fails with the exact expected diagnostic.

mod common;
use common::*;
use xdhcp_config::model::*;

#[test]
fn hub_and_spoke_configs_all_load() {
    for f in [
        "kea1.json",
        "kea2.json",
        "kea3.json",
        "kea4.json",
        "kea-backup.json",
    ] {
        let l = load_data(&format!("hub-and-spoke/{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
        let d = l.config.dhcp4.as_ref().unwrap();
        assert!(!d.subnets.is_empty(), "{f}");
        assert!(!d.high_availability.is_empty(), "{f}");
        // Every subnet is tagged with a relationship that this server takes part in.
        for s in &d.subnets {
            let n = s.ha_server_name.as_deref().unwrap();
            assert!(
                d.high_availability.iter().any(|r| r.this_server_name == n),
                "{f}: subnet {} -> {n}",
                s.id
            );
        }
        // The only warnings: cache-threshold (safe to ignore) and the commented-out member of the backup server.
        for w in &l.warnings {
            assert!(
                w.json_path == "Dhcp4.cache-threshold"
                    || (f == "kea-backup.json" && w.json_path == "Dhcp4.subnet4[0]"),
                "{f}: unexpected warning {w}"
            );
        }
    }
}

#[test]
fn kea1_details() {
    let l = load_data("hub-and-spoke/kea1.json").unwrap();
    let d = l.config.dhcp4.unwrap();
    assert_eq!(
        d.interfaces,
        vec![InterfaceSpec {
            name: "enp0s8".into(),
            address: None
        }]
    );
    assert_eq!(d.decline_probation_period_secs, 15);
    assert!(d.lifetimes.calculate_tee_times);
    assert_eq!(
        d.lease_database.path.as_deref(),
        Some(std::path::Path::new("/tmp/kea-dhcp4-leases"))
    );
    assert!(d.lease_database.persist);
    assert_eq!(
        d.control_socket.unwrap().socket_name,
        std::path::PathBuf::from("/tmp/kea-dhcp4-socket")
    );
    assert_eq!(d.high_availability.len(), 2);
    let r = &d.high_availability[0];
    assert_eq!(r.this_server_name, "server2");
    assert_eq!(r.mode, HaMode::HotStandby);
    assert_eq!(r.this_peer().role, HaRole::Standby);
    assert_eq!(r.peers[0].host, "172.28.0.254");
    assert_eq!(r.peers[0].port, 8000);
    assert_eq!(r.peers[2].role, HaRole::Backup);
    assert_eq!(r.heartbeat_delay_ms, 10000);
    assert_eq!(r.max_response_delay_ms, 60000);
    assert_eq!(r.delayed_updates_limit, 0);
    let s2 = &d.subnets[1];
    assert_eq!(s2.id, 2);
    assert_eq!(s2.ha_server_name.as_deref(), Some("server4"));
    assert_eq!(s2.relay.len(), 4);
    assert_eq!(
        s2.relay[0],
        "172.28.0.250".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(
        s2.pools[0].first,
        "172.29.0.2".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(
        s2.pools[0].last,
        "172.29.0.254".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(s2.options.get(3).unwrap().data, vec![172, 29, 0, 1]);
    assert_eq!(d.subnets[0].interface.as_deref(), Some("enp0s8"));
    assert_eq!(d.loggers[0].name, "kea-dhcp4");
    assert_eq!(d.loggers[0].outputs, vec!["stdout".to_string()]);
}

#[test]
fn backup_server_trailing_comma_is_a_warning_with_line() {
    let l = load_data("hub-and-spoke/kea-backup.json").unwrap();
    let w = l
        .warnings
        .iter()
        .find(|w| w.json_path == "Dhcp4.subnet4[0]")
        .unwrap();
    assert!(
        w.message
            .starts_with("line 117, column 2: extraneous comma"),
        "{w}"
    );
    let d = l.config.dhcp4.unwrap();
    assert_eq!(d.high_availability.len(), 3);
    assert_eq!(d.subnets[0].interface, None);
    assert!(d
        .high_availability
        .iter()
        .all(|r| r.this_peer().role == HaRole::Backup));
}

#[test]
fn kea_examples_load() {
    for f in [
        "kea4-all-options.json",
        "kea4-classify.json",
        "kea4-global-reservations.json",
        "kea4-ha-load-balancing-primary.json",
        "kea4-leases-expiration.json",
        "kea4-multiple-options.json",
        "kea4-reservations.json",
        "kea4-several-subnets.json",
        "kea4-shared-network.json",
        "kea4-single-subnet.json",
        "kea6-ha-hot-standby.json",
        "kea6-multiple-options.json",
        "kea6-reservations.json",
        "kea6-several-subnets.json",
        "kea6-simple.json",
    ] {
        if let Err(e) = load_data(&format!("kea-examples/{f}")) {
            panic!("{f} should load:\n{e}");
        }
    }
}

#[test]
fn kea_example_with_wildcard_interface_is_refused_precisely() {
    let e = load_data("kea-examples/kea4-comments.json").unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    has(
        &e.errors,
        "Dhcp4.interfaces-config.interfaces[0]",
        "\"*\" (all interfaces) is refused",
    );
    assert!(e.errors[0].file.ends_with("kea4-comments.json"));
    assert!(e
        .to_string()
        .contains("kea4-comments.json: Dhcp4.interfaces-config.interfaces[0]: "));
}

#[test]
fn kea_example_warnings_are_the_expected_ones() {
    // Subnets without an id are numbered like Kea does, with a warning naming the subnet.
    let l = load_data("kea-examples/kea4-several-subnets.json").unwrap();
    let ids: Vec<u32> = l
        .config
        .dhcp4
        .as_ref()
        .unwrap()
        .subnets
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    has(&l.warnings, "Dhcp4.subnet4[2]", "no \"id\": numbered 3");
    // max-row-errors is a memfile knob xdhcp's journal does not need.
    let l = load_data("kea-examples/kea4-leases-expiration.json").unwrap();
    has(
        &l.warnings,
        "Dhcp4.lease-database.max-row-errors",
        "ignored",
    );
    // Options in a space nothing encapsulates are never sent, in Kea as here: say so.
    let l = load_data("kea-examples/kea4-all-options.json").unwrap();
    has(&l.warnings, "Dhcp4.subnet4[0].option-data[1]", "never sent");
}

#[test]
fn kea_examples_semantics() {
    let d = load_data("kea-examples/kea4-leases-expiration.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let e = d.expired_leases;
    assert_eq!(
        (
            e.reclaim_timer_wait_time_secs,
            e.flush_reclaimed_timer_wait_time_secs,
            e.hold_reclaimed_time_secs
        ),
        (5, 10, 1800)
    );
    assert_eq!(
        (
            e.max_reclaim_leases,
            e.max_reclaim_time_ms,
            e.unwarned_reclaim_cycles
        ),
        (500, 100, 10)
    );

    // Shared network inheritance: subnet values win, the network's fill the gaps, the global defaults the rest.
    let d = load_data("kea-examples/kea4-shared-network.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    assert_eq!(d.shared_networks[0].name, "frog");
    assert_eq!(d.shared_networks[0].subnets, vec![0, 1]);
    let s1 = &d.subnets[0];
    assert_eq!(s1.shared_network, Some(0));
    assert_eq!(s1.lifetimes.valid, 30);
    assert_eq!(s1.lifetimes.renew_timer, Some(10));
    assert_eq!(s1.interface.as_deref(), Some("eth1"));
    assert!(s1.authoritative);
    assert!(s1.match_client_id);
    assert!(s1.relay.is_empty());
    let s3 = d.subnets.iter().find(|s| s.id == 3).unwrap();
    assert_eq!(s3.shared_network, None);
    assert_eq!(s3.lifetimes.valid, 7200);
    assert!(!s3.authoritative);

    // HA load-balancing example: defaults from kea-ha-wire.md §4 and the values given.
    let d = load_data("kea-examples/kea4-ha-load-balancing-primary.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let r = &d.high_availability[0];
    assert_eq!(r.mode, HaMode::LoadBalancing);
    assert_eq!(r.this_peer().role, HaRole::Primary);
    assert_eq!(r.delayed_updates_limit, 100);
    assert!(r.send_lease_updates && r.sync_leases && !r.wait_backup_ack);

    // Classification example: tests parsed, class options and fields kept.
    let d = load_data("kea-examples/kea4-classify.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let voip = d.client_classes.iter().find(|c| c.name == "VoIP").unwrap();
    assert_eq!(voip.next_server, Some("192.0.2.254".parse().unwrap()));
    assert_eq!(voip.server_hostname.as_deref(), Some("hal9000"));
    assert!(matches!(voip.test, Some(Expr::Equal(_, _))));
    assert_eq!(d.subnets[2].pools[0].client_class.as_deref(), Some("VoIP"));
    assert_eq!(d.subnets[0].client_class.as_deref(), Some("VoIP"));
}
