//! TLS for the HA peer transport and the control API listener, with Kea 2.2's semantics (rustls
//! with ring; nothing links OpenSSL).
//!
//! - **Client** (requests to a peer): used when the peer's effective `trust-anchor`, `cert-file`
//!   and `key-file` are set (the scheme of its URL does not decide; Kea uses TLS for `http://`
//!   too). The peer's certificate must chain to the trust anchor; like Kea 2.2 its name or IP
//!   address is not checked, so the trust anchor should be a CA dedicated to the HA peers. The
//!   cert-file and key-file are always presented as the client certificate.
//! - **Server** (this server's peer URL, which also serves the operator's commands): TLS when this
//!   server's own peer entry has the three files. The control-agent style API listener
//!   (`Control-agent`: `trust-anchor`, `cert-file`, `key-file`, `cert-required`) works the same. With `require-client-certs` (default true)
//!   every client must present a certificate that chains to the trust anchor, else the handshake
//!   fails; with false no client certificate is asked for (Kea: `verify_none`).
//!
//! The HTTP listener is tiny_http, whose own TLS cannot verify client certificates. So TLS ends
//! here: an acceptor thread takes the TCP connections, and one bounded thread per connection runs
//! a rustls [`ServerConnection`] and pumps the plaintext, byte for byte, to a tiny_http server on
//! a UNIX socket that only the owner may open (next to the admin socket, which already grants
//! every command). HTTP parsing stays tiny_http's.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection};
use xdhcp_config::agent::ControlAgent;
use xdhcp_config::model::{HaPeer, HaRelationship};

/// At most this many TLS connections at once on the listener; more are closed at accept (peers
/// keep one or two each, operators a few; this only bites under a connection flood).
pub const MAX_CONNECTIONS: usize = 64;
/// A client must finish the handshake within this time (Kea's request timeout).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection is closed after this (longer than the longest heartbeat-delay, 65.5 s, so
/// a peer's persistent connection survives between heartbeats).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Plaintext buffered per direction before the pump stops reading that side (backpressure).
const BUFFER: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{who}: {key} '{}': {msg}", file.display())]
    File {
        who: String,
        key: &'static str,
        file: PathBuf,
        msg: String,
    },
    #[error("{who}: TLS {what}: {source}")]
    Rustls {
        who: String,
        what: &'static str,
        source: rustls::Error,
    },
    #[error("{who}: trust-anchor: {msg}")]
    Verifier { who: String, msg: String },
    #[error("cannot listen on {addr}: {msg}")]
    Listen { addr: String, msg: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Files {
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// The three files of one TLS context and whose they are (for messages).
struct Paths<'a> {
    who: String,
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
}

/// A peer's three files; None when the peer does not use TLS.
fn peer_paths(p: &HaPeer) -> Option<Paths<'_>> {
    match (&p.trust_anchor, &p.cert_file, &p.key_file) {
        (Some(ca), Some(cert), Some(key)) if p.tls => Some(Paths {
            who: format!("peer '{}'", p.name),
            ca,
            cert,
            key,
        }),
        _ => None,
    }
}

fn load(p: &Paths) -> Result<Files, TlsError> {
    let ferr = |key: &'static str, file: &Path, msg: String| TlsError::File {
        who: p.who.clone(),
        key,
        file: file.to_path_buf(),
        msg,
    };
    let mut roots = RootCertStore::empty();
    let cas = xdhcp_config::tls::load_certs(p.ca).map_err(|m| ferr("trust-anchor", p.ca, m))?;
    let (added, ignored) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(ferr(
            "trust-anchor",
            p.ca,
            format!("none of its {ignored} certificate(s) is usable as a trust anchor"),
        ));
    }
    let chain = xdhcp_config::tls::load_certs(p.cert).map_err(|m| ferr("cert-file", p.cert, m))?;
    let key = xdhcp_config::tls::load_key(p.key).map_err(|m| ferr("key-file", p.key, m))?;
    Ok(Files { roots, chain, key })
}

