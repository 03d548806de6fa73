//! Standard DHCPv4/DHCPv6 option definitions (names, codes and data layouts as in Kea 2.2's
//! `std_option_defs.h`, plus the ISC/DOCSIS vendor space 4491 and RFC 3442 classless routes) and the encoding
//! of Kea `option-data` entries into wire payloads. Encoding happens once at config load, so the engine only
//! copies bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which protocol an option belongs to; decides tuple length prefixes and sub-option header sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Universe {
    V4,
    V6,
}

impl Universe {
    /// Kea's name of the top-level option space.
    pub fn top_space(self) -> &'static str {
        match self {
            Universe::V4 => "dhcp4",
            Universe::V6 => "dhcp6",
        }
    }
}

/// Kea's option data types (`type` / `record-types` in `option-def`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Empty,
    Binary,
    Boolean,
    Int8,
    Int16,
    Int32,
    Uint8,
    Uint16,
    Uint32,
    Ipv4Address,
    Ipv6Address,
    Ipv6Prefix,
    Psid,
    String,
    Fqdn,
    Tuple,
    Record,
    /// RFC 3442 classless static routes, written as Kea 2.6 does: `"10.0.0.0/8 - 192.0.2.1, ..."`.
    ClasslessRoutes,
}

impl DataType {
    /// Parses a Kea type name.
    pub fn from_kea(s: &str) -> Option<DataType> {
        Some(match s {
            "empty" => DataType::Empty,
            "binary" => DataType::Binary,
            "boolean" => DataType::Boolean,
            "int8" => DataType::Int8,
            "int16" => DataType::Int16,
            "int32" => DataType::Int32,
            "uint8" => DataType::Uint8,
            "uint16" => DataType::Uint16,
            "uint32" => DataType::Uint32,
            "ipv4-address" => DataType::Ipv4Address,
            "ipv6-address" => DataType::Ipv6Address,
            "ipv6-prefix" => DataType::Ipv6Prefix,
            "psid" => DataType::Psid,
            "string" => DataType::String,
            "fqdn" => DataType::Fqdn,
            "tuple" => DataType::Tuple,
            "record" => DataType::Record,
            _ => return None,
        })
    }
}

/// One option definition: standard (from the tables below) or custom (`option-def`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDef {
    pub name: String,
    pub code: u16,
    pub space: String,
    pub ty: DataType,
    pub array: bool,
    pub record: Vec<DataType>,
    /// The option space whose options this option carries as sub-options ("" for none).
    pub encapsulate: String,
}

struct Std(
    &'static str,
    u16,
    DataType,
    bool,
    &'static [DataType],
    &'static str,
);

use DataType as T;

const R_SLP_DA: &[DataType] = &[T::Boolean, T::Ipv4Address];
const R_SLP_SCOPE: &[DataType] = &[T::Boolean, T::String];
const R_FQDN4: &[DataType] = &[T::Uint8, T::Uint8, T::Uint8, T::Fqdn];
const R_VIVCO: &[DataType] = &[T::Uint32, T::Binary];
const R_NDI: &[DataType] = &[T::Uint8, T::Uint8, T::Uint8];
const R_UUID: &[DataType] = &[T::Uint8, T::Binary];
const R_RDNSS4: &[DataType] = &[T::Uint8, T::Ipv4Address, T::Ipv4Address, T::Fqdn];
const R_PORTPARAMS: &[DataType] = &[T::Uint8, T::Psid];
const R_6RD: &[DataType] = &[T::Uint8, T::Uint8, T::Ipv6Address, T::Ipv4Address];
const R_NONE: &[DataType] = &[];

