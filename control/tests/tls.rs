//! TLS between HA peers and on the control API listener, over real sockets on loopback with
//! certificates made at test time: the handshake works with the right CA, a server certificate
//! from another CA is refused, a client without a certificate (or with one from another CA) is
//! refused when `require-client-certs` is on and let in when it is off, keep-alive and large
//! bodies pass through the TLS terminator, and a key that does not match its certificate stops
//! the start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use xdhcp_config::model::HaRelationship;
use xdhcp_control::peer::PeerClient;
use xdhcp_control::tls;

/// A CA and certificates it signed, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A peer certificate (server and client use, as an HA peer's is) for 127.0.0.1.
    fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hot-standby relationship seen from `this` ("a" or "b"), both peers on loopback; `tls` is
/// (trust-anchor, cert-file, key-file) for each peer entry.
fn relationship(
    this: &str,
    ports: (u16, u16),
    tls_a: (&Path, &Path, &Path),
    tls_b: (&Path, &Path, &Path),
    require_client_certs: bool,
) -> HaRelationship {
    let peer = |name: &str, role: &str, port: u16, t: (&Path, &Path, &Path)| {
        json!({"name": name, "role": role, "url": format!("http://127.0.0.1:{port}/"),
               "trust-anchor": t.0, "cert-file": t.1, "key-file": t.2})
    };
    let cfg = json!({"Dhcp4": {
        "interfaces-config": {"interfaces": ["xd0"]},
        "subnet4": [{"id": 1, "subnet": "192.0.2.0/24"}],
        "hooks-libraries": [{"library": "libdhcp_ha.so", "parameters": {"high-availability": [{
            "this-server-name": this, "mode": "hot-standby",
            "require-client-certs": require_client_certs,
            "peers": [peer("a", "primary", ports.0, tls_a), peer("b", "standby", ports.1, tls_b)]
        }]}}]
    }});
    let loaded = xdhcp_config::load_str(&cfg.to_string(), Path::new("test.json"))
        .unwrap_or_else(|e| panic!("test config refused:\n{e}"));
    loaded.config.dhcp4.unwrap().high_availability[0].clone()
}

/// Starts the listener of `r` and answers every request with a Kea-style list echoing the size
/// of the body and a padding of `pad` bytes (to push large answers through the terminator).
fn serve(r: &HaRelationship, dir: &Path, pad: usize) {
    let me = r.this_peer();
    let addr = format!("{}:{}", me.host, me.port);
    let admin = dir.join(format!("admin-{}", me.port));
    let server = Arc::new(tls::listen(&addr, r, Some(&admin), &dir.join("dp")).expect("listen"));
    std::thread::spawn(move || loop {
        let Ok(mut req) = server.recv() else { return };
        let mut body = Vec::new();
        let _ = req.as_reader().read_to_end(&mut body);
        let ans = json!([{"result": 0, "text": "ok",
                          "arguments": {"got": body.len(), "pad": "x".repeat(pad)}}]);
        let _ = req.respond(
            tiny_http::Response::from_string(ans.to_string()).with_chunked_threshold(usize::MAX),
        );
    });
}

fn heartbeat() -> Value {
    json!({"command": "ha-heartbeat", "service": ["dhcp4"]})
}

const T: Duration = Duration::from_secs(5);

