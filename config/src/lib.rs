//! xdhcp-config: reads Kea 2.2's JSON configuration (`Dhcp4`, `Dhcp6`, the HA hook parameters) and turns it
//! into the validated domain types of [`model`]. It owns comment stripping, the walk over Kea's JSON with
//! precise JSON paths, Kea's defaults and inheritance, the standard option tables and option encoding
//! ([`options`]) and the client-class expression language ([`classify`]). It does not own any runtime
//! behaviour: the dataplane and control processes consume only [`model`].

pub mod agent;
pub mod classify;
mod dhcp;
mod ha;
mod jsonc;
pub mod model;
pub mod options;
pub mod tls;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration that passed validation, with the warnings found on the way (keys ignored because
/// ignoring them is safe, tolerated syntax, ...).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: model::Config,
    pub warnings: Vec<Diagnostic>,
}

/// One finding about a configuration file: where (file and JSON path such as
/// `Dhcp4.subnet4[2].pools[0].pool`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub json_path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A finding about the file as a whole has no JSON path.
        if self.json_path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.json_path,
                self.message
            )
        }
    }
}

/// The configuration was rejected. Holds every error found, not only the first; `Display` lists them
/// one per line under a count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_errors(&self.errors))]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
    /// Warnings found before the configuration was rejected (not part of `Display`), so that a checker
    /// can show everything at once.
    pub warnings: Vec<Diagnostic>,
}

fn render_errors(errors: &[Diagnostic]) -> String {
    let n = errors.len();
    let mut s = format!(
        "configuration rejected ({n} error{})",
        if n == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push_str(&format!("\n  {e}"));
    }
    s
}

/// The error for a configuration file that cannot be read at all.
pub(crate) fn unreadable(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        errors: vec![Diagnostic {
            file: path.to_path_buf(),
            json_path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
        warnings: Vec::new(),
    }
}

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Err(unreadable(path, &e)),
    }
}

/// Validates configuration text; `source` names it in diagnostics and in [`model::Config::source`].
/// Every problem found is reported, not only the first.
pub fn load_str(text: &str, source: &Path) -> Result<Loaded, ConfigError> {
    let (mut ctx, root) = parse_inner(text, source);
    // Duplicate keys are reported, and the walk goes on so every other error shows up too.
    let Some(root) = root else {
        return Err(ConfigError {
            errors: ctx.errors,
            warnings: ctx.warnings,
        });
    };
    let mut config = model::Config {
        source: source.to_path_buf(),
        dhcp4: None,
        dhcp6: None,
    };
    match &root {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match k.as_str() {
                    "Dhcp4" => config.dhcp4 = dhcp::read_dhcp4(&mut ctx, v),
                    "Dhcp6" => config.dhcp6 = dhcp::read_dhcp6(&mut ctx, v),
                    "Control-agent" => ctx.warn(k, "section for another Kea daemon (the control agent): the dataplane ignores it; xdhcp-control reads it for its HTTP control API listener (address, TLS, basic auth)"),
                    "DhcpDdns" | "Netconf" => {
                        ctx.warn(k, format!("section for another Kea daemon ({k}); xdhcp ignores it as kea-dhcp4 does"))
                    }
                    _ => ctx.err(k, format!("unknown top-level object '{k}': a configuration holds \"Dhcp4\" and/or \"Dhcp6\"")),
                }
            }
            if !map.contains_key("Dhcp4") && !map.contains_key("Dhcp6") {
                ctx.err("", "no \"Dhcp4\" or \"Dhcp6\" object: nothing to serve");
            }
        }
        other => ctx.err(
            "",
            format!(
                "the configuration must be a JSON map with a \"Dhcp4\" or \"Dhcp6\" key, found {}",
                walk::type_name(other)
            ),
        ),
    }
    // Report in the order of the file, not in the order the checks ran.
    sort_by_document(&root, &mut ctx.errors);
    sort_by_document(&root, &mut ctx.warnings);
    if ctx.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: ctx.warnings,
        })
    } else {
        Err(ConfigError {
            errors: ctx.errors,
            warnings: ctx.warnings,
        })
    }
}

/// Reads Kea's relaxed JSON (comments, trailing commas) into a plain JSON value, without interpreting it:
/// for `config-get` and tools that need the document itself. Duplicate keys and syntax errors are errors;
/// trailing commas come back as warnings.
pub fn parse_json(
    text: &str,
    source: &Path,
) -> Result<(serde_json::Value, Vec<Diagnostic>), ConfigError> {
    match parse_inner(text, source) {
        (ctx, Some(v)) if ctx.errors.is_empty() => Ok((v, ctx.warnings)),
        (ctx, _) => Err(ConfigError {
            errors: ctx.errors,
            warnings: ctx.warnings,
        }),
    }
}

fn parse_inner(text: &str, source: &Path) -> (walk::Ctx, Option<serde_json::Value>) {
    let mut ctx = walk::Ctx {
        file: source.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let stripped = strip_comments(text);
    let (clean, lex_warnings, lex_errors) = jsonc::relax(&stripped);
    for n in lex_warnings {
        ctx.warn(&n.json_path, n.message);
    }
    for n in lex_errors {
        ctx.err(&n.json_path, n.message);
    }
    match serde_json::from_str::<serde_json::Value>(&clean) {
        Ok(v) => (ctx, Some(v)),
        Err(e) => {
            ctx.err(
                &format!("line {}, column {}", e.line(), e.column()),
                format!(
                    "invalid JSON: {e} (Kea's relaxed syntax allows only comments and trailing commas on top of JSON)"
                ),
            );
            (ctx, None)
        }
    }
}

/// Removes Kea's comments (`//`, `/* */`, `#`) outside JSON strings. Every removed character is replaced
/// by a space (newlines are kept) so line and column numbers stay those of the original text.
pub fn strip_comments(text: &str) -> String {
    jsonc::strip_comments(text)
}

/// Where a JSON path points in the document, as a sortable key: each map key by its position in its map,
/// each list element by its index. Paths that are not in the document (syntax findings) sort first.
fn document_position(root: &serde_json::Value, path: &str) -> Vec<usize> {
    let mut pos = Vec::new();
    let mut cur = Some(root);
    let mut rest = path;
    while !rest.is_empty() {
        let (seg, tail, is_index) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            (&r[..end], r.get(end + 1..).unwrap_or(""), true)
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..], false)
        };
        let idx = match (cur, is_index) {
            (Some(serde_json::Value::Array(a)), true) => {
                seg.parse::<usize>().ok().filter(|i| *i < a.len())
            }
            (Some(serde_json::Value::Object(m)), false) => m.keys().position(|k| k == seg),
            _ => None,
        };
        match idx {
            Some(i) => {
                pos.push(i + 1);
                cur = match cur {
                    Some(serde_json::Value::Array(a)) => a.get(i),
                    Some(serde_json::Value::Object(m)) => m.get(seg),
                    _ => None,
                };
            }
            None => {
                pos.push(usize::MAX);
                cur = None;
            }
        }
        rest = tail;
    }
    pos
}

fn sort_by_document(root: &serde_json::Value, diags: &mut [Diagnostic]) {
    diags.sort_by_cached_key(|d| {
        if d.json_path.starts_with("line ") {
            Vec::new()
        } else {
            document_position(root, &d.json_path)
        }
    });
}