#[rustfmt::skip]
const STD_V4: &[Std] = &[
    Std("subnet-mask", 1, T::Ipv4Address, false, R_NONE, ""),
    Std("time-offset", 2, T::Int32, false, R_NONE, ""),
    Std("routers", 3, T::Ipv4Address, true, R_NONE, ""),
    Std("time-servers", 4, T::Ipv4Address, true, R_NONE, ""),
    Std("name-servers", 5, T::Ipv4Address, true, R_NONE, ""),
    Std("domain-name-servers", 6, T::Ipv4Address, true, R_NONE, ""),
    Std("log-servers", 7, T::Ipv4Address, true, R_NONE, ""),
    Std("cookie-servers", 8, T::Ipv4Address, true, R_NONE, ""),
    Std("lpr-servers", 9, T::Ipv4Address, true, R_NONE, ""),
    Std("impress-servers", 10, T::Ipv4Address, true, R_NONE, ""),
    Std("resource-location-servers", 11, T::Ipv4Address, true, R_NONE, ""),
    Std("host-name", 12, T::String, false, R_NONE, ""),
    Std("boot-size", 13, T::Uint16, false, R_NONE, ""),
    Std("merit-dump", 14, T::String, false, R_NONE, ""),
    Std("domain-name", 15, T::String, false, R_NONE, ""),
    Std("swap-server", 16, T::Ipv4Address, false, R_NONE, ""),
    Std("root-path", 17, T::String, false, R_NONE, ""),
    Std("extensions-path", 18, T::String, false, R_NONE, ""),
    Std("ip-forwarding", 19, T::Boolean, false, R_NONE, ""),
    Std("non-local-source-routing", 20, T::Boolean, false, R_NONE, ""),
    Std("policy-filter", 21, T::Ipv4Address, true, R_NONE, ""),
    Std("max-dgram-reassembly", 22, T::Uint16, false, R_NONE, ""),
    Std("default-ip-ttl", 23, T::Uint8, false, R_NONE, ""),
    Std("path-mtu-aging-timeout", 24, T::Uint32, false, R_NONE, ""),
    Std("path-mtu-plateau-table", 25, T::Uint16, true, R_NONE, ""),
    Std("interface-mtu", 26, T::Uint16, false, R_NONE, ""),
    Std("all-subnets-local", 27, T::Boolean, false, R_NONE, ""),
    Std("broadcast-address", 28, T::Ipv4Address, false, R_NONE, ""),
    Std("perform-mask-discovery", 29, T::Boolean, false, R_NONE, ""),
    Std("mask-supplier", 30, T::Boolean, false, R_NONE, ""),
    Std("router-discovery", 31, T::Boolean, false, R_NONE, ""),
    Std("router-solicitation-address", 32, T::Ipv4Address, false, R_NONE, ""),
    Std("static-routes", 33, T::Ipv4Address, true, R_NONE, ""),
    Std("trailer-encapsulation", 34, T::Boolean, false, R_NONE, ""),
    Std("arp-cache-timeout", 35, T::Uint32, false, R_NONE, ""),
    Std("ieee802-3-encapsulation", 36, T::Boolean, false, R_NONE, ""),
    Std("default-tcp-ttl", 37, T::Uint8, false, R_NONE, ""),
    Std("tcp-keepalive-interval", 38, T::Uint32, false, R_NONE, ""),
    Std("tcp-keepalive-garbage", 39, T::Boolean, false, R_NONE, ""),
    Std("nis-domain", 40, T::String, false, R_NONE, ""),
    Std("nis-servers", 41, T::Ipv4Address, true, R_NONE, ""),
    Std("ntp-servers", 42, T::Ipv4Address, true, R_NONE, ""),
    Std("vendor-encapsulated-options", 43, T::Empty, false, R_NONE, "vendor-encapsulated-options-space"),
    Std("netbios-name-servers", 44, T::Ipv4Address, true, R_NONE, ""),
    Std("netbios-dd-server", 45, T::Ipv4Address, true, R_NONE, ""),
    Std("netbios-node-type", 46, T::Uint8, false, R_NONE, ""),
    Std("netbios-scope", 47, T::String, false, R_NONE, ""),
    Std("font-servers", 48, T::Ipv4Address, true, R_NONE, ""),
    Std("x-display-manager", 49, T::Ipv4Address, true, R_NONE, ""),
    Std("dhcp-requested-address", 50, T::Ipv4Address, false, R_NONE, ""),
    Std("dhcp-lease-time", 51, T::Uint32, false, R_NONE, ""),
    Std("dhcp-option-overload", 52, T::Uint8, false, R_NONE, ""),
    Std("dhcp-message-type", 53, T::Uint8, false, R_NONE, ""),
    Std("dhcp-server-identifier", 54, T::Ipv4Address, false, R_NONE, ""),
    Std("dhcp-parameter-request-list", 55, T::Uint8, true, R_NONE, ""),
    Std("dhcp-message", 56, T::String, false, R_NONE, ""),
    Std("dhcp-max-message-size", 57, T::Uint16, false, R_NONE, ""),
    Std("dhcp-renewal-time", 58, T::Uint32, false, R_NONE, ""),
    Std("dhcp-rebinding-time", 59, T::Uint32, false, R_NONE, ""),
    Std("vendor-class-identifier", 60, T::String, false, R_NONE, ""),
    Std("dhcp-client-identifier", 61, T::Binary, false, R_NONE, ""),
    Std("nwip-domain-name", 62, T::String, false, R_NONE, ""),
    Std("nwip-suboptions", 63, T::Binary, false, R_NONE, ""),
    Std("nisplus-domain-name", 64, T::String, false, R_NONE, ""),
    Std("nisplus-servers", 65, T::Ipv4Address, true, R_NONE, ""),
    Std("tftp-server-name", 66, T::String, false, R_NONE, ""),
    Std("boot-file-name", 67, T::String, false, R_NONE, ""),
    Std("mobile-ip-home-agent", 68, T::Ipv4Address, true, R_NONE, ""),
    Std("smtp-server", 69, T::Ipv4Address, true, R_NONE, ""),
    Std("pop-server", 70, T::Ipv4Address, true, R_NONE, ""),
    Std("nntp-server", 71, T::Ipv4Address, true, R_NONE, ""),
    Std("www-server", 72, T::Ipv4Address, true, R_NONE, ""),
    Std("finger-server", 73, T::Ipv4Address, true, R_NONE, ""),
    Std("irc-server", 74, T::Ipv4Address, true, R_NONE, ""),
    Std("streettalk-server", 75, T::Ipv4Address, true, R_NONE, ""),
    Std("streettalk-directory-assistance-server", 76, T::Ipv4Address, true, R_NONE, ""),
    Std("user-class", 77, T::Binary, false, R_NONE, ""),
    Std("slp-directory-agent", 78, T::Record, true, R_SLP_DA, ""),
    Std("slp-service-scope", 79, T::Record, false, R_SLP_SCOPE, ""),
    Std("fqdn", 81, T::Record, false, R_FQDN4, ""),
    Std("dhcp-agent-options", 82, T::Empty, false, R_NONE, "dhcp-agent-options-space"),
    Std("nds-servers", 85, T::Ipv4Address, true, R_NONE, ""),
    Std("nds-tree-name", 86, T::String, false, R_NONE, ""),
    Std("nds-context", 87, T::String, false, R_NONE, ""),
    Std("bcms-controller-names", 88, T::Fqdn, true, R_NONE, ""),
    Std("bcms-controller-address", 89, T::Ipv4Address, true, R_NONE, ""),
    Std("authenticate", 90, T::Binary, false, R_NONE, ""),
    Std("client-last-transaction-time", 91, T::Uint32, false, R_NONE, ""),
    Std("associated-ip", 92, T::Ipv4Address, true, R_NONE, ""),
    Std("client-system", 93, T::Uint16, true, R_NONE, ""),
    Std("client-ndi", 94, T::Record, false, R_NDI, ""),
    Std("uuid-guid", 97, T::Record, false, R_UUID, ""),
    Std("uap-servers", 98, T::String, false, R_NONE, ""),
    Std("geoconf-civic", 99, T::Binary, false, R_NONE, ""),
    Std("pcode", 100, T::String, false, R_NONE, ""),
    Std("tcode", 101, T::String, false, R_NONE, ""),
    Std("v6-only-preferred", 108, T::Uint32, false, R_NONE, ""),
    Std("netinfo-server-address", 112, T::Ipv4Address, true, R_NONE, ""),
    Std("netinfo-server-tag", 113, T::String, false, R_NONE, ""),
    Std("v4-captive-portal", 114, T::String, false, R_NONE, ""),
    Std("auto-config", 116, T::Uint8, false, R_NONE, ""),
    Std("name-service-search", 117, T::Uint16, true, R_NONE, ""),
    Std("subnet-selection", 118, T::Ipv4Address, false, R_NONE, ""),
    Std("domain-search", 119, T::Fqdn, true, R_NONE, ""),
    Std("classless-static-route", 121, T::ClasslessRoutes, false, R_NONE, ""),
    Std("vivco-suboptions", 124, T::Record, false, R_VIVCO, ""),
    Std("vivso-suboptions", 125, T::Uint32, false, R_NONE, ""),
    Std("pana-agent", 136, T::Ipv4Address, true, R_NONE, ""),
    Std("v4-lost", 137, T::Fqdn, false, R_NONE, ""),
    Std("capwap-ac-v4", 138, T::Ipv4Address, true, R_NONE, ""),
    Std("sip-ua-cs-domains", 141, T::Fqdn, true, R_NONE, ""),
    Std("rdnss-selection", 146, T::Record, true, R_RDNSS4, ""),
    Std("v4-portparams", 159, T::Record, false, R_PORTPARAMS, ""),
    Std("option-6rd", 212, T::Record, true, R_6RD, ""),
    Std("v4-access-domain", 213, T::Fqdn, false, R_NONE, ""),
];

