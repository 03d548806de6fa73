//! Reading the PEM files of the HA TLS parameters (`trust-anchor`, `cert-file`, `key-file`).
//! Kea 2.2 loads them when it reads its configuration and refuses the configuration when one is
//! unreadable; validation does the same with these functions, and the control process uses them
//! again to build its TLS contexts, so a file that passed `check-config` is read the same way.
//! Pure parsing: no cryptography here (whether a key matches its certificate is checked by the
//! control process when it builds the context).

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Reads every certificate of a PEM file. A `trust-anchor` may also be a directory (OpenSSL's
/// CA path, which Kea accepts): then every regular file in it that holds PEM certificates is
/// read, and files that hold none are skipped. Err is a sentence for a diagnostic.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    if path.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|e| format!("cannot read the directory: {e}"))?;
        let mut names: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        // Deterministic order, so errors and chains do not depend on the directory's layout.
        names.sort();
        let mut out = Vec::new();
        for f in names {
            if let Ok(mut certs) = certs_of_file(&f) {
                out.append(&mut certs);
            }
        }
        if out.is_empty() {
            return Err("the directory holds no PEM certificate".into());
        }
        return Ok(out);
    }
    certs_of_file(path)
}

fn certs_of_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(describe)?;
    let certs = iter.collect::<Result<Vec<_>, _>>().map_err(describe)?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC, as OpenSSL writes them).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            "no PEM private key (-----BEGIN PRIVATE KEY----- or RSA/EC PRIVATE KEY) in the file"
                .to_string()
        }
        e => describe(e),
    })
}

fn describe(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read the file: {e}"),
        pem::Error::NoItemsFound => "no PEM item in the file".into(),
        e => format!("not a valid PEM file: {e}"),
    }
}
