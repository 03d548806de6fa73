//! Kea's client-class expression language, the subset in [`model::Expr`]: a parser from the `test` string
//! (type-checked: the top level must be a boolean) and an evaluator over a packet view ([`ClassifyInput`]).
//!
//! Values follow Kea's evaluator: every non-boolean value is a byte string; integer literals and integer
//! packet fields (`pkt4.msgtype`, `pkt4.hlen`, `pkt4.htype`, `pkt4.transid`, `pkt6.*`) are 4-byte big-endian
//! strings, addresses are 4 bytes, `pkt4.mac` is the first `hlen` bytes of chaddr, `pkt.iface` the
//! interface name. So `pkt4.msgtype == 1` compares 0x00000001 with 0x00000001, exactly as in Kea.

use std::borrow::Cow;

use crate::model::{self, Expr, PktField, SubLen};
use crate::options::{OptionDefs, Universe};

/// What the evaluator needs from a packet. Implemented by the dataplane over its parsed packet view.
pub trait ClassifyInput {
    /// Payload of option `code` (DHCPv4 or DHCPv6 by packet family), if present.
    fn option(&self, code: u16) -> Option<&[u8]>;
    /// Payload of sub-option `sub` of the relay agent information option (82).
    fn relay4_suboption(&self, sub: u8) -> Option<&[u8]>;
    /// The value of a fixed packet field as Kea renders it: integer fields as 4-byte big-endian,
    /// addresses as 4 bytes, `Mac` as the `hlen` first bytes of chaddr, `Iface` as the name.
    fn pkt_field(&self, f: model::PktField) -> Vec<u8>;
}

/// Evaluates a boolean expression. `member` answers `member('class')`. A non-boolean expression
/// (which the parser never produces at the top level) evaluates to false.
pub fn eval_bool(e: &Expr, input: &dyn ClassifyInput, member: &dyn Fn(&str) -> bool) -> bool {
    match e {
        Expr::True => true,
        Expr::False => false,
        Expr::OptionExists(c) => input.option(*c).is_some(),
        Expr::Relay4Exists(s) => input.relay4_suboption(*s).is_some(),
        Expr::Equal(a, b) => eval_str(a, input, member) == eval_str(b, input, member),
        Expr::Not(a) => !eval_bool(a, input, member),
        Expr::And(a, b) => eval_bool(a, input, member) && eval_bool(b, input, member),
        Expr::Or(a, b) => eval_bool(a, input, member) || eval_bool(b, input, member),
        Expr::Member(name) => member(name),
        _ => false,
    }
}

/// Evaluates a string-valued expression.
pub fn eval_str<'a>(
    e: &'a Expr,
    input: &'a dyn ClassifyInput,
    member: &dyn Fn(&str) -> bool,
) -> Cow<'a, [u8]> {
    match e {
        Expr::Literal(v) => Cow::Borrowed(v),
        Expr::OptionHex(c) | Expr::OptionText(c) => Cow::Borrowed(input.option(*c).unwrap_or(&[])),
        Expr::Relay4Hex(s) => Cow::Borrowed(input.relay4_suboption(*s).unwrap_or(&[])),
        Expr::PktField(f) => Cow::Owned(input.pkt_field(*f)),
        Expr::Substring(s, start, len) => {
            let v = eval_str(s, input, member);
            match substring_range(v.len(), *start, *len) {
                Some((a, b)) => match v {
                    Cow::Borrowed(b0) => Cow::Borrowed(&b0[a..b]),
                    Cow::Owned(o) => Cow::Owned(o[a..b].to_vec()),
                },
                None => Cow::Borrowed(&[]),
            }
        }
        Expr::Concat(a, b) => {
            let mut v = eval_str(a, input, member).into_owned();
            v.extend_from_slice(&eval_str(b, input, member));
            Cow::Owned(v)
        }
        Expr::HexString(s, sep) => {
            let v = eval_str(s, input, member);
            let mut out = Vec::with_capacity(v.len() * (2 + sep.len()));
            for (i, b) in v.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(sep);
                }
                const H: &[u8; 16] = b"0123456789abcdef";
                out.push(H[(b >> 4) as usize]);
                out.push(H[(b & 15) as usize]);
            }
            Cow::Owned(out)
        }
        Expr::Ifelse(c, a, b) => {
            if eval_bool(c, input, member) {
                eval_str(a, input, member)
            } else {
                eval_str(b, input, member)
            }
        }
        // Booleans used as strings render as Kea does.
        _ => {
            if eval_bool(e, input, member) {
                Cow::Borrowed(b"true")
            } else {
                Cow::Borrowed(b"false")
            }
        }
    }
}