/// DOCSIS3 (vendor 4491) sub-options for DHCPv4 (spaces `vendor-4491` and `docsis3-v4`).
#[rustfmt::skip]
const VENDOR4491_V4: &[Std] = &[
    Std("oro", 1, T::Uint8, true, R_NONE, ""),
    Std("tftp-servers", 2, T::Ipv4Address, true, R_NONE, ""),
];

const R_IA: &[DataType] = &[T::Uint32, T::Uint32, T::Uint32];
const R_IAADDR: &[DataType] = &[T::Ipv6Address, T::Uint32, T::Uint32];
const R_IAPREFIX: &[DataType] = &[T::Uint32, T::Uint32, T::Uint8, T::Ipv6Address];
const R_STATUS: &[DataType] = &[T::Uint16, T::String];
const R_VCLASS: &[DataType] = &[T::Uint32, T::Binary];
const R_GEOCIVIC: &[DataType] = &[T::Uint8, T::Uint16, T::Binary];
const R_REMOTE_ID: &[DataType] = &[T::Uint32, T::Binary];
const R_CLIENT_FQDN: &[DataType] = &[T::Uint8, T::Fqdn];
const R_LQ_QUERY: &[DataType] = &[T::Uint8, T::Ipv6Address];
const R_LQ_RELAY: &[DataType] = &[T::Ipv6Address, T::Binary];
const R_NII: &[DataType] = &[T::Uint8, T::Uint8, T::Uint8];
const R_RDNSS6: &[DataType] = &[T::Ipv6Address, T::Uint8, T::Fqdn];
const R_SIGNATURE: &[DataType] = &[T::Uint8, T::Uint8, T::Binary];

