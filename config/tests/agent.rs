//! Kea's Control Agent configuration for xdhcp-control's API listener: defaults, TLS all three or
//! none with the files read at load time, cert-required, basic-auth clients (inline and from files),
//! and the keys xdhcp does not use.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use xdhcp_config::agent::{load_agent_str, ControlAgent};
use xdhcp_config::Diagnostic;

fn ok(text: &str) -> (ControlAgent, Vec<Diagnostic>) {
    match load_agent_str(text, Path::new("agent.json")) {
        Ok(l) => (l.agent, l.warnings),
        Err(e) => panic!("expected the agent config to load, got:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load_agent_str(text, Path::new("agent.json")) {
        Ok(l) => panic!("expected errors, it loaded: {:?}", l.agent),
        Err(e) => e.errors,
    }
}

fn has(d: &[Diagnostic], path: &str, needle: &str) {
    assert!(
        d.iter()
            .any(|d| d.json_path == path && d.message.contains(needle)),
        "no diagnostic at {path} containing {needle:?}; got:\n{}",
        d.iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n";

#[test]
fn defaults_are_keas() {
    let (a, w) = ok(r#"{"Control-agent": {}}"#);
    assert_eq!(a.http_host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(a.http_port, 8000);
    assert!(a.tls.is_none());
    assert!(a.cert_required);
    assert_eq!(a.realm, "kea-control-agent");
    assert!(a.clients.is_empty());
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_full_kea_agent_file_with_tls_and_users() {
    let d = tempfile::tempdir().unwrap();
    let p = |f: &str| d.path().join(f).display().to_string();
    std::fs::write(p("ca.pem"), CERT).unwrap();
    std::fs::write(p("agent.pem"), CERT).unwrap();
    std::fs::write(p("agent.key"), KEY).unwrap();
    std::fs::write(p("pw"), "s3cret\nsecond line ignored\n").unwrap();
    let text = format!(
        r#"// kea-ctrl-agent.conf
        {{"Control-agent": {{
            "http-host": "10.0.0.1", "http-port": 8443,
            "trust-anchor": "{}", "cert-file": "{}", "key-file": "{}", "cert-required": false,
            "authentication": {{"type": "basic", "realm": "xdhcp", "directory": "{}",
                "clients": [{{"user": "admin", "password": "1234"}},
                            {{"user": "ops", "password-file": "pw"}}]}},
            "control-sockets": {{"dhcp4": {{"socket-type": "unix", "socket-name": "/run/kea/kea4-ctrl-socket"}}}},
            "loggers": [{{"name": "kea-ctrl-agent", "severity": "INFO"}}]
        }}}}"#,
        p("ca.pem"),
        p("agent.pem"),
        p("agent.key"),
        d.path().display()
    );
    let (a, w) = ok(&text);
    assert_eq!(a.http_host, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(a.http_port, 8443);
    let t = a.tls.expect("TLS");
    assert_eq!(t.cert_file, Path::new(&p("agent.pem")));
    assert!(!a.cert_required);
    assert_eq!(a.realm, "xdhcp");
    assert_eq!(
        a.clients,
        vec![
            ("admin".to_string(), "1234".to_string()),
            ("ops".to_string(), "s3cret".to_string())
        ]
    );
    has(&w, "Control-agent.control-sockets", "not used");
    has(&w, "Control-agent.loggers", "RUST_LOG");
}

#[test]
fn mistakes_are_refused_with_their_path() {
    let e = errors(
        r#"{"Control-agent": {"http-host": "localhost", "http-port": 0, "trust-anchor": "/nonexistent/ca.pem",
             "authentication": {"type": "digest", "clients": [{"password": "x"}, {"user": "a:b"}]},
             "http-prot": 1}}"#,
    );
    has(
        &e,
        "Control-agent.http-host",
        "'localhost' is not an IP address",
    );
    has(&e, "Control-agent.http-port", "out of range");
    has(
        &e,
        "Control-agent",
        "trust-anchor, cert-file and key-file must be given all three or none: cert-file and key-file missing",
    );
    has(
        &e,
        "Control-agent.authentication.type",
        "'digest' is not supported",
    );
    has(
        &e,
        "Control-agent.authentication.clients[0]",
        "needs user or user-file",
    );
    has(
        &e,
        "Control-agent.authentication.clients[1]",
        "must not be empty nor contain ':'",
    );
    has(
        &e,
        "Control-agent.http-prot",
        "unknown parameter 'http-prot'",
    );

    let e = errors(
        r#"{"Control-agent": {"trust-anchor": "/nonexistent/ca.pem", "cert-file": "/nonexistent/c.pem", "key-file": "/nonexistent/k.pem"}}"#,
    );
    has(&e, "Control-agent.trust-anchor", "cannot read the file");
    has(&e, "Control-agent.key-file", "cannot read the file");

    let e = errors(r#"{"Dhcp4": {}}"#);
    has(&e, "", "no \"Control-agent\" map");
}
