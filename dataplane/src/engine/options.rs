//! Option tables compiled from configuration: for each scope combination the engine needs, the
//! merged options encoded once into wire bytes (code, length, payload, split per RFC 3396), with
//! a 256-entry index. Building a reply then costs one `memcpy` per option sent.

use xdhcp_config::model::OptionSet;

#[derive(Debug, Clone)]
pub struct Opts4 {
    blob: Vec<u8>,
    /// (start, len) into `blob` per option code; len 0 = not configured.
    loc: Box<[(u32, u32); 256]>,
    /// Codes configured with `always-send`.
    pub always: Vec<u8>,
    /// Bit per code: the value came from the global scope, which ranks below client classes.
    from_global: [u64; 4],
}

impl Default for Opts4 {
    fn default() -> Self {
        Opts4 {
            blob: Vec::new(),
            loc: Box::new([(0, 0); 256]),
            always: Vec::new(),
            from_global: [0; 4],
        }
    }
}

impl Opts4 {
    /// Merge the `local` scopes, highest precedence first (pool, subnet, shared network), over the
    /// `global` one: the first scope that configures a code wins. Codes won by `global` are marked,
    /// since client-class options rank between the two (see [`Opts4::is_global`]).
    pub fn merge(local: &[&OptionSet], global: &OptionSet) -> Opts4 {
        let mut chosen: [Option<(&[u8], bool, bool)>; 256] = [None; 256];
        let scopes = local.iter().map(|s| (*s, false)).chain([(global, true)]);
        for (set, is_global) in scopes {
            for o in &set.options {
                if o.code == 0 || o.code > 254 {
                    continue;
                }
                let slot = &mut chosen[usize::from(o.code)];
                if slot.is_none() {
                    *slot = Some((&o.data, o.always_send, is_global));
                }
            }
        }
        let mut t = Opts4::default();
        for (code, c) in chosen.iter().enumerate() {
            let Some((data, always, is_global)) = c else {
                continue;
            };
            if *is_global {
                t.from_global[code / 64] |= 1 << (code % 64);
            }
            let start = t.blob.len();
            let mut chunks = data.chunks(255).peekable();
            if chunks.peek().is_none() {
                t.blob.extend_from_slice(&[code as u8, 0]);
            }
            for ch in chunks {
                t.blob.push(code as u8);
                t.blob.push(ch.len() as u8);
                t.blob.extend_from_slice(ch);
            }
            t.loc[code] = (start as u32, (t.blob.len() - start) as u32);
            if *always {
                t.always.push(code as u8);
            }
        }
        t
    }

    /// The encoded bytes (headers included) of option `code`, if configured.
    pub fn encoded(&self, code: u8) -> Option<&[u8]> {
        let (s, l) = self.loc[usize::from(code)];
        (l != 0).then(|| &self.blob[s as usize..(s + l) as usize])
    }

    /// Whether option `code` came from the global scope (client-class options override it; the
    /// pool, subnet and shared network scopes override client classes).
    pub fn is_global(&self, code: u8) -> bool {
        self.from_global[usize::from(code) / 64] & (1 << (code % 64)) != 0
    }

    /// The payload of a single-instance option (for reading configured values like option 54).
    pub fn payload(&self, code: u8) -> Option<&[u8]> {
        self.encoded(code)
            .filter(|e| e.len() >= 2 && e.len() <= 257)
            .map(|e| &e[2..])
    }

    pub fn is_empty(&self) -> bool {
        self.blob.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_config::model::OptionValue;

    fn set(opts: &[(u16, &[u8], bool)]) -> OptionSet {
        OptionSet {
            options: opts
                .iter()
                .map(|(c, d, a)| OptionValue {
                    code: *c,
                    data: d.to_vec(),
                    always_send: *a,
                })
                .collect(),
        }
    }

    #[test]
    fn higher_scope_wins_and_long_options_split() {
        let pool = set(&[(3, &[10, 0, 0, 1], false)]);
        let global = set(&[(3, &[192, 0, 2, 1], false), (15, &[b'x'; 300], true)]);
        let t = Opts4::merge(&[&pool], &global);
        assert_eq!(t.encoded(3), Some(&[3, 4, 10, 0, 0, 1][..]));
        let dn = t.encoded(15).unwrap();
        assert_eq!(dn.len(), 2 + 255 + 2 + 45);
        assert_eq!((dn[0], dn[1], dn[257], dn[258]), (15, 255, 15, 45));
        assert_eq!(t.always, vec![15]);
        assert_eq!(t.encoded(6), None);
        assert!(!t.is_global(3) && t.is_global(15) && !t.is_global(6));
    }
}