#[rustfmt::skip]
const STD_V6: &[Std] = &[
    Std("clientid", 1, T::Binary, false, R_NONE, ""),
    Std("serverid", 2, T::Binary, false, R_NONE, ""),
    Std("ia-na", 3, T::Record, false, R_IA, ""),
    Std("ia-ta", 4, T::Uint32, false, R_NONE, ""),
    Std("iaaddr", 5, T::Record, false, R_IAADDR, ""),
    Std("oro", 6, T::Uint16, true, R_NONE, ""),
    Std("preference", 7, T::Uint8, false, R_NONE, ""),
    Std("elapsed-time", 8, T::Uint16, false, R_NONE, ""),
    Std("relay-msg", 9, T::Binary, false, R_NONE, ""),
    Std("auth", 11, T::Binary, false, R_NONE, ""),
    Std("unicast", 12, T::Ipv6Address, false, R_NONE, ""),
    Std("status-code", 13, T::Record, false, R_STATUS, ""),
    Std("rapid-commit", 14, T::Empty, false, R_NONE, ""),
    Std("user-class", 15, T::Binary, false, R_NONE, ""),
    Std("vendor-class", 16, T::Record, false, R_VCLASS, ""),
    Std("vendor-opts", 17, T::Uint32, false, R_NONE, "vendor-opts-space"),
    Std("interface-id", 18, T::Binary, false, R_NONE, ""),
    Std("reconf-msg", 19, T::Uint8, false, R_NONE, ""),
    Std("reconf-accept", 20, T::Empty, false, R_NONE, ""),
    Std("sip-server-dns", 21, T::Fqdn, true, R_NONE, ""),
    Std("sip-server-addr", 22, T::Ipv6Address, true, R_NONE, ""),
    Std("dns-servers", 23, T::Ipv6Address, true, R_NONE, ""),
    Std("domain-search", 24, T::Fqdn, true, R_NONE, ""),
    Std("ia-pd", 25, T::Record, false, R_IA, ""),
    Std("iaprefix", 26, T::Record, false, R_IAPREFIX, ""),
    Std("nis-servers", 27, T::Ipv6Address, true, R_NONE, ""),
    Std("nisp-servers", 28, T::Ipv6Address, true, R_NONE, ""),
    Std("nis-domain-name", 29, T::Fqdn, true, R_NONE, ""),
    Std("nisp-domain-name", 30, T::Fqdn, true, R_NONE, ""),
    Std("sntp-servers", 31, T::Ipv6Address, true, R_NONE, ""),
    Std("information-refresh-time", 32, T::Uint32, false, R_NONE, ""),
    Std("bcmcs-server-dns", 33, T::Fqdn, true, R_NONE, ""),
    Std("bcmcs-server-addr", 34, T::Ipv6Address, true, R_NONE, ""),
    Std("geoconf-civic", 36, T::Record, false, R_GEOCIVIC, ""),
    Std("remote-id", 37, T::Record, false, R_REMOTE_ID, ""),
    Std("subscriber-id", 38, T::Binary, false, R_NONE, ""),
    Std("client-fqdn", 39, T::Record, false, R_CLIENT_FQDN, ""),
    Std("pana-agent", 40, T::Ipv6Address, true, R_NONE, ""),
    Std("new-posix-timezone", 41, T::String, false, R_NONE, ""),
    Std("new-tzdb-timezone", 42, T::String, false, R_NONE, ""),
    Std("ero", 43, T::Uint16, true, R_NONE, ""),
    Std("lq-query", 44, T::Record, false, R_LQ_QUERY, ""),
    Std("client-data", 45, T::Empty, false, R_NONE, ""),
    Std("clt-time", 46, T::Uint32, false, R_NONE, ""),
    Std("lq-relay-data", 47, T::Record, false, R_LQ_RELAY, ""),
    Std("lq-client-link", 48, T::Ipv6Address, true, R_NONE, ""),
    Std("v6-lost", 51, T::Fqdn, false, R_NONE, ""),
    Std("capwap-ac-v6", 52, T::Ipv6Address, true, R_NONE, ""),
    Std("relay-id", 53, T::Binary, false, R_NONE, ""),
    Std("v6-access-domain", 57, T::Fqdn, false, R_NONE, ""),
    Std("sip-ua-cs-list", 58, T::Fqdn, true, R_NONE, ""),
    Std("bootfile-url", 59, T::String, false, R_NONE, ""),
    Std("bootfile-param", 60, T::Tuple, true, R_NONE, ""),
    Std("client-arch-type", 61, T::Uint16, true, R_NONE, ""),
    Std("nii", 62, T::Record, false, R_NII, ""),
    Std("aftr-name", 64, T::Fqdn, false, R_NONE, ""),
    Std("erp-local-domain-name", 65, T::Fqdn, false, R_NONE, ""),
    Std("rsoo", 66, T::Empty, false, R_NONE, "rsoo-opts"),
    Std("pd-exclude", 67, T::Ipv6Prefix, false, R_NONE, ""),
    Std("rdnss-selection", 74, T::Record, true, R_RDNSS6, ""),
    Std("client-linklayer-addr", 79, T::Binary, false, R_NONE, ""),
    Std("link-address", 80, T::Ipv6Address, false, R_NONE, ""),
    Std("solmax-rt", 82, T::Uint32, false, R_NONE, ""),
    Std("inf-max-rt", 83, T::Uint32, false, R_NONE, ""),
    Std("dhcpv4-message", 87, T::Binary, false, R_NONE, ""),
    Std("dhcp4o6-server-addr", 88, T::Ipv6Address, true, R_NONE, ""),
    Std("v6-captive-portal", 103, T::String, false, R_NONE, ""),
    Std("ipv6-address-andsf", 143, T::Ipv6Address, true, R_NONE, ""),
    Std("public-key", 701, T::Binary, false, R_NONE, ""),
    Std("certificate", 702, T::Binary, false, R_NONE, ""),
    Std("signature", 703, T::Record, false, R_SIGNATURE, ""),
    Std("timestamp", 704, T::Binary, false, R_NONE, ""),
];

