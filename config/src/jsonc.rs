//! Kea's relaxed JSON: comments (`//`, `/* */`, `#`) outside strings, and trailing commas (Kea 2.2 accepts them
//! with an "Extraneous comma" warning). This pass also finds duplicate keys, which serde_json would silently
//! collapse to the last one while Kea rejects them. Everything is rewritten to plain JSON with the same line
//! and column numbers, so later syntax errors point at the user's text.

/// A finding from the lexical pass: where (line/column and, when known, the JSON path) and what.
#[derive(Debug, Clone)]
pub(crate) struct LexNote {
    pub json_path: String,
    pub message: String,
}

/// Replaces comments by spaces (keeping newlines). An unterminated `/*` runs to the end of the text,
/// as Kea treats it as a syntax error that the JSON parser then reports.
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '#' => skip_line(&mut chars, &mut out, 1),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut out, 1),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str("  ");
                let mut prev = '\0';
                for n in chars.by_ref() {
                    out.push(if n == '\n' { '\n' } else { ' ' });
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn skip_line(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
    already: usize,
) {
    for _ in 0..already {
        out.push(' ');
    }
    while let Some(&n) = chars.peek() {
        if n == '\n' {
            break;
        }
        out.push(' ');
        chars.next();
    }
}

enum Frame {
    Obj {
        key: Option<String>,
        keys: Vec<String>,
        expect_key: bool,
    },
    Arr {
        idx: usize,
    },
}

fn path_of(stack: &[Frame], include_last: bool) -> String {
    let mut p = String::new();
    let n = if include_last {
        stack.len()
    } else {
        stack.len().saturating_sub(1)
    };
    for f in &stack[..n] {
        match f {
            Frame::Obj { key: Some(k), .. } => {
                if !p.is_empty() {
                    p.push('.');
                }
                p.push_str(k);
            }
            Frame::Obj { key: None, .. } => {}
            Frame::Arr { idx } => p.push_str(&format!("[{idx}]")),
        }
    }
    p
}

fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before[i + 1..].chars().count())
        .unwrap_or(before.chars().count())
        + 1;
    (line, col)
}

/// Removes trailing commas (returning a warning for each) and reports duplicate keys (errors).
/// `text` must already be comment-free.
pub(crate) fn relax(text: &str) -> (String, Vec<LexNote>, Vec<LexNote>) {
    let mut bytes = text.as_bytes().to_vec();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut pending_comma: Option<usize> = None;
    let mut i = 0;
    let b = text.as_bytes();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if let Some(ci) = pending_comma.take() {
            if c == b'}' || c == b']' {
                bytes[ci] = b' ';
                let (line, column) = line_col(text, ci);
                warnings.push(LexNote {
                    json_path: path_of(&stack, false),
                    message: format!(
                        "line {line}, column {column}: extraneous comma before '{}'; a piece of configuration may have been commented out or omitted (accepted, as Kea 2.2 does)",
                        c as char
                    ),
                });
            }
        }
        match c {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let end = i.min(b.len());
                // Only keys matter here; values are skipped without allocating.
                if matches!(
                    stack.last(),
                    Some(Frame::Obj {
                        expect_key: true,
                        ..
                    })
                ) {
                    let s = String::from_utf8_lossy(&b[start..end]).into_owned();
                    let dup =
                        matches!(stack.last(), Some(Frame::Obj { keys, .. }) if keys.contains(&s));
                    if dup {
                        let here = path_of(&stack, true);
                        let (line, column) = line_col(text, start - 1);
                        errors.push(LexNote {
                            json_path: if here.is_empty() { s.clone() } else { format!("{here}.{s}") },
                            message: format!(
                                "line {line}, column {column}: duplicate key \"{s}\"; Kea rejects this, remove one of them"
                            ),
                        });
                    }
                    if let Some(Frame::Obj {
                        key,
                        keys,
                        expect_key,
                    }) = stack.last_mut()
                    {
                        *expect_key = false;
                        if !dup {
                            keys.push(s.clone());
                        }
                        *key = Some(s);
                    }
                }
                i += 1;
                continue;
            }
            b'{' => stack.push(Frame::Obj {
                key: None,
                keys: Vec::new(),
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Arr { idx: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                pending_comma = Some(i);
                match stack.last_mut() {
                    Some(Frame::Obj {
                        expect_key, key, ..
                    }) => {
                        *expect_key = true;
                        *key = None;
                    }
                    Some(Frame::Arr { idx }) => *idx += 1,
                    None => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    // Only ASCII commas were replaced by ASCII spaces: still valid UTF-8.
    let out = String::from_utf8(bytes).unwrap_or_else(|_| text.to_string());
    (out, warnings, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_all_three_comment_styles_but_not_inside_strings() {
        let t = "{ # hash\n \"a\": \"x//y#z/*w*/\", // line\n /* block\n more */ \"b\": 1 }";
        let s = strip_comments(t);
        assert_eq!(s.len(), t.len());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "x//y#z/*w*/");
        assert_eq!(v["b"], 1);
        assert_eq!(s.matches('\n').count(), t.matches('\n').count());
    }

    #[test]
    fn trailing_comma_is_removed_with_path_and_line() {
        let t = "{\"Dhcp4\": {\"subnet4\": [ {\"id\": 1,\n}\n]}}";
        let (s, w, e) = relax(t);
        assert!(e.is_empty());
        assert_eq!(w.len(), 1);
        assert!(
            w[0].message.starts_with("line 1, column 33"),
            "{}",
            w[0].message
        );
        assert_eq!(w[0].json_path, "Dhcp4.subnet4[0]");
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let (_, _, e) = relax("{\"Dhcp4\": {\"valid-lifetime\": 1, \"valid-lifetime\": 2}}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].json_path, "Dhcp4.valid-lifetime");
    }
}
