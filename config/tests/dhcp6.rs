//! Dhcp6: subnets, pools, pd-pools with excluded prefixes, reservations with addresses and prefixes,
//! lifetimes and their defaults, interface-id, rapid-commit, shared networks, server-id.

mod common;
use common::*;
use std::net::Ipv6Addr;
use xdhcp_config::model::*;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn pd_pools_and_excluded_prefix() {
    let d = ok(&v6(
        "",
        r#"{"id": 10, "subnet": "2001:db8:1::/64", "interface": "xd0", "rapid-commit": true,
            "pools": [{"pool": "2001:db8:1::100 - 2001:db8:1::1ff"}, {"pool": "2001:db8:1::1:0/112"}],
            "pd-pools": [
              {"prefix": "2001:db8:8000::", "prefix-len": 48, "delegated-len": 56},
              {"prefix": "2001:db8:9000::", "prefix-len": 48, "delegated-len": 56,
               "excluded-prefix": "2001:db8:9000:10::", "excluded-prefix-len": 60,
               "client-class": "cpe", "option-data": [{"name": "dns-servers", "data": "2001:db8::53"}]}]}"#,
    ))
    .config
    .dhcp6
    .unwrap();
    let s = &d.subnets[0];
    assert_eq!((s.id, s.network, s.prefix_len), (10, a("2001:db8:1::"), 64));
    assert!(s.rapid_commit);
    assert_eq!(
        (s.pools[0].first, s.pools[0].last),
        (a("2001:db8:1::100"), a("2001:db8:1::1ff"))
    );
    assert_eq!(
        (s.pools[1].first, s.pools[1].last),
        (a("2001:db8:1::1:0"), a("2001:db8:1::1:ffff"))
    );
    let p = &s.pd_pools[0];
    assert_eq!(
        (p.prefix, p.prefix_len, p.delegated_len, p.excluded_prefix),
        (a("2001:db8:8000::"), 48, 56, None)
    );
    let p = &s.pd_pools[1];
    assert_eq!(p.excluded_prefix, Some((a("2001:db8:9000:10::"), 60)));
    assert_eq!(p.client_class.as_deref(), Some("cpe"));
    assert_eq!(
        p.options.get(23).unwrap().data,
        a("2001:db8::53").octets().to_vec()
    );
    // Kea 2.2 defaults for DHCPv6.
    let l = s.lifetimes;
    assert_eq!(
        (l.valid, l.min_valid, l.max_valid, l.preferred),
        (7200, 7200, 7200, 3600)
    );
    assert!(l.calculate_tee_times);
    assert_eq!((l.t1_percent, l.t2_percent), (0.5, 0.8));
    assert_eq!(d.server_id.kind, "LLT");
    assert!(d.server_id.persist);
}

#[test]
fn pd_pool_errors() {
    let e = errors(&v6(
        "",
        r#"{"id": 1, "subnet": "2001:db8:1::/64", "pd-pools": [
            {"prefix": "2001:db8:8000::1", "prefix-len": 48, "delegated-len": 56},
            {"prefix": "2001:db8:9000::", "prefix-len": 48, "delegated-len": 40},
            {"prefix": "2001:db8:a000::", "prefix-len": 48, "delegated-len": 56, "excluded-prefix": "2001:db8:a000::", "excluded-prefix-len": 56},
            {"prefix": "2001:db8:b000::", "prefix-len": 48, "delegated-len": 56, "excluded-prefix": "2001:db8:c000::", "excluded-prefix-len": 60},
            {"prefix": "2001:db8:d000::", "prefix-len": 48, "delegated-len": 56, "excluded-prefix": "2001:db8:d000::"},
            {"prefix": "2001:db8:8000::", "prefix-len": 47, "delegated-len": 56},
            {"prefix": "2001:db8:e000::", "prefix-len": 48}
        ]}"#,
    ));
    let b = "Dhcp6.subnet6[0].pd-pools";
    has(
        &e,
        &format!("{b}[0].prefix"),
        "has bits set beyond prefix-len 48",
    );
    has(
        &e,
        &format!("{b}[1].delegated-len"),
        "delegated-len (40) must not be shorter than prefix-len (48)",
    );
    has(
        &e,
        &format!("{b}[2].excluded-prefix-len"),
        "excluded-prefix-len (56) must be longer than delegated-len (56)",
    );
    has(
        &e,
        &format!("{b}[3].excluded-prefix"),
        "is not inside the pool prefix 2001:db8:b000::/48",
    );
    has(
        &e,
        &format!("{b}[4]"),
        "excluded-prefix and excluded-prefix-len must be given together",
    );
    has(&e, &format!("{b}[6]"), "a pd-pool needs 'delegated-len'");
    assert_eq!(e.len(), 6, "{e:?}");
    // Overlapping delegated ranges.
    let e = errors(&v6(
        "",
        r#"{"id": 1, "subnet": "2001:db8:1::/64", "pd-pools": [
            {"prefix": "2001:db8:8000::", "prefix-len": 48, "delegated-len": 56},
            {"prefix": "2001:db8:8000::", "prefix-len": 40, "delegated-len": 56}]}"#,
    ));
    has(
        &e,
        "Dhcp6.subnet6[0].pd-pools[1].prefix",
        "overlaps the one at Dhcp6.subnet6[0].pd-pools[0].prefix",
    );
}