/// DOCSIS3 (vendor 4491) sub-options for DHCPv6 (spaces `vendor-4491` and `docsis3-v6`).
#[rustfmt::skip]
const VENDOR4491_V6: &[Std] = &[
    Std("oro", 1, T::Uint16, true, R_NONE, ""),
    Std("tftp-servers", 32, T::Ipv6Address, true, R_NONE, ""),
    Std("config-file", 33, T::String, false, R_NONE, ""),
    Std("syslog-servers", 34, T::Ipv6Address, true, R_NONE, ""),
    Std("device-id", 36, T::Binary, false, R_NONE, ""),
    Std("time-servers", 37, T::Ipv6Address, true, R_NONE, ""),
    Std("time-offset", 38, T::Int32, false, R_NONE, ""),
];

/// The option definitions visible while reading one `Dhcp4` or `Dhcp6` section: the standard ones plus
/// the `option-def` entries.
#[derive(Debug, Clone)]
pub struct OptionDefs {
    pub universe: Universe,
    defs: Vec<OptionDef>,
}

fn from_std<'a>(table: &'a [Std], space: &str) -> impl Iterator<Item = OptionDef> + 'a {
    let space = space.to_string();
    table.iter().map(move |s| OptionDef {
        name: s.0.to_string(),
        code: s.1,
        space: space.clone(),
        ty: s.2,
        array: s.3,
        record: s.4.to_vec(),
        encapsulate: s.5.to_string(),
    })
}

impl OptionDefs {
    /// The standard definitions of `universe`.
    pub fn standard(universe: Universe) -> OptionDefs {
        let mut defs: Vec<OptionDef> = Vec::new();
        match universe {
            Universe::V4 => {
                defs.extend(from_std(STD_V4, "dhcp4"));
                defs.extend(from_std(VENDOR4491_V4, "vendor-4491"));
                defs.extend(from_std(VENDOR4491_V4, "docsis3-v4"));
            }
            Universe::V6 => {
                defs.extend(from_std(STD_V6, "dhcp6"));
                defs.extend(from_std(VENDOR4491_V6, "vendor-4491"));
                defs.extend(from_std(VENDOR4491_V6, "docsis3-v6"));
            }
        }
        OptionDefs { universe, defs }
    }

