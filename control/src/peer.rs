//! HTTP client to an HA peer: `POST /` with the command's JSON, basic auth when the peer's config
//! has credentials, Kea's timeouts (10 s, `sync-timeout` for lease pages). Uses `ureq` (a small,
//! well-kept blocking client): every peer request runs on its own short-lived thread, so blocking
//! I/O keeps the code plain and nothing here needs an async runtime. TLS (when the peer has
//! trust-anchor, cert-file and key-file) is set up by [`crate::tls`].

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use xdhcp_config::model::HaPeer;

use crate::ha::commands::{parse_answer, Answer};

/// Kea's `TIMEOUT_DEFAULT_HTTP_CLIENT_REQUEST`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct PeerClient {
    pub name: String,
    pub url: String,
    auth: Option<String>,
    /// The TLS context for this peer (None: plain HTTP); Err when its files could not be loaded
    /// (`tls::check` refuses that at start, so it only shows if a file changed since).
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
    /// A persistent connection (HTTP/1.1 keep-alive) for a client that sends many requests in a
    /// row (the replicator): a TCP handshake per lease update halved replication throughput.
    keep_alive: Option<ureq::Agent>,
}

impl PeerClient {
    pub fn new(p: &HaPeer) -> PeerClient {
        let auth = match (&p.basic_auth_user, &p.basic_auth_password) {
            (Some(u), pw) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{u}:{}", pw.as_deref().unwrap_or("")))
            )),
            _ => None,
        };
        let tls = crate::tls::client_config(p).map_err(|e| e.to_string());
        if let Err(e) = &tls {
            tracing::error!("{e}");
        }
        PeerClient {
            name: p.name.clone(),
            url: crate::tls::client_url(p),
            auth,
            tls,
            keep_alive: None,
        }
    }

    /// The same peer over one persistent connection, every request with `timeout`.
    pub fn with_keep_alive(mut self, timeout: Duration) -> PeerClient {
        self.keep_alive = Some(
            self.agent_builder()
                .timeout(timeout)
                .max_idle_connections_per_host(1)
                .build(),
        );
        self
    }

    fn agent_builder(&self) -> ureq::AgentBuilder {
        match &self.tls {
            Ok(Some(cfg)) => ureq::AgentBuilder::new().tls_config(cfg.clone()),
            _ => ureq::AgentBuilder::new(),
        }
    }

    /// Sends one command; Err is a communication failure (no usable answer).
    pub fn post(&self, body: &Value, timeout: Duration) -> Result<Answer, String> {
        if let Err(e) = &self.tls {
            return Err(e.clone());
        }
        if let Some(agent) = &self.keep_alive {
            let t0 = std::time::Instant::now();
            match self.post_with(agent, body) {
                Ok(a) => return Ok(a),
                // The peer may have closed the idle connection (Kea's listener does after its
                // idle timeout) and ureq does not resend a POST: retry once on a new connection
                // when the failure was immediate (a time-out is not retried: it would double).
                Err(e) if t0.elapsed() < Duration::from_secs(1) => {
                    tracing::debug!(peer = %self.name, "persistent connection: {e}; retrying on a new one")
                }
                Err(e) => return Err(e),
            }
        }
        let agent = self.agent_builder().timeout(timeout).build();
        self.post_with(&agent, body)
    }

    fn post_with(&self, agent: &ureq::Agent, body: &Value) -> Result<Answer, String> {
        let mut req = agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        let resp = match req.send_string(&body.to_string()) {
            Ok(r) => r,
            // Kea ignores the HTTP status and reads the body; do the same.
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{}: {e}", self.name)),
        };
        let mut buf = Vec::new();
        use std::io::Read;
        resp.into_reader()
            .take(RESPONSE_MAX_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{}: reading the answer: {e}", self.name))?;
        parse_answer(&buf).map_err(|e| format!("{}: {e}", self.name))
    }
}

/// The expected `Authorization` header value for credentials, for the server side.
pub fn basic_auth_value(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
