//! Option encoding through whole configurations: bytes asserted against Kea's encoding of the same data.

mod common;
use common::*;
use xdhcp_config::model::OptionSet;

fn bytes(set: &OptionSet, code: u16) -> Vec<u8> {
    set.get(code)
        .unwrap_or_else(|| panic!("option {code} missing from {set:?}"))
        .data
        .clone()
}

#[test]
fn kea4_multiple_options_bytes() {
    let d = load_data("kea-examples/kea4-multiple-options.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let o = &d.subnets[0].options;
    assert_eq!(bytes(o, 6), vec![192, 0, 2, 1, 192, 0, 2, 2]);
    assert_eq!(bytes(o, 3), vec![192, 0, 2, 1]);
    assert_eq!(bytes(o, 15), b"example.org".to_vec());
    let mut ds = vec![8];
    ds.extend_from_slice(b"mydomain");
    ds.extend_from_slice(&[7]);
    ds.extend_from_slice(b"example");
    ds.extend_from_slice(&[3]);
    ds.extend_from_slice(b"com");
    ds.push(0);
    ds.extend_from_slice(&[7]);
    ds.extend_from_slice(b"example");
    ds.extend_from_slice(&[3]);
    ds.extend_from_slice(b"com");
    ds.push(0);
    assert_eq!(bytes(o, 119), ds);
    assert_eq!(bytes(o, 28), vec![0xff, 0xff, 0x80, 0x00]);
    assert_eq!(
        bytes(o, 67),
        b"EST5EDT4,M3.2.0/02:00,M11.1.0/02:00".to_vec()
    );
    assert_eq!(bytes(o, 23), vec![0xf0]);
    assert_eq!(bytes(o, 60), b"isc".to_vec());
    assert!(o.get(60).unwrap().always_send);
    assert!(!o.get(3).unwrap().always_send);
    // Pool scope keeps its own options.
    assert_eq!(
        bytes(&d.subnets[0].pools[1].options, 6),
        vec![192, 0, 2, 3, 192, 0, 2, 4]
    );
}

#[test]
fn kea4_all_options_selected_bytes() {
    let d = load_data("kea-examples/kea4-all-options.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let o = &d.global_options;
    assert_eq!(bytes(o, 2), (-25200i32).to_be_bytes().to_vec());
    assert_eq!(bytes(o, 19), vec![1]);
    assert_eq!(bytes(o, 25), vec![0x0c, 0x00, 0x10, 0x00]);
    assert_eq!(bytes(o, 46), vec![1]);
    assert_eq!(
        bytes(o, 63),
        vec![0x1a, 0xbb, 0xad, 0xab, 0xba, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0, 0xca, 0xfe]
    );
    // Record arrays repeat their last field.
    assert_eq!(bytes(o, 78), vec![1, 192, 0, 2, 59, 192, 0, 2, 60]);
    assert_eq!(bytes(o, 79), [&[1u8][..], b"slp-scope"].concat());
    assert_eq!(bytes(o, 94), vec![0, 1, 0]);
    assert_eq!(bytes(o, 93), vec![0x18, 0x00, 0x1c, 0x00]);
    // psid "3/4": offset 2, PSID length 4, PSID 3 in the top bits.
    assert_eq!(bytes(o, 159), vec![2, 4, 0x30, 0x00]);
    // vivco: enterprise 4491 then binary.
    assert_eq!(&bytes(o, 124)[..5], &[0, 0, 0x11, 0x8b, 0x0f]);
    // option-6rd: two uint8, an IPv6 address, then repeated IPv4 addresses.
    let six = bytes(o, 212);
    assert_eq!(six.len(), 1 + 1 + 16 + 4 + 4);
    assert_eq!(&six[..2], &[24, 96]);
    assert_eq!(&six[18..], &[192, 0, 2, 72, 192, 0, 2, 73]);
    // vivso with no vendor sub-options at this level: enterprise and an empty data-len.
    assert_eq!(bytes(o, 125), vec![0, 0, 0x11, 0x8b, 0]);
    assert_eq!(bytes(o, 43), Vec::<u8>::new());
    assert_eq!(
        bytes(o, 137),
        [&[4u8][..], b"lost", &[7], b"example", &[3], b"org", &[0]].concat()
    );
}

#[test]
fn vendor_suboptions_are_encapsulated() {
    let d = load_data("kea-examples/kea4-reservations.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let r = &d.subnets[0].reservations[3];
    assert_eq!(
        bytes(&r.options, 125),
        vec![0, 0, 0x11, 0x8b, 10, 2, 8, 10, 1, 1, 202, 10, 1, 1, 203]
    );
    let d = load_data("kea-examples/kea6-reservations.json")
        .unwrap()
        .config
        .dhcp6
        .unwrap();
    let r = &d.subnets[0].reservations[2];
    let mut want = vec![0, 0, 0x11, 0x8b, 0, 32, 0, 16];
    want.extend(
        "3000:1::234"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    assert_eq!(bytes(&r.options, 17), want);
}

#[test]
fn custom_definitions_and_encapsulation() {
    let l = ok(&v4(
        r#""option-def": [
            {"name": "pxe-menu", "code": 222, "type": "record", "record-types": "uint16, string"},
            {"name": "sub-a", "code": 1, "space": "acme", "type": "uint8"},
            {"name": "acme-opts", "code": 223, "type": "empty", "encapsulate": "acme"},
            {"name": "flags", "code": 224, "type": "boolean", "array": true}
        ],
        "option-data": [
            {"name": "pxe-menu", "data": "7, boot me"},
            {"name": "acme-opts"},
            {"name": "sub-a", "space": "acme", "data": "9"},
            {"code": 224, "data": "true, false, 1"},
            {"code": 250, "csv-format": false, "data": "01:02:0a"},
            {"name": "classless-static-route", "data": "10.0.0.0/8 - 192.0.2.1"},
            {"name": "domain-name", "data": "first.example"},
            {"name": "domain-name", "data": "second.example"}
        ],"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24"}"#,
    ));
    let o = &l.config.dhcp4.unwrap().global_options;
    assert_eq!(bytes(o, 222), [&[0u8, 7][..], b"boot me"].concat());
    assert_eq!(bytes(o, 223), vec![1, 1, 9]);
    assert_eq!(bytes(o, 224), vec![1, 0, 1]);
    assert_eq!(bytes(o, 250), vec![1, 2, 10]);
    assert_eq!(bytes(o, 121), vec![8, 10, 192, 0, 2, 1]);
    // Later definitions at the same scope replace earlier ones.
    assert_eq!(bytes(o, 15), b"second.example".to_vec());
    assert_eq!(o.options.iter().filter(|x| x.code == 15).count(), 1);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn string_with_unescaped_comma_keeps_kea_behaviour_with_a_warning() {
    let l = ok(&v4(
        r#""option-data": [{"name": "domain-name", "data": "a.example, b.example"}],"#,
        "",
    ));
    assert_eq!(
        bytes(&l.config.dhcp4.unwrap().global_options, 15),
        b"a.example".to_vec()
    );
    has(
        &l.warnings,
        "Dhcp4.option-data[0].data",
        "1 extra comma-separated value(s) are dropped",
    );
}

#[test]
fn dhcp6_options() {
    let d = load_data("kea-examples/kea6-multiple-options.json")
        .unwrap()
        .config
        .dhcp6
        .unwrap();
    let o = &d.subnets[0].options;
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    assert_eq!(
        bytes(o, 23),
        [a("2001:db8:2::45"), a("2001:db8:2::100")].concat()
    );
    assert_eq!(bytes(o, 12), a("2001:db8:1:0:ff00::1"));
    assert_eq!(bytes(o, 31), a("2001:db8::1"));
    assert_eq!(bytes(o, 7), vec![0xf0]);
    // bootfile-param: tuples with 2-byte lengths in DHCPv6.
    assert_eq!(
        bytes(o, 60),
        [
            &[0u8, 14][..],
            b"root=/dev/sda2",
            &[0, 5],
            b"quiet",
            &[0, 6],
            b"splash"
        ]
        .concat()
    );
    assert!(o.get(40).unwrap().always_send);
    assert_eq!(
        bytes(&d.subnets[0].pools[0].options, 12),
        a("3001:cafe::21")
    );
    assert_eq!(
        bytes(&d.subnets[0].pd_pools[0].options, 12),
        a("3001:cafe::12")
    );
}