/// The client TLS context for requests to `p`; None when TLS is off for that peer.
pub fn client_config(p: &HaPeer) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let Some(paths) = peer_paths(p) else {
        return Ok(None);
    };
    let f = load(&paths)?;
    let provider = provider();
    let rerr = |what, source| TlsError::Rustls {
        who: paths.who.clone(),
        what,
        source,
    };
    let verifier = Arc::new(ChainOnly {
        roots: Arc::new(f.roots),
        algs: provider.signature_verification_algorithms,
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| rerr("protocol versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(f.chain, f.key)
        .map_err(|e| rerr("cert-file/key-file", e))?;
    // No session resumption: Kea 2.2's listener (OpenSSL, client certificates required, no
    // session id context) answers a resumption attempt with an internal_error alert, so every
    // connection after the first would fail. A full handshake per new connection costs little:
    // heartbeats are one a second at most and replication keeps its connection open.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Some(Arc::new(cfg)))
}

/// The server TLS context of this server's listener (`me` is this server's own peer entry);
/// None when TLS is off for it.
pub fn server_config(
    me: &HaPeer,
    require_client_certs: bool,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    match peer_paths(me) {
        Some(paths) => build_server(&paths, require_client_certs).map(Some),
        None => Ok(None),
    }
}

/// The server TLS context of the control-agent style API listener; None without TLS.
pub fn agent_server_config(a: &ControlAgent) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    match &a.tls {
        Some(t) => build_server(
            &Paths {
                who: format!("{}: Control-agent", a.source.display()),
                ca: &t.trust_anchor,
                cert: &t.cert_file,
                key: &t.key_file,
            },
            a.cert_required,
        )
        .map(Some),
        None => Ok(None),
    }
}

fn build_server(paths: &Paths, require_client_certs: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let f = load(paths)?;
    let provider = provider();
    let rerr = |what, source| TlsError::Rustls {
        who: paths.who.clone(),
        what,
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| rerr("protocol versions", e))?;
    let builder = if require_client_certs {
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(f.roots), provider)
            .build()
            .map_err(|e| TlsError::Verifier {
                who: paths.who.clone(),
                msg: e.to_string(),
            })?;
        builder.with_client_cert_verifier(v)
    } else {
        builder.with_no_client_auth()
    };
    let cfg = builder
        .with_single_cert(f.chain, f.key)
        .map_err(|e| rerr("cert-file/key-file", e))?;
    Ok(Arc::new(cfg))
}

/// Builds every TLS context of the configuration once, so a bad file or a key that does not
/// match its certificate stops the start instead of failing each request later.
pub fn check(rels: &[HaRelationship]) -> Result<(), TlsError> {
    for r in rels {
        for p in &r.peers {
            if p.name == r.this_server_name {
                server_config(p, r.require_client_certs)?;
            } else {
                client_config(p)?;
            }
        }
    }
    Ok(())
}

/// The URL to give the HTTP client: `https://` whenever TLS is on for the peer, whatever scheme
/// the configuration wrote (Kea sends TLS to an `http://` URL when the peer has TLS files).
pub fn client_url(p: &HaPeer) -> String {
    match p.url.strip_prefix("http://") {
        Some(rest) if p.tls => format!("https://{rest}"),
        _ => p.url.clone(),
    }
}

/// Kea 2.2's check of a peer's server certificate: it must chain to the trust anchor and be
/// valid now; the name is not compared with the URL's host (Kea's OpenSSL context sets no host
/// check), so certificates that work between Kea servers work with xdhcp.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The HTTP listener on `addr` for relationship `r`'s own peer entry: plain tiny_http without
/// TLS, else tiny_http behind the TLS terminator, whose internal UNIX socket (mode 0600, replaced
/// if it exists) goes next to the admin socket, which already grants every command to whoever
/// may open it (`<admin socket>-https`; without one, next to the dataplane socket).
pub fn listen(
    addr: &str,
    r: &HaRelationship,
    admin_socket: Option<&PathBuf>,
    dataplane_socket: &Path,
) -> Result<tiny_http::Server, TlsError> {
    let cfg = server_config(r.this_peer(), r.require_client_certs)?;
    let inner = inner_socket(admin_socket, dataplane_socket, "-https");
    if cfg.is_some() {
        tracing::info!(
            %addr,
            require_client_certs = r.require_client_certs,
            "HA listener: TLS"
        );
    }
    listen_with(addr, cfg, &inner)
}