#[test]
fn reservations_with_addresses_and_prefixes() {
    let d = load_data("kea-examples/kea6-reservations.json")
        .unwrap()
        .config
        .dhcp6
        .unwrap();
    let r = &d.subnets[0].reservations;
    assert_eq!(
        r[0].identifier,
        HostIdentifier::Duid(vec![1, 2, 3, 4, 5, 0xa, 0xb, 0xc, 0xd, 0xe])
    );
    assert_eq!(r[0].ip_addresses, vec![a("2001:db8:1::100")]);
    assert_eq!(
        r[1].identifier,
        HostIdentifier::HwAddress(vec![0, 1, 2, 3, 4, 5])
    );
    assert_eq!(
        r[1].client_classes,
        vec!["special_snowflake".to_string(), "office".to_string()]
    );
    assert_eq!(r[2].prefixes, vec![(a("2001:db8:2:abcd::"), 64)]);
    assert_eq!(r[2].hostname.as_deref(), Some("foo.example.com"));
    assert_eq!(
        r[3].identifier,
        HostIdentifier::FlexId(b"somevalue".to_vec())
    );
    let s = &d.subnets[0];
    assert!(s.reservations_in_subnet && !s.reservations_out_of_pool && !s.reservations_global);
    assert_eq!(d.lifetimes.preferred, 3000);
    assert_eq!(s.lifetimes.renew_timer, Some(1000));

    let e = errors(&v6(
        "",
        r#"{"id": 1, "subnet": "2001:db8:1::/64", "reservations": [
            {"duid": "01:02", "ip-addresses": ["2001:db8:2::1", "nope"], "prefixes": ["2001:db8:3::1/64", "2001:db8:4::"]},
            {"client-id": "01:02:03", "ip-addresses": ["2001:db8:1::5"]}]}"#,
    ));
    let b = "Dhcp6.subnet6[0].reservations";
    has(
        &e,
        &format!("{b}[0].ip-addresses[0]"),
        "2001:db8:2::1 is outside the subnet 2001:db8:1::/64",
    );
    has(
        &e,
        &format!("{b}[0].ip-addresses[1]"),
        "'nope' is not an IPv6 address",
    );
    has(
        &e,
        &format!("{b}[0].prefixes[0]"),
        "has bits set beyond the prefix length",
    );
    has(&e, &format!("{b}[0].prefixes[1]"), "not a prefix/length");
    has(&e, &format!("{b}[1].client-id"), "unknown parameter");
}

#[test]
fn lifetimes_inherit_and_interface_id() {
    let d = ok(&v6(
        r#""preferred-lifetime": 1000, "valid-lifetime": 2000, "min-valid-lifetime": 1500, "max-valid-lifetime": 4000,
           "renew-timer": 500, "rebind-timer": 800, "calculate-tee-times": false,
           "shared-networks": [{"name": "net", "interface-id": "port-7", "rapid-commit": true, "valid-lifetime": 3000,
              "relay": {"ip-addresses": ["2001:db8::1"]},
              "subnet6": [{"id": 5, "subnet": "2001:db8:5::/64", "preferred-lifetime": 900}]}],"#,
        r#"{"id": 1, "subnet": "2001:db8:1::/64", "interface-id": "abc"}"#,
    ))
    .config
    .dhcp6
    .unwrap();
    let s5 = d.subnets.iter().find(|s| s.id == 5).unwrap();
    assert_eq!(s5.shared_network, Some(0));
    assert_eq!(s5.interface_id.as_deref(), Some(&b"port-7"[..]));
    assert!(s5.rapid_commit);
    assert_eq!(s5.relay, vec![a("2001:db8::1")]);
    let l = s5.lifetimes;
    // The network's lone valid-lifetime fixes min = default = max at that level.
    assert_eq!((l.valid, l.min_valid, l.max_valid), (3000, 3000, 3000));
    assert_eq!(
        (l.preferred, l.min_preferred, l.max_preferred),
        (900, 900, 900)
    );
    assert_eq!(
        (l.renew_timer, l.rebind_timer, l.calculate_tee_times),
        (Some(500), Some(800), false)
    );
    let s1 = d.subnets.iter().find(|s| s.id == 1).unwrap();
    assert_eq!(
        (
            s1.lifetimes.valid,
            s1.lifetimes.min_valid,
            s1.lifetimes.max_valid
        ),
        (2000, 1500, 4000)
    );
    assert_eq!(s1.lifetimes.preferred, 1000);
    assert_eq!(s1.interface_id.as_deref(), Some(&b"abc"[..]));
    assert!(!s1.rapid_commit);
    assert_eq!(d.shared_networks[0].subnets, vec![0]);

    let e = errors(&v6(
        r#""rapid-commit": true,"#,
        r#"{"id": 1, "subnet": "2001:db8:1::/64", "interface": "xd0", "interface-id": "x"}"#,
    ));
    has(&e, "Dhcp6.rapid-commit", "unknown parameter");
    has(&e, "Dhcp6.subnet6[0].interface-id", "mutually exclusive");
}