    /// True if `space`/`code` or `space`/`name` is a standard definition (which `option-def` may not replace).
    pub fn is_standard(&self, space: &str, code: u16, name: &str) -> bool {
        let std = OptionDefs::standard(self.universe);
        std.defs
            .iter()
            .any(|d| d.space == space && (d.code == code || d.name == name))
    }

    /// Adds or replaces a definition (same space and code, or same space and name).
    pub fn add(&mut self, def: OptionDef) {
        self.defs
            .retain(|d| !(d.space == def.space && (d.code == def.code || d.name == def.name)));
        self.defs.push(def);
    }

    pub fn by_name(&self, space: &str, name: &str) -> Option<&OptionDef> {
        self.defs
            .iter()
            .find(|d| d.space == space && d.name == name)
    }

    pub fn by_code(&self, space: &str, code: u16) -> Option<&OptionDef> {
        self.defs
            .iter()
            .find(|d| d.space == space && d.code == code)
    }

    /// Whether any definition lives in `space` (an option space exists once something is defined in it).
    pub fn space_known(&self, space: &str) -> bool {
        space == self.universe.top_space()
            || self
                .defs
                .iter()
                .any(|d| d.space == space || d.encapsulate == space)
    }
}

/// Splits Kea CSV option data: on commas not escaped by a backslash (`\,` is a literal comma), each value
/// trimmed, empty values dropped (as Kea's tokenizer does).
pub fn split_csv(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = data.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses hex as Kea accepts it for `csv-format: false` and binary fields: optional `0x`, then either
/// contiguous digits (an odd count gets a leading zero) or octets of one or two digits separated by
/// colons or spaces.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let bad =
        || format!("'{s}' is not valid hex (expected digits like 0a0b0c, 0a:0b:0c or 0a 0b 0c)");
    if t.contains([':', ' ']) {
        let sep = if t.contains(':') { ':' } else { ' ' };
        let mut out = Vec::new();
        for part in t.split(sep).filter(|p| !p.is_empty() || sep == ':') {
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            out.push(u8::from_str_radix(part, 16).map_err(|_| bad())?);
        }
        return Ok(out);
    }
    let padded = if t.len() % 2 == 1 {
        format!("0{t}")
    } else {
        t.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| {
            padded
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn parse_int(v: &str, min: i64, max: i64, ty: &str) -> Result<i64, String> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).map_err(|_| format!("'{v}' is not a valid {ty}"))?
    } else {
        v.parse::<i64>()
            .map_err(|_| format!("'{v}' is not a valid {ty}"))?
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range for {ty} ({min}..{max})"));
    }
    Ok(n)
}

/// Encodes a domain name in DNS wire format (RFC 1035 §3.1, no compression).
pub fn encode_fqdn(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let n = name.trim();
    let n = n.strip_suffix('.').unwrap_or(n);
    if n.is_empty() {
        return Err("empty domain name".into());
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "'{name}' is not a valid domain name (empty label or label over 63 bytes)"
            ));
        }
        if label.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "'{name}' is not a valid domain name (contains whitespace)"
            ));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("'{name}' is longer than 255 bytes in wire format"));
    }
    Ok(())
}

fn parse_v6_prefix(v: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, l) = v
        .split_once('/')
        .ok_or_else(|| format!("'{v}' is not an IPv6 prefix (expected 2001:db8::/48)"))?;
    let addr: Ipv6Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not an IPv6 address"))?;
    let len: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("'{l}' is not a prefix length (0..128)"))?;
    Ok((addr, len))
}

