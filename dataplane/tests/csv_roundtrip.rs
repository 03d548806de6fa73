//! Kea memfile CSV: export/import round trips, Kea's older and newer header variants, the
//! append-log rules (last row wins, valid_lifetime 0 deletes), escaping, and errors with line numbers.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use xdhcp_dataplane::lease::csv::*;
use xdhcp_dataplane::lease::types::{HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseState};

fn l4(last: u8) -> Lease4 {
    Lease4 {
        addr: Ipv4Addr::new(192, 0, 2, last),
        hwaddr: HwAddr::ethernet([0x08, 0x00, 0x27, 0, 0, last]),
        client_id: IdBuf::from_slice(&[1, 0x08, 0x00, 0x27, 0, 0, last]),
        subnet_id: 1,
        cltt: 1_700_000_000,
        valid_lft: 4000,
        state: LeaseState::Assigned,
        fqdn_fwd: true,
        fqdn_rev: false,
        hostname: Some(Arc::from("a,b&c.example.org")),
    }
}

fn l6(last: u16, pd: bool) -> Lease6 {
    Lease6 {
        addr: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last),
        prefix_len: if pd { 64 } else { 128 },
        lease_type: if pd { Lease6Type::Pd } else { Lease6Type::Na },
        duid: IdBuf::from_slice(&[0, 3, 0, 1, 8, 0, 0x27, 0, 0, last as u8]),
        iaid: 0x01020304,
        subnet_id: 2,
        cltt: 1_700_000_100,
        valid_lft: 7200,
        preferred_lft: 3600,
        state: LeaseState::Assigned,
        hwaddr: Some(HwAddr::ethernet([8, 0, 0x27, 0, 0, last as u8])),
        fqdn_fwd: false,
        fqdn_rev: true,
        hostname: None,
    }
}

#[test]
fn lease4_export_is_kea_format_and_round_trips() {
    let mut declined = l4(3);
    declined.hwaddr = HwAddr::default();
    declined.client_id = IdBuf::new();
    declined.state = LeaseState::Declined;
    declined.hostname = None;
    let mut no_cid = l4(2);
    no_cid.client_id = IdBuf::new();
    no_cid.state = LeaseState::ExpiredReclaimed;
    let leases = vec![l4(1), no_cid, declined];
    let mut out = Vec::new();
    let st = write_lease4_csv(&mut out, &leases).unwrap();
    assert_eq!(st.written, 3);
    let text = String::from_utf8(out.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], LEASE4_HEADER);
    assert_eq!(
        lines[1],
        "192.0.2.1,08:00:27:00:00:01,01:08:00:27:00:00:01,4000,1700004000,1,1,0,a&#x2cb&#x26c.example.org,0,"
    );
    assert_eq!(
        lines[2],
        "192.0.2.2,08:00:27:00:00:02,,4000,1700004000,1,1,0,a&#x2cb&#x26c.example.org,2,"
    );
    assert_eq!(lines[3], "192.0.2.3,,,4000,1700004000,1,1,0,,1,");
    let back = read_lease4_csv(&out[..]).unwrap();
    assert_eq!(back, leases);
}

#[test]
fn lease4_export_skips_what_kea_cannot_load() {
    let mut offered = l4(1);
    offered.state = LeaseState::Offered;
    let mut anonymous = l4(2);
    anonymous.hwaddr = HwAddr::default();
    anonymous.client_id = IdBuf::from_slice(&[1]); // Kea wants at least 2 bytes
    let mut out = Vec::new();
    let st = write_lease4_csv(&mut out, &[offered, anonymous, l4(3)]).unwrap();
    assert_eq!(
        st,
        ExportStats {
            written: 1,
            skipped_offered: 1,
            skipped_unrepresentable: 1
        }
    );
}

#[test]
fn lease6_export_is_kea_format_and_round_trips() {
    let mut declined = l6(9, false);
    declined.duid = IdBuf::new();
    declined.hwaddr = None;
    declined.state = LeaseState::Declined;
    let leases = vec![l6(1, false), l6(2, true), declined];
    let mut out = Vec::new();
    assert_eq!(write_lease6_csv(&mut out, &leases).unwrap().written, 3);
    let text = String::from_utf8(out.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], LEASE6_HEADER);
    assert_eq!(
        lines[1],
        "2001:db8:1::1,00:03:00:01:08:00:27:00:00:01,7200,1700007300,2,3600,0,16909060,128,0,1,,08:00:27:00:00:01,0,,1,0"
    );
    assert_eq!(
        lines[3],
        "2001:db8:1::9,00,7200,1700007300,2,3600,0,16909060,128,0,1,,,1,,,"
    );
    let back = read_lease6_csv(&out[..]).unwrap();
    assert_eq!(back, leases);
}