#[test]
fn server_id_and_v6_specific_errors() {
    let d = ok(&v6(
        r#""server-id": {"type": "EN", "enterprise-id": 2495, "identifier": "0102aabb", "persist": false}, "data-directory": "/var/lib/xdhcp","#,
        "",
    ))
    .config
    .dhcp6
    .unwrap();
    assert_eq!(d.server_id.kind, "EN");
    assert_eq!(d.server_id.identifier, Some(vec![1, 2, 0xaa, 0xbb]));
    assert_eq!(d.server_id.enterprise_id, Some(2495));
    assert!(!d.server_id.persist);
    assert_eq!(
        d.data_directory,
        Some(std::path::PathBuf::from("/var/lib/xdhcp"))
    );

    let e = errors(
        r#"{"Dhcp6": {"interfaces-config": {"interfaces": ["xd0/192.0.2.1", "*"], "dhcp-socket-type": "raw"},
            "server-id": {"type": "UUID"}, "echo-client-id": true,
            "subnet6": [{"id": 1, "subnet": "2001:db8:1::/64", "pools": [{"pool": "2001:db8:2::1-2001:db8:2::9"}],
                         "relay": {"ip-addresses": ["192.0.2.1"]}}]}}"#,
    );
    has(
        &e,
        "Dhcp6.interfaces-config.interfaces[0]",
        "is not an IPv6 address",
    );
    has(&e, "Dhcp6.interfaces-config.interfaces[1]", "refused");
    has(
        &e,
        "Dhcp6.interfaces-config.dhcp-socket-type",
        "unknown parameter",
    );
    has(&e, "Dhcp6.server-id.type", "'UUID' is not LLT, EN or LL");
    has(&e, "Dhcp6.echo-client-id", "unknown parameter");
    has(
        &e,
        "Dhcp6.subnet6[0].pools[0].pool",
        "not inside the subnet 2001:db8:1::/64",
    );
    has(
        &e,
        "Dhcp6.subnet6[0].relay.ip-addresses[0]",
        "not an IPv6 address",
    );
}

#[test]
fn both_families_in_one_file() {
    let l = ok(
        r#"{"Dhcp4": {"interfaces-config": {"interfaces": ["xd0"]}, "subnet4": [{"id": 1, "subnet": "192.0.2.0/24"}]},
                 "Dhcp6": {"interfaces-config": {"interfaces": ["xd0"]}, "subnet6": [{"id": 1, "subnet": "2001:db8::/64"}]}}"#,
    );
    assert!(l.config.dhcp4.is_some() && l.config.dhcp6.is_some());
}

#[test]
fn ha_in_dhcp6() {
    let d = load_data("kea-examples/kea6-ha-hot-standby.json")
        .unwrap()
        .config
        .dhcp6
        .unwrap();
    let r = &d.high_availability[0];
    assert_eq!(r.this_server_name, "server2");
    assert_eq!(r.this_peer().role, HaRole::Standby);
    assert_eq!((r.max_ack_delay_ms, r.max_unacked_clients), (5000, 5));
    assert_eq!(
        d.control_socket.as_ref().unwrap().socket_name,
        std::path::PathBuf::from("/tmp/kea6-ctrl-socket")
    );
    assert_eq!(d.loggers.len(), 2);
    assert_eq!(d.loggers[1].debuglevel, 99);
}