/// Encodes one value of type `ty`.
pub fn encode_field(ty: DataType, v: &str, u: Universe, out: &mut Vec<u8>) -> Result<(), String> {
    match ty {
        DataType::Empty | DataType::Record => return Err("internal: not a field type".into()),
        DataType::Binary => out.extend(parse_hex(v)?),
        DataType::Boolean => out.push(match v {
            "true" | "1" => 1,
            "false" | "0" => 0,
            _ => return Err(format!("'{v}' is not a boolean (true or false)")),
        }),
        DataType::Int8 => {
            out.push(parse_int(v, i8::MIN as i64, i8::MAX as i64, "int8")? as i8 as u8)
        }
        DataType::Int16 => out.extend(
            (parse_int(v, i16::MIN as i64, i16::MAX as i64, "int16")? as i16).to_be_bytes(),
        ),
        DataType::Int32 => out.extend(
            (parse_int(v, i32::MIN as i64, i32::MAX as i64, "int32")? as i32).to_be_bytes(),
        ),
        DataType::Uint8 => out.push(parse_int(v, 0, u8::MAX as i64, "uint8")? as u8),
        DataType::Uint16 => {
            out.extend((parse_int(v, 0, u16::MAX as i64, "uint16")? as u16).to_be_bytes())
        }
        DataType::Uint32 => {
            out.extend((parse_int(v, 0, u32::MAX as i64, "uint32")? as u32).to_be_bytes())
        }
        DataType::Ipv4Address => {
            let a: Ipv4Addr = v
                .parse()
                .map_err(|_| format!("'{v}' is not an IPv4 address"))?;
            out.extend(a.octets());
        }
        DataType::Ipv6Address => {
            let a: Ipv6Addr = v
                .parse()
                .map_err(|_| format!("'{v}' is not an IPv6 address"))?;
            out.extend(a.octets());
        }
        DataType::Ipv6Prefix => {
            let (addr, len) = parse_v6_prefix(v)?;
            out.push(len);
            let bytes = (len as usize).div_ceil(8);
            let mut o = addr.octets();
            if len % 8 != 0 {
                o[bytes - 1] &= 0xffu8 << (8 - len % 8);
            }
            out.extend_from_slice(&o[..bytes]);
        }
        DataType::Psid => {
            let (p, l) = v
                .split_once('/')
                .ok_or_else(|| format!("'{v}' is not a PSID (expected psid/psid-len, e.g. 3/4)"))?;
            let psid = parse_int(p.trim(), 0, u16::MAX as i64, "PSID")? as u32;
            let len = parse_int(l.trim(), 0, 16, "PSID length")? as u32;
            if len == 0 && psid != 0 || len > 0 && len < 16 && psid >= (1 << len) {
                return Err(format!("PSID {psid} does not fit in {len} bits"));
            }
            out.push(len as u8);
            let shifted = if len == 0 {
                0
            } else {
                (psid << (16 - len)) as u16
            };
            out.extend(shifted.to_be_bytes());
        }
        DataType::String => {
            if v.is_empty() {
                return Err("empty string (Kea does not allow an empty string option)".into());
            }
            out.extend_from_slice(v.as_bytes());
        }
        DataType::Fqdn => encode_fqdn(v, out)?,
        DataType::Tuple => match u {
            Universe::V4 => {
                let l =
                    u8::try_from(v.len()).map_err(|_| "tuple longer than 255 bytes".to_string())?;
                out.push(l);
                out.extend_from_slice(v.as_bytes());
            }
            Universe::V6 => {
                let l = u16::try_from(v.len())
                    .map_err(|_| "tuple longer than 65535 bytes".to_string())?;
                out.extend(l.to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        },
        DataType::ClasslessRoutes => {
            // "10.229.0.128/25 - 10.229.0.1": destination descriptor then router (RFC 3442 §3).
            let (dst, gw) = v
                .split_once('-')
                .ok_or_else(|| format!("'{v}' is not a route (expected 10.0.0.0/8 - 192.0.2.1)"))?;
            let (net, len) = dst
                .trim()
                .split_once('/')
                .ok_or_else(|| format!("'{dst}' is not a prefix"))?;
            let net: Ipv4Addr = net
                .trim()
                .parse()
                .map_err(|_| format!("'{net}' is not an IPv4 address"))?;
            let len: u8 = len
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= 32)
                .ok_or_else(|| format!("'{len}' is not a prefix length"))?;
            let gw: Ipv4Addr = gw
                .trim()
                .parse()
                .map_err(|_| format!("'{gw}' is not an IPv4 address"))?;
            out.push(len);
            out.extend_from_slice(&net.octets()[..(len as usize).div_ceil(8)]);
            out.extend(gw.octets());
        }
    }
    Ok(())
}

/// What [`encode_data`] produced besides the bytes: a note the user should see (e.g. extra values
/// that Kea silently drops).
#[derive(Debug, Default)]
pub struct EncodeNotes {
    pub dropped_values: usize,
}

/// Encodes Kea `data` for option `def`. `csv` is Kea's `csv-format` (default true).
pub fn encode_data(
    def: &OptionDef,
    data: &str,
    csv: bool,
    u: Universe,
) -> Result<(Vec<u8>, EncodeNotes), String> {
    let mut out = Vec::new();
    let mut notes = EncodeNotes::default();
    if !csv {
        return Ok((parse_hex(data)?, notes));
    }
    if def.ty == DataType::Empty {
        if !data.trim().is_empty() {
            return Err(format!(
                "option '{}' has type empty and takes no data",
                def.name
            ));
        }
        return Ok((out, notes));
    }
    if def.ty == DataType::Binary {
        // Kea reads a binary option's CSV data as one hex value, spaces and colons allowed.
        return Ok((parse_hex(data)?, notes));
    }
    let values = split_csv(data);
    if def.ty == DataType::Record {
        if values.len() < def.record.len() {
            return Err(format!(
                "option '{}' is a record of {} fields ({}) but data has {} value(s)",
                def.name,
                def.record.len(),
                def.record
                    .iter()
                    .map(|t| format!("{t:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
                values.len()
            ));
        }
        for (i, v) in values.iter().enumerate() {
            let ty = if i < def.record.len() {
                def.record[i]
            } else if def.array {
                // In a record array the last field repeats.
                def.record[def.record.len() - 1]
            } else {
                notes.dropped_values = values.len() - def.record.len();
                break;
            };
            encode_field(ty, v, u, &mut out)
                .map_err(|e| format!("value {} ('{v}'): {e}", i + 1))?;
        }
        return Ok((out, notes));
    }
    if values.is_empty() {
        if def.ty == DataType::String {
            return Err(format!(
                "option '{}' needs data (a non-empty string)",
                def.name
            ));
        }
        return Err(format!(
            "option '{}' needs data of type {:?}",
            def.name, def.ty
        ));
    }
    let take = if def.array || def.ty == DataType::ClasslessRoutes {
        values.len()
    } else {
        1
    };
    notes.dropped_values = values.len() - take;
    for (i, v) in values.iter().take(take).enumerate() {
        encode_field(def.ty, v, u, &mut out).map_err(|e| {
            if take > 1 {
                format!("value {} ('{v}'): {e}", i + 1)
            } else {
                e
            }
        })?;
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(u: Universe, name: &str, data: &str) -> Vec<u8> {
        let defs = OptionDefs::standard(u);
        let d = defs.by_name(u.top_space(), name).unwrap();
        encode_data(d, data, true, u).unwrap().0
    }

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("0a0b0c").unwrap(), vec![10, 11, 12]);
        assert_eq!(parse_hex("0xabc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(parse_hex("1:2:ff").unwrap(), vec![1, 2, 255]);
        assert_eq!(parse_hex("1A BB").unwrap(), vec![0x1a, 0xbb]);
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn csv_escapes_and_trim() {
        assert_eq!(split_csv(" a\\,b , c,,"), vec!["a,b", "c"]);
    }

    #[test]
    fn typed_fields() {
        assert_eq!(
            enc(Universe::V4, "routers", "192.0.2.1, 192.0.2.2"),
            vec![192, 0, 2, 1, 192, 0, 2, 2]
        );
        assert_eq!(
            enc(Universe::V4, "time-offset", "-25200"),
            (-25200i32).to_be_bytes().to_vec()
        );
        assert_eq!(enc(Universe::V4, "default-ip-ttl", "0xf0"), vec![0xf0]);
        assert_eq!(
            enc(Universe::V4, "domain-search", "a.b, c"),
            vec![1, b'a', 1, b'b', 0, 1, b'c', 0]
        );
        assert_eq!(enc(Universe::V4, "ip-forwarding", "true"), vec![1]);
        assert_eq!(
            enc(Universe::V4, "v4-portparams", "2, 3/4"),
            vec![2, 4, 0x30, 0x00]
        );
        assert_eq!(
            enc(Universe::V6, "bootfile-param", "ab, c"),
            vec![0, 2, b'a', b'b', 0, 1, b'c']
        );
        assert_eq!(
            enc(Universe::V6, "pd-exclude", "2001:db8:1:ff00::/60"),
            vec![60, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0xff, 0]
        );
        assert_eq!(
            enc(
                Universe::V4,
                "classless-static-route",
                "10.0.0.0/8 - 192.0.2.1, 0.0.0.0/0 - 192.0.2.2"
            ),
            vec![8, 10, 192, 0, 2, 1, 0, 192, 0, 2, 2]
        );
    }

    #[test]
    fn range_errors() {
        let defs = OptionDefs::standard(Universe::V4);
        let d = defs.by_name("dhcp4", "default-ip-ttl").unwrap();
        assert!(encode_data(d, "256", true, Universe::V4)
            .unwrap_err()
            .contains("out of range"));
        let d = defs.by_name("dhcp4", "routers").unwrap();
        assert!(encode_data(d, "192.0.2.300", true, Universe::V4)
            .unwrap_err()
            .contains("not an IPv4"));
    }
}