#[test]
fn last_row_wins_and_zero_valid_lifetime_deletes() {
    let csv = format!(
        "{LEASE4_HEADER}\n\
         192.0.2.1,01:02:03:04:05:06,,100,1000,1,0,0,first,0,\n\
         192.0.2.2,01:02:03:04:05:07,,100,1000,1,0,0,gone,0,\n\
         \n\
         192.0.2.1,01:02:03:04:05:06,,200,2000,1,0,0,second,0,\n\
         192.0.2.2,01:02:03:04:05:07,,0,1000,1,0,0,gone,0,\n\
         192.0.2.3,01:02:03:04:05:08,,0,1000,1,0,0,never,0,\n"
    );
    let l = read_lease4_csv(csv.as_bytes()).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].hostname.as_deref(), Some("second"));
    assert_eq!(l[0].cltt, 1800);
    assert_eq!(l[0].valid_lft, 200);
}

#[test]
fn older_and_newer_headers_are_accepted() {
    // Kea 1.0 schema: through hostname (state defaults to 0).
    let v10 =
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname\n\
               10.0.0.1,aa:bb:cc:dd:ee:ff,,3600,1000000,5,1,1,h\n";
    let l = read_lease4_csv(v10.as_bytes()).unwrap();
    assert_eq!(l[0].state, LeaseState::Assigned);
    assert_eq!(l[0].subnet_id, 5);
    assert!(l[0].fqdn_fwd && l[0].fqdn_rev);
    // Schema 2.0: state but no user_context.
    let v20 = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n\
               10.0.0.1,aa:bb:cc:dd:ee:ff,,3600,1000000,5,0,0,,1\n";
    assert_eq!(
        read_lease4_csv(v20.as_bytes()).unwrap()[0].state,
        LeaseState::Declined
    );
    // A newer Kea with an extra column: ignored.
    let newer =
        format!("{LEASE4_HEADER},pool_id\n10.0.0.1,aa:bb:cc:dd:ee:ff,,3600,1000000,5,0,0,,0,,7\n");
    assert_eq!(read_lease4_csv(newer.as_bytes()).unwrap().len(), 1);
    // Too old / not a lease file.
    let bad = "address,hwaddr,client_id,valid_lifetime\n";
    assert!(matches!(
        read_lease4_csv(bad.as_bytes()),
        Err(CsvError::Header { line: 1, .. })
    ));
    let wrong = "address,duid,client_id\n";
    assert!(matches!(
        read_lease4_csv(wrong.as_bytes()),
        Err(CsvError::Header { line: 1, .. })
    ));
    assert!(matches!(read_lease4_csv(&b""[..]), Err(CsvError::NoHeader)));

    // lease6 schema 1.0 (through hostname), 2.0 (hwaddr), 3.0 (state).
    let v6_10 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname\n\
                 2001:db8::1,00:01:02,3600,100000,1,1800,0,7,128,0,0,\n";
    let l = read_lease6_csv(v6_10.as_bytes()).unwrap();
    assert_eq!(l[0].duid.as_slice(), &[0, 1, 2]);
    assert_eq!(l[0].hwaddr, None);
    let v6_30 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state\n\
                 2001:db8::1,00:01:02,3600,100000,1,1800,2,7,56,0,0,,0a:0b:0c:0d:0e:0f,2\n";
    let l = read_lease6_csv(v6_30.as_bytes()).unwrap();
    assert_eq!(l[0].lease_type, Lease6Type::Pd);
    assert_eq!(l[0].prefix_len, 56);
    assert_eq!(l[0].state, LeaseState::ExpiredReclaimed);
    // hwtype defaults to Ethernet when the column is absent.
    assert_eq!(
        l[0].hwaddr,
        Some(HwAddr::ethernet([10, 11, 12, 13, 14, 15]))
    );
    // Current schema with a non-Ethernet hwtype.
    let cur = format!(
        "{LEASE6_HEADER}\n2001:db8::2,0x000102,3600,100000,1,1800,0,7,128,0,0,,01:02,0,,6,4\n"
    );
    let l = read_lease6_csv(cur.as_bytes()).unwrap();
    assert_eq!(l[0].hwaddr, Some(HwAddr::new(6, &[1, 2])));
}

