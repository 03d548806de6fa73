//! HA TLS parameters (Kea 2.2's rules): `trust-anchor`, `cert-file`, `key-file` at the relationship
//! and the peer level, all three or none after inheritance, `https://` only with TLS, the files
//! read at load time with the JSON path of the key in every error.

mod common;
use std::path::Path;

use common::*;

fn with_ha(ha: &str) -> String {
    v4(
        &format!(
            r#""hooks-libraries": [{{"library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_ha.so", "parameters": {{"high-availability": {ha}}}}}],"#
        ),
        r#"{"id": 1, "subnet": "192.0.2.0/24"}"#,
    )
}

const BASE: &str = "Dhcp4.hooks-libraries[0].parameters.high-availability[0]";

/// PEM files with the right markers (validation parses PEM, it does no cryptography; the control
/// crate's tests use real certificates).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let cert = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.path().join("ca.pem"), cert).unwrap();
        std::fs::write(dir.path().join("a.pem"), cert).unwrap();
        std::fs::write(dir.path().join("a.key"), key).unwrap();
        std::fs::write(dir.path().join("b.pem"), cert).unwrap();
        std::fs::write(dir.path().join("b.key"), key).unwrap();
        std::fs::create_dir(dir.path().join("cadir")).unwrap();
        std::fs::write(dir.path().join("cadir/one.crt"), cert).unwrap();
        std::fs::write(dir.path().join("cadir/README"), "not a certificate").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        Files { dir }
    }
    fn p(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

fn rel(extra: &str, peer_a: &str, peer_b: &str) -> String {
    with_ha(&format!(
        r#"[{{"this-server-name": "a", "mode": "hot-standby", {extra}
             "peers": [{{"name": "a", "role": "primary", {peer_a}}},
                       {{"name": "b", "role": "standby", {peer_b}}}]}}]"#
    ))
}

#[test]
fn relationship_level_tls_applies_to_every_peer() {
    let f = Files::new();
    let d = ok(&rel(
        &format!(
            r#""trust-anchor": "{}", "cert-file": "{}", "key-file": "{}", "require-client-certs": false,"#,
            f.p("ca.pem"),
            f.p("a.pem"),
            f.p("a.key")
        ),
        r#""url": "https://10.0.0.1:8000/""#,
        // TLS is decided by the three keys, not by the scheme: Kea uses TLS for http:// too.
        r#""url": "http://10.0.0.2:8000/""#,
    ))
    .config
    .dhcp4
    .unwrap();
    let r = &d.high_availability[0];
    assert!(!r.require_client_certs);
    for p in &r.peers {
        assert!(p.tls, "{} must use TLS", p.name);
        assert_eq!(p.trust_anchor.as_deref(), Some(Path::new(&f.p("ca.pem"))));
        assert_eq!(p.cert_file.as_deref(), Some(Path::new(&f.p("a.pem"))));
        assert_eq!(p.key_file.as_deref(), Some(Path::new(&f.p("a.key"))));
    }
}

#[test]
fn peer_values_complete_and_override_the_relationship() {
    let f = Files::new();
    let d = ok(&rel(
        &format!(r#""trust-anchor": "{}","#, f.p("cadir")),
        &format!(
            r#""url": "https://10.0.0.1:8000/", "cert-file": "{}", "key-file": "{}""#,
            f.p("a.pem"),
            f.p("a.key")
        ),
        &format!(
            r#""url": "https://10.0.0.2:8000/", "cert-file": "{}", "key-file": "{}", "trust-anchor": "{}""#,
            f.p("b.pem"),
            f.p("b.key"),
            f.p("ca.pem")
        ),
    ))
    .config
    .dhcp4
    .unwrap();
    let r = &d.high_availability[0];
    assert!(
        r.require_client_certs,
        "require-client-certs defaults to true"
    );
    let (a, b) = (&r.peers[0], &r.peers[1]);
    assert_eq!(a.trust_anchor.as_deref(), Some(Path::new(&f.p("cadir"))));
    assert_eq!(a.cert_file.as_deref(), Some(Path::new(&f.p("a.pem"))));
    assert_eq!(b.trust_anchor.as_deref(), Some(Path::new(&f.p("ca.pem"))));
    assert_eq!(b.key_file.as_deref(), Some(Path::new(&f.p("b.key"))));
}

#[test]
fn no_tls_keys_means_plain_http() {
    let d = ok(&rel(
        "",
        r#""url": "http://10.0.0.1:8000/""#,
        r#""url": "http://10.0.0.2:8000/", "trust-anchor": """#,
    ))
    .config
    .dhcp4
    .unwrap();
    assert!(d.high_availability[0].peers.iter().all(|p| !p.tls));
}

#[test]
fn incomplete_tls_and_https_without_tls_are_refused() {
    let f = Files::new();
    let e = errors(&rel(
        "",
        &format!(
            r#""url": "https://10.0.0.1:8000/", "trust-anchor": "{}""#,
            f.p("ca.pem")
        ),
        r#""url": "https://10.0.0.2:8000/""#,
    ));
    has(
        &e,
        &format!("{BASE}.peers[0]"),
        "trust-anchor, cert-file and key-file must be given all three or none: cert-file and key-file missing",
    );
    has(
        &e,
        &format!("{BASE}.peers[1].url"),
        "https:// needs TLS, which is off for this peer",
    );
    // Only the relationship's key-file: both peers lack the other two.
    let e = errors(&rel(
        &format!(r#""key-file": "{}","#, f.p("a.key")),
        r#""url": "http://10.0.0.1:8000/""#,
        r#""url": "http://10.0.0.2:8000/""#,
    ));
    for i in 0..2 {
        has(
            &e,
            &format!("{BASE}.peers[{i}]"),
            "trust-anchor and cert-file missing",
        );
    }
}

#[test]
fn unreadable_or_wrong_files_are_refused_at_the_key_that_names_them() {
    let f = Files::new();
    let e = errors(&rel(
        &format!(
            r#""trust-anchor": "{}", "cert-file": "{}", "key-file": "{}","#,
            f.p("missing-ca.pem"),
            f.p("a.key"),
            f.p("a.pem")
        ),
        r#""url": "https://10.0.0.1:8000/""#,
        &format!(
            r#""url": "https://10.0.0.2:8000/", "trust-anchor": "{}""#,
            f.p("empty")
        ),
    ));
    has(
        &e,
        &format!("{BASE}.trust-anchor"),
        "missing-ca.pem': cannot read the file",
    );
    has(
        &e,
        &format!("{BASE}.cert-file"),
        "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
    );
    has(&e, &format!("{BASE}.key-file"), "no PEM private key");
    has(
        &e,
        &format!("{BASE}.peers[1].trust-anchor"),
        "the directory holds no PEM certificate",
    );
    // A relationship-level file is reported once, not once per peer that inherits it.
    assert_eq!(
        e.iter()
            .filter(|d| d.json_path == format!("{BASE}.cert-file"))
            .count(),
        1
    );
}