/// Kea's `substring(s, start, length)` semantics: a negative start counts from the end, a negative
/// length takes bytes before `start`, out-of-range starts give the empty string.
fn substring_range(len: usize, start: i64, sl: SubLen) -> Option<(usize, usize)> {
    let n = len as i64;
    if n == 0 || start < -n || start >= n {
        return None;
    }
    let mut s = if start < 0 { n + start } else { start };
    let mut l = match sl {
        SubLen::All => n,
        SubLen::Len(l) => l,
    };
    if l < 0 {
        l = -l;
        if l <= s {
            s -= l;
        } else {
            l = s;
            s = 0;
        }
    }
    let e = (s + l).min(n);
    Some((s as usize, e as usize))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Hex(Vec<u8>),
    Int(i64),
    Ident(String),
    Punct(&'static str),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'\'' {
            let end = s[i + 1..]
                .find('\'')
                .ok_or_else(|| format!("unterminated string starting at offset {i}"))?;
            out.push((start, Tok::Str(s[i + 1..i + 1 + end].to_string())));
            i += end + 2;
            continue;
        }
        if c == b'0' && i + 1 < b.len() && (b[i + 1] == b'x' || b[i + 1] == b'X') {
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            let bytes = crate::options::parse_hex(&s[start..i])
                .map_err(|e| format!("offset {start}: {e}"))?;
            out.push((start, Tok::Hex(bytes)));
            continue;
        }
        if c.is_ascii_digit() || (c == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit()) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n: i64 = s[start..i]
                .parse()
                .map_err(|_| format!("offset {start}: integer '{}' too large", &s[start..i]))?;
            out.push((start, Tok::Int(n)));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            out.push((start, Tok::Ident(s[start..i].to_string())));
            continue;
        }
        let p = match c {
            b'(' => "(",
            b')' => ")",
            b'[' => "[",
            b']' => "]",
            b',' => ",",
            b'.' => ".",
            b'=' if b.get(i + 1) == Some(&b'=') => {
                i += 1;
                "=="
            }
            _ => {
                return Err(format!(
                    "unexpected character '{}' at offset {i}",
                    c as char
                ))
            }
        };
        i += 1;
        out.push((start, Tok::Punct(p)));
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bool,
    Str,
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    defs: &'a OptionDefs,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn at(&self) -> String {
        match self.toks.get(self.pos) {
            Some((o, t)) => format!("at offset {o} ({})", show(t)),
            None => "at the end of the expression".into(),
        }
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }
    fn is_ident(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == w)
    }
    fn expect(&mut self, p: &'static str) -> Result<(), String> {
        if self.peek() == Some(&Tok::Punct(p)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{p}' {}", self.at()))
        }
    }
    fn want(&mut self, e: (Expr, Kind), k: Kind, what: &str) -> Result<Expr, String> {
        if e.1 != k {
            return Err(format!(
                "{what} must be {} but got {}",
                if k == Kind::Bool {
                    "a boolean (a comparison, exists, member, not/and/or)"
                } else {
                    "a string"
                },
                if e.1 == Kind::Bool {
                    "a boolean"
                } else {
                    "a string"
                }
            ));
        }
        Ok(e.0)
    }

    fn or(&mut self) -> Result<(Expr, Kind), String> {
        let mut l = self.and()?;
        while self.is_ident("or") {
            self.pos += 1;
            let r = self.and()?;
            let a = self.want(l, Kind::Bool, "the left side of 'or'")?;
            let b = self.want(r, Kind::Bool, "the right side of 'or'")?;
            l = (Expr::Or(Box::new(a), Box::new(b)), Kind::Bool);
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<(Expr, Kind), String> {
        let mut l = self.not()?;
        while self.is_ident("and") {
            self.pos += 1;
            let r = self.not()?;
            let a = self.want(l, Kind::Bool, "the left side of 'and'")?;
            let b = self.want(r, Kind::Bool, "the right side of 'and'")?;
            l = (Expr::And(Box::new(a), Box::new(b)), Kind::Bool);
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<(Expr, Kind), String> {
        if self.is_ident("not") {
            self.pos += 1;
            let e = self.not()?;
            let e = self.want(e, Kind::Bool, "the operand of 'not'")?;
            return Ok((Expr::Not(Box::new(e)), Kind::Bool));
        }
        let l = self.primary()?;
        if self.peek() == Some(&Tok::Punct("==")) {
            self.pos += 1;
            let r = self.primary()?;
            let a = self.want(l, Kind::Str, "the left side of '=='")?;
            let b = self.want(r, Kind::Str, "the right side of '=='")?;
            return Ok((Expr::Equal(Box::new(a), Box::new(b)), Kind::Bool));
        }
        Ok(l)
    }

    fn int(&mut self) -> Result<i64, String> {
        match self.next() {
            Some(Tok::Int(n)) => Ok(n),
            _ => {
                self.pos -= 1;
                Err(format!("expected an integer {}", self.at()))
            }
        }
    }

    fn str_lit(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(format!("expected a quoted string {}", self.at()))
            }
        }
    }

    fn bracket_code(&mut self, what: &str, max: i64) -> Result<i64, String> {
        self.expect("[")?;
        let code = match self.next() {
            Some(Tok::Int(n)) => n,
            Some(Tok::Ident(name)) if what == "option" => {
                let space = self.defs.universe.top_space();
                match self.defs.by_name(space, &name) {
                    Some(d) => d.code as i64,
                    None => return Err(format!("unknown option name '{name}' in {space} space")),
                }
            }
            _ => {
                self.pos -= 1;
                return Err(format!("expected an option code {}", self.at()));
            }
        };
        if code < 0 || code > max {
            return Err(format!("{what} code {code} is out of range (0..{max})"));
        }
        self.expect("]")?;
        self.expect(".")?;
        Ok(code)
    }

    fn primary(&mut self) -> Result<(Expr, Kind), String> {
        let at = self.at();
        let t = self
            .next()
            .ok_or_else(|| "unexpected end of the expression".to_string())?;
        let s = Kind::Str;
        Ok(match t {
            Tok::Punct("(") => {
                let e = self.or()?;
                self.expect(")")?;
                e
            }
            Tok::Str(v) => (Expr::Literal(v.into_bytes()), s),
            Tok::Hex(v) => (Expr::Literal(v), s),
            Tok::Int(n) => {
                let v = u32::try_from(n).map_err(|_| format!("integer {n} {at} is not a uint32 (Kea integers are 0..4294967295)"))?;
                (Expr::Literal(v.to_be_bytes().to_vec()), s)
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => (Expr::True, Kind::Bool),
                "false" => (Expr::False, Kind::Bool),
                "option" => {
                    let max = if self.defs.universe == Universe::V4 { 255 } else { 65535 };
                    let code = self.bracket_code("option", max)? as u16;
                    match self.next() {
                        Some(Tok::Ident(f)) if f == "hex" => (Expr::OptionHex(code), s),
                        Some(Tok::Ident(f)) if f == "text" => (Expr::OptionText(code), s),
                        Some(Tok::Ident(f)) if f == "exists" => (Expr::OptionExists(code), Kind::Bool),
                        _ => return Err(format!("expected hex, text or exists after option[{code}].")),
                    }
                }
                "relay4" => {
                    let code = self.bracket_code("relay4", 255)? as u8;
                    match self.next() {
                        Some(Tok::Ident(f)) if f == "hex" || f == "text" => (Expr::Relay4Hex(code), s),
                        Some(Tok::Ident(f)) if f == "exists" => (Expr::Relay4Exists(code), Kind::Bool),
                        _ => return Err(format!("expected hex, text or exists after relay4[{code}].")),
                    }
                }
                "pkt4" | "pkt" | "pkt6" => {
                    self.expect(".")?;
                    let f = match self.next() {
                        Some(Tok::Ident(f)) => f,
                        _ => return Err(format!("expected a field name after {w}.")),
                    };
                    let field = match (w.as_str(), f.as_str()) {
                        ("pkt4", "mac") => PktField::Mac,
                        ("pkt4", "hlen") => PktField::Hlen,
                        ("pkt4", "htype") => PktField::Htype,
                        ("pkt4", "ciaddr") => PktField::Ciaddr,
                        ("pkt4", "giaddr") => PktField::Giaddr,
                        ("pkt4", "yiaddr") => PktField::Yiaddr,
                        ("pkt4", "siaddr") => PktField::Siaddr,
                        ("pkt4", "msgtype") => PktField::MsgType4,
                        ("pkt4", "transid") => PktField::TransId4,
                        ("pkt", "iface") => PktField::Iface,
                        ("pkt6", "msgtype") => PktField::MsgType6,
                        ("pkt6", "transid") => PktField::TransId6,
                        _ => return Err(format!("'{w}.{f}' is not supported by xdhcp")),
                    };
                    (Expr::PktField(field), s)
                }
                "substring" => {
                    self.expect("(")?;
                    let e = self.or()?;
                    let e = self.want(e, Kind::Str, "the first argument of substring")?;
                    self.expect(",")?;
                    let start = self.int()?;
                    self.expect(",")?;
                    let len = match self.peek() {
                        Some(Tok::Str(a) | Tok::Ident(a)) if a == "all" => {
                            self.pos += 1;
                            SubLen::All
                        }
                        _ => SubLen::Len(self.int()?),
                    };
                    self.expect(")")?;
                    (Expr::Substring(Box::new(e), start, len), s)
                }
                "concat" => {
                    self.expect("(")?;
                    let a = self.or()?;
                    let a = self.want(a, Kind::Str, "the first argument of concat")?;
                    self.expect(",")?;
                    let b = self.or()?;
                    let b = self.want(b, Kind::Str, "the second argument of concat")?;
                    self.expect(")")?;
                    (Expr::Concat(Box::new(a), Box::new(b)), s)
                }
                "hexstring" => {
                    self.expect("(")?;
                    let a = self.or()?;
                    let a = self.want(a, Kind::Str, "the first argument of hexstring")?;
                    self.expect(",")?;
                    let sep = self.str_lit()?;
                    self.expect(")")?;
                    (Expr::HexString(Box::new(a), sep.into_bytes()), s)
                }
                "ifelse" => {
                    self.expect("(")?;
                    let c = self.or()?;
                    let c = self.want(c, Kind::Bool, "the condition of ifelse")?;
                    self.expect(",")?;
                    let a = self.or()?;
                    let a = self.want(a, Kind::Str, "the second argument of ifelse")?;
                    self.expect(",")?;
                    let b = self.or()?;
                    let b = self.want(b, Kind::Str, "the third argument of ifelse")?;
                    self.expect(")")?;
                    (Expr::Ifelse(Box::new(c), Box::new(a), Box::new(b)), s)
                }
                "member" => {
                    self.expect("(")?;
                    let name = self.str_lit()?;
                    self.expect(")")?;
                    (Expr::Member(name), Kind::Bool)
                }
                other => {
                    return Err(format!(
                        "'{other}' {at} is not supported by xdhcp (supported: option[..].hex/.text/.exists, relay4[..].hex/.exists, pkt4.*, pkt.iface, pkt6.msgtype/transid, substring, concat, hexstring, ifelse, member, ==, not, and, or)"
                    ))
                }
            },
            other => return Err(format!("unexpected {} {at}", show(&other))),
        })
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("'{s}'"),
        Tok::Hex(h) => format!(
            "0x{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        Tok::Int(n) => n.to_string(),
        Tok::Ident(i) => format!("'{i}'"),
        Tok::Punct(p) => format!("'{p}'"),
    }
}

/// Parses a Kea `test` expression. The result is always boolean-valued.
pub fn parse(text: &str, defs: &OptionDefs) -> Result<Expr, String> {
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0, defs };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!(
            "unexpected {} after a complete expression",
            p.at().trim_start_matches("at ")
        ));
    }
    p.want(e, Kind::Bool, "a class test")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pkt {
        opts: Vec<(u16, Vec<u8>)>,
        relay: Vec<(u8, Vec<u8>)>,
        mac: Vec<u8>,
        msgtype: u32,
    }

    impl ClassifyInput for Pkt {
        fn option(&self, code: u16) -> Option<&[u8]> {
            self.opts
                .iter()
                .find(|o| o.0 == code)
                .map(|o| o.1.as_slice())
        }
        fn relay4_suboption(&self, sub: u8) -> Option<&[u8]> {
            self.relay
                .iter()
                .find(|o| o.0 == sub)
                .map(|o| o.1.as_slice())
        }
        fn pkt_field(&self, f: PktField) -> Vec<u8> {
            match f {
                PktField::Mac => self.mac.clone(),
                PktField::MsgType4 => self.msgtype.to_be_bytes().to_vec(),
                PktField::Iface => b"eth1".to_vec(),
                _ => vec![0, 0, 0, 0],
            }
        }
    }

    fn pkt() -> Pkt {
        Pkt {
            opts: vec![(60, b"Aastra6731i".to_vec()), (61, vec![1, 2, 3])],
            relay: vec![(1, b"port7".to_vec())],
            mac: vec![1, 2, 3, 4, 5, 6],
            msgtype: 1,
        }
    }

    fn check(text: &str, want: bool) {
        let defs = OptionDefs::standard(Universe::V4);
        let e = parse(text, &defs).unwrap_or_else(|err| panic!("{text}: {err}"));
        let m = |c: &str| c == "HA_server1";
        assert_eq!(eval_bool(&e, &pkt(), &m), want, "{text} parsed as {e:?}");
    }

    #[test]
    fn kea_examples_evaluate() {
        check("pkt4.mac == 0x010203040506", true);
        check("pkt4.mac == 0x010203040507", false);
        check("pkt4.msgtype == 1", true);
        check("pkt4.transid == 0", true);
        check("substring(option[60].hex,0,6) == 'Aastra'", true);
        check(
            "substring(option[vendor-class-identifier].text, -5, all) == '6731i'",
            true,
        );
        check("option[61].exists and not option[82].exists", true);
        check("relay4[1].hex == 'port7' or false", true);
        check("member('HA_server1') and not member('other')", true);
        check("concat('a', substring('xyz', 1, 1)) == 'ay'", true);
        check("hexstring(pkt4.mac, ':') == '01:02:03:04:05:06'", true);
        check("ifelse(option[61].exists, 'x', 'y') == 'x'", true);
        check("substring('abcdef', 3, -2) == 'bc'", true);
        check("(true or false) and pkt.iface == 'eth1'", true);
    }

    #[test]
    fn errors_are_precise() {
        let defs = OptionDefs::standard(Universe::V4);
        assert!(parse("pkt4.mac", &defs)
            .unwrap_err()
            .contains("must be a boolean"));
        assert!(parse("vendor[4491].exists", &defs)
            .unwrap_err()
            .contains("not supported"));
        assert!(parse("option[300].hex == 'a'", &defs)
            .unwrap_err()
            .contains("out of range"));
        assert!(parse("option[61].exists and", &defs)
            .unwrap_err()
            .contains("end of the expression"));
        assert!(parse("'a' == 'b' 'c'", &defs)
            .unwrap_err()
            .contains("after a complete expression"));
        assert!(parse("option[no-such].hex == 'a'", &defs)
            .unwrap_err()
            .contains("unknown option name"));
    }
}