#[test]
fn errors_name_line_and_column() {
    let csv = format!(
        "{LEASE4_HEADER}\n\
         192.0.2.1,01:02:03:04:05:06,,100,1000,1,0,0,,0,\n\
         192.0.2.300,01:02:03:04:05:06,,100,1000,1,0,0,,0,\n"
    );
    match read_lease4_csv(csv.as_bytes()) {
        Err(CsvError::Field {
            line: 3,
            column: "address",
            reason,
        }) => assert!(reason.contains("192.0.2.300")),
        other => panic!("{other:?}"),
    }
    let cases = [
        (
            "192.0.2.1,01:02:03:04:05:06,,100,1000,1,2,0,,0,",
            "fqdn_fwd",
        ),
        ("192.0.2.1,01:02:03:04:05:06,,100,1000,1,0,0,,9,", "state"),
        ("192.0.2.1,01::02,,100,1000,1,0,0,,0,", "hwaddr"),
        ("192.0.2.1,01:02,zz,100,1000,1,0,0,,0,", "client_id"),
        ("192.0.2.1,01:02,,x,1000,1,0,0,,0,", "valid_lifetime"),
        ("192.0.2.1,01:02,,100,50,1,0,0,,0,", "expire"),
        ("192.0.2.1,01:02,,100,1000,1,0,0,,0,[1]", "user_context"),
    ];
    for (row, col) in cases {
        let csv = format!("{LEASE4_HEADER}\n{row}\n");
        match read_lease4_csv(csv.as_bytes()) {
            Err(CsvError::Field {
                line: 2, column, ..
            }) => assert_eq!(column, col, "{row}"),
            other => panic!("{row}: {other:?}"),
        }
    }
    let csv = format!("{LEASE4_HEADER}\n192.0.2.1,01:02,,100,1000,1,0,0\n");
    assert!(matches!(
        read_lease4_csv(csv.as_bytes()),
        Err(CsvError::Row { line: 2, .. })
    ));
    // Neither hwaddr nor client-id, not declined: Kea refuses it, so do we.
    let csv = format!("{LEASE4_HEADER}\n192.0.2.1,,,100,1000,1,0,0,,0,\n");
    assert!(matches!(
        read_lease4_csv(csv.as_bytes()),
        Err(CsvError::Row { line: 2, .. })
    ));
    // The lenient reader skips bad rows like Kea does and keeps the good ones.
    let csv = format!("{LEASE4_HEADER}\n192.0.2.300,01:02,,100,1000,1,0,0,,0,\n192.0.2.1,01:02,,100,1000,1,0,0,,0,{{\"a\":1}}\n");
    let imp = read_lease4_csv_lenient(csv.as_bytes()).unwrap();
    assert_eq!(imp.leases.len(), 1);
    assert_eq!(imp.rows, 2);
    assert_eq!(imp.skipped.len(), 1);
    assert_eq!(imp.skipped[0].line(), Some(2));
    // The lease6 side: the empty DUID is for declined leases only.
    let csv = format!("{LEASE6_HEADER}\n2001:db8::1,00,3600,100000,1,1800,0,7,128,0,0,,,0,,,\n");
    assert!(matches!(
        read_lease6_csv(csv.as_bytes()),
        Err(CsvError::Row { line: 2, .. })
    ));
    let csv = format!("{LEASE6_HEADER}\n2001:db8::1,00:01,3600,100000,1,1800,5,7,128,0,0,,,0,,,\n");
    assert!(matches!(
        read_lease6_csv(csv.as_bytes()),
        Err(CsvError::Field {
            line: 2,
            column: "lease_type",
            ..
        })
    ));
}

#[test]
fn hostile_hostnames_survive_a_round_trip() {
    let mut l = l4(1);
    l.hostname = Some(Arc::from("x,\ny&#x2c\r\t,&"));
    let mut out = Vec::new();
    write_lease4_csv(&mut out, [&l]).unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap().lines().count(),
        2,
        "one line per lease"
    );
    assert_eq!(read_lease4_csv(&out[..]).unwrap(), vec![l]);
}