/// The control-agent style API listener (`http-host`:`http-port`, its own TLS); its internal
/// socket is `<admin socket>-api-https`.
pub fn listen_agent(
    a: &ControlAgent,
    admin_socket: Option<&PathBuf>,
    dataplane_socket: &Path,
) -> Result<tiny_http::Server, TlsError> {
    let addr = std::net::SocketAddr::new(a.http_host, a.http_port).to_string();
    let cfg = agent_server_config(a)?;
    let inner = inner_socket(admin_socket, dataplane_socket, "-api-https");
    tracing::info!(
        %addr,
        tls = cfg.is_some(),
        cert_required = a.cert_required,
        users = a.clients.len(),
        "control API listener (Control-agent)"
    );
    listen_with(&addr, cfg, &inner)
}

fn inner_socket(admin: Option<&PathBuf>, dataplane: &Path, suffix: &str) -> PathBuf {
    let mut s = admin
        .map(|p| p.as_os_str())
        .unwrap_or(dataplane.as_os_str())
        .to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn listen_with(
    addr: &str,
    cfg: Option<Arc<ServerConfig>>,
    inner_socket: &Path,
) -> Result<tiny_http::Server, TlsError> {
    let lerr = |msg: String| TlsError::Listen {
        addr: addr.to_string(),
        msg,
    };
    let Some(cfg) = cfg else {
        return tiny_http::Server::http(addr).map_err(|e| lerr(e.to_string()));
    };
    let tcp = TcpListener::bind(addr).map_err(|e| lerr(e.to_string()))?;
    let _ = std::fs::remove_file(inner_socket);
    let unix = UnixListener::bind(inner_socket)
        .map_err(|e| lerr(format!("internal socket {}: {e}", inner_socket.display())))?;
    std::fs::set_permissions(inner_socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| lerr(format!("internal socket {}: {e}", inner_socket.display())))?;
    let server = tiny_http::Server::from_listener(unix, None).map_err(|e| lerr(e.to_string()))?;
    let inner = inner_socket.to_path_buf();
    std::thread::Builder::new()
        .name("tls-accept".into())
        .spawn(move || accept_loop(tcp, cfg, inner))
        .map_err(|e| lerr(e.to_string()))?;
    Ok(server)
}

fn accept_loop(tcp: TcpListener, cfg: Arc<ServerConfig>, inner: PathBuf) {
    let active = Arc::new(AtomicUsize::new(0));
    for s in tcp.incoming() {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("TLS listener accept: {e}");
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(
                "TLS listener: {MAX_CONNECTIONS} connections open; closing a new one from {:?}",
                s.peer_addr().ok()
            );
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (cfg, inner, act) = (cfg.clone(), inner.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("tls-conn".into())
            .spawn(move || {
                let from = s.peer_addr().ok();
                match pump(s, cfg, &inner) {
                    // A refused handshake (no or unknown client certificate, not TLS at all).
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        tracing::warn!(?from, "TLS connection refused: {e}")
                    }
                    Err(e) => tracing::debug!(?from, "TLS connection closed: {e}"),
                    Ok(()) => {}
                }
                act.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            // The closure (and its stream) was dropped without running: undo the count.
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("TLS listener: cannot start a connection thread");
        }
    }
}

/// Runs one TLS connection: decrypts what the client sends and writes it to a new connection to
/// the internal HTTP server, encrypts what that server answers. Returns when either side closes,
/// on a TLS error (the alert is sent first), or on a time-out.
fn pump(mut tcp: TcpStream, cfg: Arc<ServerConfig>, inner: &Path) -> io::Result<()> {
    let mut conn = ServerConnection::new(cfg).map_err(io::Error::other)?;
    conn.set_buffer_limit(Some(BUFFER));
    let mut app = UnixStream::connect(inner)?;
    tcp.set_nonblocking(true)?;
    app.set_nonblocking(true)?;
    let _ = tcp.set_nodelay(true);
    let start = Instant::now();
    let mut last = Instant::now();
    let mut to_app: Vec<u8> = Vec::with_capacity(BUFFER);
    let mut from_app: Vec<u8> = Vec::with_capacity(BUFFER);
    let mut buf = vec![0u8; 16 << 10];
    let (mut tls_eof, mut app_eof, mut app_shut, mut closing) = (false, false, false, false);
    loop {
        // Flush what rustls has for the client (handshake, records, alerts).
        while conn.wants_write() {
            match conn.write_tls(&mut tcp) {
                Ok(0) => return Ok(()),
                Ok(_) => last = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if closing && !conn.wants_write() {
            return Ok(());
        }
        // Plaintext from the client to the HTTP server.
        while !to_app.is_empty() && !app_eof {
            match app.write(&to_app) {
                Ok(0) => app_eof = true,
                Ok(n) => {
                    to_app.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => app_eof = true,
            }
        }
        if tls_eof && to_app.is_empty() && !app_shut {
            // The client is done sending: let the HTTP server see the end of the request stream.
            let _ = app.shutdown(std::net::Shutdown::Write);
            app_shut = true;
        }
        // The HTTP server's answers into TLS records.
        if !from_app.is_empty() && !conn.is_handshaking() {
            let n = conn.writer().write(&from_app)?;
            from_app.drain(..n);
            if n > 0 {
                continue;
            }
        }
        if app_eof && from_app.is_empty() && !closing {
            // Answered and closed (e.g. `Connection: close`): end the TLS session cleanly.
            conn.send_close_notify();
            closing = true;
            continue;
        }
        if tls_eof && app_eof {
            return Ok(());
        }
        // Wait for the next thing to do.
        let want_tls_read = !tls_eof && to_app.len() < BUFFER;
        let want_app_read =
            !app_eof && from_app.is_empty() && !conn.is_handshaking() && !conn.wants_write();
        let mut fds = [
            libc::pollfd {
                fd: tcp.as_raw_fd(),
                events: (if want_tls_read { libc::POLLIN } else { 0 })
                    | (if conn.wants_write() { libc::POLLOUT } else { 0 }),
                revents: 0,
            },
            libc::pollfd {
                fd: if app_eof { -1 } else { app.as_raw_fd() },
                events: (if want_app_read { libc::POLLIN } else { 0 })
                    | (if !to_app.is_empty() { libc::POLLOUT } else { 0 }),
                revents: 0,
            },
        ];
        let limit = if conn.is_handshaking() {
            (start + HANDSHAKE_TIMEOUT).saturating_duration_since(Instant::now())
        } else {
            (last + IDLE_TIMEOUT).saturating_duration_since(Instant::now())
        };
        if limit.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if conn.is_handshaking() {
                    "handshake time-out"
                } else {
                    "idle time-out"
                },
            ));
        }
        let ms = limit.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of two pollfd that lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let hup = libc::POLLHUP | libc::POLLERR;
        if fds[0].revents & (libc::POLLIN | hup) != 0 && !tls_eof {
            last = Instant::now();
            match conn.read_tls(&mut tcp) {
                Ok(0) => tls_eof = true,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // Send the alert (bad certificate, unknown CA...) and close so that
                        // the client reads it: in TLS 1.3 it may already be sending its
                        // request, and closing with that unread would reset the connection
                        // and hide the alert behind a "broken pipe".
                        let _ = conn.write_tls(&mut tcp);
                        lingering_close(&mut tcp);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    loop {
                        match conn.reader().read(&mut buf) {
                            Ok(0) => {
                                tls_eof = true;
                                break;
                            }
                            Ok(n) => to_app.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                tls_eof = true;
                                break;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => tls_eof = true,
            }
        } else if fds[0].revents & hup != 0 {
            // Closed both ways while we had nothing to read: nobody to write to either.
            return Ok(());
        }
        if fds[1].revents & (libc::POLLIN | hup) != 0 && want_app_read {
            match app.read(&mut buf) {
                Ok(0) => app_eof = true,
                Ok(n) => from_app.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => app_eof = true,
            }
        } else if fds[1].revents & hup != 0 && to_app.is_empty() {
            app_eof = true;
        }
    }
}

/// Half-closes and discards what the client still sends, for at most a second, then closes.
fn lingering_close(tcp: &mut TcpStream) {
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    while Instant::now() < until {
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
