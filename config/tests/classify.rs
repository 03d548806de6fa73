//! Client-class tests read from a configuration and evaluated against packets, as the engine will do.

mod common;
use common::*;
use xdhcp_config::classify::{eval_bool, parse, ClassifyInput};
use xdhcp_config::model::{Expr, PktField};
use xdhcp_config::options::{OptionDefs, Universe};

struct P4 {
    mac: [u8; 6],
    msgtype: u8,
    xid: u32,
    opt60: Option<&'static [u8]>,
    circuit: Option<&'static [u8]>,
}

impl ClassifyInput for P4 {
    fn option(&self, code: u16) -> Option<&[u8]> {
        match code {
            60 => self.opt60,
            _ => None,
        }
    }
    fn relay4_suboption(&self, sub: u8) -> Option<&[u8]> {
        if sub == 1 {
            self.circuit
        } else {
            None
        }
    }
    fn pkt_field(&self, f: PktField) -> Vec<u8> {
        match f {
            PktField::Mac => self.mac.to_vec(),
            PktField::MsgType4 => u32::from(self.msgtype).to_be_bytes().to_vec(),
            PktField::TransId4 => self.xid.to_be_bytes().to_vec(),
            PktField::Hlen => 6u32.to_be_bytes().to_vec(),
            PktField::Htype => 1u32.to_be_bytes().to_vec(),
            PktField::Iface => b"xd0".to_vec(),
            _ => vec![0; 4],
        }
    }
}

fn classes_of(p: &P4, classes: &[xdhcp_config::model::ClientClass]) -> Vec<String> {
    let mut got: Vec<String> = Vec::new();
    for c in classes {
        let Some(t) = &c.test else { continue };
        let m = |n: &str| got.iter().any(|g| g == n);
        if eval_bool(t, p, &m) {
            got.push(c.name.clone());
        }
    }
    got
}

#[test]
fn kea_classify_example() {
    let d = load_data("kea-examples/kea4-classify.json")
        .unwrap()
        .config
        .dhcp4
        .unwrap();
    let aastra = P4 {
        mac: [1, 2, 3, 4, 5, 6],
        msgtype: 1,
        xid: 0,
        opt60: Some(b"Aastra 6731i"),
        circuit: None,
    };
    assert_eq!(
        classes_of(&aastra, &d.client_classes),
        vec!["special_snowflake", "discovers", "broken", "VoIP"]
    );
    let other = P4 {
        mac: [9, 9, 9, 9, 9, 9],
        msgtype: 3,
        xid: 7,
        opt60: Some(b"MSFT 5.0"),
        circuit: None,
    };
    assert!(classes_of(&other, &d.client_classes).is_empty());
    let none = P4 {
        mac: [9; 6],
        msgtype: 3,
        xid: 7,
        opt60: None,
        circuit: None,
    };
    assert!(classes_of(&none, &d.client_classes).is_empty());
}

#[test]
fn member_chains_and_relay_tests_from_config() {
    let d = ok(&v4(
        r#""client-classes": [
            {"name": "port7", "test": "relay4[1].hex == 'eth0/7'"},
            {"name": "relayed", "test": "relay4[1].exists"},
            {"name": "voip-on-7", "test": "member('port7') and substring(option[60].hex, 0, 6) == 'Aastra'"},
            {"name": "ha-scope", "test": "member('HA_server1') or pkt.iface == 'xd0'"},
            {"name": "tagged", "test": "ifelse(relay4[1].exists, hexstring(pkt4.mac, ':'), 'none') == '01:02:03:04:05:06'"}
        ],"#,
        r#"{"id": 1, "subnet": "192.0.2.0/24"}"#,
    ))
    .config
    .dhcp4
    .unwrap();
    let p = P4 {
        mac: [1, 2, 3, 4, 5, 6],
        msgtype: 3,
        xid: 1,
        opt60: Some(b"Aastra"),
        circuit: Some(b"eth0/7"),
    };
    assert_eq!(
        classes_of(&p, &d.client_classes),
        vec!["port7", "relayed", "voip-on-7", "ha-scope", "tagged"]
    );
    let p = P4 {
        mac: [1, 2, 3, 4, 5, 6],
        msgtype: 3,
        xid: 1,
        opt60: Some(b"Aastra"),
        circuit: Some(b"eth0/8"),
    };
    assert_eq!(
        classes_of(&p, &d.client_classes),
        vec!["relayed", "ha-scope", "tagged"]
    );
}

#[test]
fn integer_literals_are_four_byte_strings_like_kea() {
    let defs = OptionDefs::standard(Universe::V4);
    let e = parse("pkt4.msgtype == 3", &defs).unwrap();
    assert_eq!(
        e,
        Expr::Equal(
            Box::new(Expr::PktField(PktField::MsgType4)),
            Box::new(Expr::Literal(vec![0, 0, 0, 3]))
        )
    );
    let e = parse("option[dhcp-client-identifier].exists", &defs).unwrap();
    assert_eq!(e, Expr::OptionExists(61));
    let v6 = OptionDefs::standard(Universe::V6);
    assert_eq!(
        parse("option[1].exists and pkt6.msgtype == 1", &v6).map(|_| ()),
        Ok(())
    );
    assert!(parse("option[70000].exists", &v6)
        .unwrap_err()
        .contains("out of range"));
}