#[test]
fn handshake_with_the_right_ca_and_certificates_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path(), "good");
    let (ca, (ac, ak), (bc, bk)) = (pki.ca_file(), pki.leaf("a"), pki.leaf("b"));
    let ports = (free_port(), free_port());
    let a = relationship("a", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    serve(&a, d.path(), 0);
    // b's side: its client context for peer "a" presents a's entry's cert (Kea's rule: the
    // partner's entry holds the files used towards it).
    let b = relationship("b", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    let to_a = PeerClient::new(&b.peers[0]);
    assert!(to_a.url.starts_with("https://"), "{}", to_a.url);
    let ans = to_a.post(&heartbeat(), T).expect("TLS request");
    assert_eq!(ans.result, 0);
    assert_eq!(
        ans.arguments.unwrap()["got"].as_u64().unwrap() as usize,
        heartbeat().to_string().len()
    );
}

#[test]
fn keep_alive_and_large_answers_pass_through_the_terminator() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path(), "good");
    let (ca, (ac, ak), (bc, bk)) = (pki.ca_file(), pki.leaf("a"), pki.leaf("b"));
    let ports = (free_port(), free_port());
    let a = relationship("a", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    // 3 MB answers: a lease page is this big; it crosses many TLS records and buffer limits.
    serve(&a, d.path(), 3 << 20);
    let b = relationship("b", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    let to_a = PeerClient::new(&b.peers[0]).with_keep_alive(T);
    let big_request =
        json!({"command": "lease4-update", "arguments": {"pad": "y".repeat(1 << 20)}});
    for i in 0..5 {
        let body = if i % 2 == 0 {
            heartbeat()
        } else {
            big_request.clone()
        };
        let ans = to_a
            .post(&body, T)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let args = ans.arguments.unwrap();
        assert_eq!(
            args["got"].as_u64().unwrap() as usize,
            body.to_string().len()
        );
        assert_eq!(args["pad"].as_str().unwrap().len(), 3 << 20);
    }
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let good = Pki::new(d.path(), "good");
    let evil = Pki::new(d.path(), "evil");
    let (ca, (ac, ak), (bc, bk)) = (good.ca_file(), good.leaf("a"), good.leaf("b"));
    let (eac, eak) = evil.leaf("a");
    let ports = (free_port(), free_port());
    // The server at a's address has a certificate from the other CA (and trusts it).
    let a = relationship(
        "a",
        ports,
        (&evil.ca_file(), &eac, &eak),
        (&ca, &bc, &bk),
        false,
    );
    serve(&a, d.path(), 0);
    let b = relationship("b", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    let err = PeerClient::new(&b.peers[0])
        .post(&heartbeat(), T)
        .expect_err("a server certificate from an unknown CA must be refused");
    eprintln!("server certificate from another CA: {err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn client_certificates_are_required_and_checked_when_configured() {
    let d = tempfile::tempdir().unwrap();
    let good = Pki::new(d.path(), "good");
    let evil = Pki::new(d.path(), "evil");
    let (ca, (ac, ak), (bc, bk)) = (good.ca_file(), good.leaf("a"), good.leaf("b"));
    let (eac, eak) = evil.leaf("intruder");
    let ports = (free_port(), free_port());
    let a = relationship("a", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    serve(&a, d.path(), 0);
    let url = format!("https://127.0.0.1:{}/", ports.0);

    // No client certificate at all.
    let err = post_without_client_cert(&url, &ca).expect_err("no client cert must be refused");
    eprintln!("no client certificate: {err}");
    assert!(err.contains("CertificateRequired"), "{err}");

    // A client certificate from another CA (the client trusts the real CA, so only the server's
    // check of the client certificate can fail).
    let intruder = relationship("b", ports, (&ca, &eac, &eak), (&ca, &bc, &bk), true);
    let err = PeerClient::new(&intruder.peers[0])
        .post(&heartbeat(), T)
        .expect_err("a client certificate from an unknown CA must be refused");
    eprintln!("client certificate from another CA: {err}");
    assert!(err.contains("UnknownCA"), "{err}");

    // The right client certificate still gets in (the listener survived the failures).
    let b = relationship("b", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), true);
    assert_eq!(
        PeerClient::new(&b.peers[0])
            .post(&heartbeat(), T)
            .unwrap()
            .result,
        0
    );
}

#[test]
fn without_require_client_certs_a_client_needs_no_certificate() {
    let d = tempfile::tempdir().unwrap();
    let good = Pki::new(d.path(), "good");
    let (ca, (ac, ak), (bc, bk)) = (good.ca_file(), good.leaf("a"), good.leaf("b"));
    let ports = (free_port(), free_port());
    let a = relationship("a", ports, (&ca, &ac, &ak), (&ca, &bc, &bk), false);
    serve(&a, d.path(), 0);
    let url = format!("https://127.0.0.1:{}/", ports.0);
    let body = post_without_client_cert(&url, &ca).expect("no client cert needed");
    assert!(body.contains("\"result\":0"), "{body}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_stops_the_start() {
    let d = tempfile::tempdir().unwrap();
    let good = Pki::new(d.path(), "good");
    let (ca, (ac, _ak), (bc, bk)) = (good.ca_file(), good.leaf("a"), good.leaf("b"));
    let r = relationship("a", (1, 2), (&ca, &ac, &bk), (&ca, &bc, &bk), true);
    let e = tls::check(std::slice::from_ref(&r)).expect_err("mismatched key");
    let msg = e.to_string();
    assert!(
        msg.contains("peer 'a'") && msg.contains("cert-file/key-file"),
        "{msg}"
    );
    // The same files for b's own entry are fine.
    let r = relationship("b", (1, 2), (&ca, &ac, &bk), (&ca, &bc, &bk), true);
    assert!(
        tls::check(std::slice::from_ref(&r)).is_err(),
        "b's client context for a still has a's cert with b's key"
    );
    let r = relationship("b", (1, 2), (&ca, &bc, &bk), (&ca, &bc, &bk), true);
    tls::check(std::slice::from_ref(&r)).expect("matching files");
}

/// A request with a client that trusts `ca` but has no client certificate.
fn post_without_client_cert(url: &str, ca: &Path) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(xdhcp_config::tls::load_certs(ca).unwrap());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let agent = ureq::AgentBuilder::new()
        .tls_config(Arc::new(cfg))
        .timeout(T)
        .build();
    agent
        .post(url)
        .send_string(&heartbeat().to_string())
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())
}

#[test]
fn the_control_agent_listener_has_its_own_tls_and_cert_required() {
    let d = tempfile::tempdir().unwrap();
    let good = Pki::new(d.path(), "good");
    let (ca, (sc, sk), (cc, ck)) = (good.ca_file(), good.leaf("agent"), good.leaf("op"));
    for cert_required in [true, false] {
        let port = free_port();
        let a = xdhcp_config::agent::ControlAgent {
            source: "agent.json".into(),
            http_host: "127.0.0.1".parse().unwrap(),
            http_port: port,
            tls: Some(xdhcp_config::agent::AgentTls {
                trust_anchor: ca.clone(),
                cert_file: sc.clone(),
                key_file: sk.clone(),
            }),
            cert_required,
            realm: "kea-control-agent".into(),
            clients: Vec::new(),
        };
        let server = Arc::new(
            tls::listen_agent(&a, Some(&d.path().join(format!("adm{port}"))), d.path())
                .expect("listen"),
        );
        std::thread::spawn(move || loop {
            let Ok(req) = server.recv() else { return };
            let _ = req.respond(tiny_http::Response::from_string(r#"[{"result":0}]"#));
        });
        let url = format!("https://127.0.0.1:{port}/");
        // An operator client: trusts the CA, presents its certificate.
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(xdhcp_config::tls::load_certs(&ca).unwrap());
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            xdhcp_config::tls::load_certs(&cc).unwrap(),
            xdhcp_config::tls::load_key(&ck).unwrap(),
        )
        .unwrap();
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(cfg))
            .timeout(T)
            .build();
        let body = agent
            .post(&url)
            .send_string("{\"command\":\"status-get\"}")
            .expect("with a client certificate")
            .into_string()
            .unwrap();
        assert_eq!(body, r#"[{"result":0}]"#);
        let without = post_without_client_cert(&url, &ca);
        if cert_required {
            let e = without.expect_err("cert-required: no client certificate must be refused");
            assert!(e.contains("CertificateRequired"), "{e}");
        } else {
            without.expect("cert-required false: no client certificate needed");
        }
    }
}
