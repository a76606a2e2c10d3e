//! Property tests of the `target` rewrite against a plain implementation of JavaScript's
//! `String.prototype.replace` substitution (ECMA-262 GetSubstitution): a target that compiles
//! rewrites every URL exactly as JavaScript would, a target is refused only where JavaScript would
//! keep a `$` pattern as literal text (a group that does not exist, `` $` ``, `$'`), and the result
//! is bounded by the URL and the target.

use proptest::prelude::*;

use super::*;

/// `url.replace(source, replacement)` as JavaScript computes it, and whether a `$` pattern was
/// kept as text where the router refuses the target (`$0`, a group beyond the last, `` $` ``,
/// `$'`). `None` when `source` does not match.
fn js_replace(url: &str, source: &Regex, replacement: &str) -> Option<(String, bool)> {
    let captures = source.captures(url)?;
    let whole = captures.get(0)?;
    let groups = captures.len() - 1;
    let named = source.capture_names().flatten().next().is_some();
    let bytes = replacement.as_bytes();
    let mut refused = false;
    let mut out = url[..whole.start()].to_string();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            let ch = replacement[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        match bytes[i + 1] {
            b'$' => {
                out.push('$');
                i += 2;
            }
            b'&' => {
                out.push_str(whole.as_str());
                i += 2;
            }
            b'`' => {
                out.push_str(&url[..whole.start()]);
                refused = true;
                i += 2;
            }
            b'\'' => {
                out.push_str(&url[whole.end()..]);
                refused = true;
                i += 2;
            }
            b'0'..=b'9' => {
                let mut digits = if bytes.get(i + 2).is_some_and(u8::is_ascii_digit) {
                    2
                } else {
                    1
                };
                let mut index: usize = replacement[i + 1..i + 1 + digits].parse().ok()?;
                if index > groups && digits == 2 {
                    digits = 1;
                    index = usize::from(bytes[i + 1] - b'0');
                }
                if (1..=groups).contains(&index) {
                    out.push_str(captures.get(index).map_or("", |m| m.as_str()));
                } else {
                    out.push_str(&replacement[i..i + 1 + digits]);
                    refused = true;
                }
                i += 1 + digits;
            }
            b'<' if named => match replacement[i + 2..].find('>') {
                Some(end) => {
                    let name = &replacement[i + 2..i + 2 + end];
                    out.push_str(captures.name(name).map_or("", |m| m.as_str()));
                    i += 3 + end;
                }
                None => {
                    out.push_str("$<");
                    i += 2;
                }
            },
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out.push_str(&url[whole.end()..]);
    Some((out, refused))
}

fn source() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "^/api/(.*)$",
        "^/(a+)(b)?",
        "^/(?<rest>.*)$",
        "^/(?<x>[a-z]+)/(?<y>.*)$",
        "(x)|(y)",
        "\u{e9}(.)",
        "^/a(/b)?(.*)$",
        "^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)",
        "^/no-groups",
        "/",
        "",
    ])
}

fn target() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "$", "$$", "$&", "$`", "$'", "$0", "$1", "$2", "$3", "$9", "$10", "$12", "$13", "$01", "$00", "$<", "$<rest>",
        "$<x>", "$<y>", "$<nope>", "$<>", ">", "<", "a", "/", "\u{e9}", "1", "$x", "?q=1",
    ]);
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn url() -> impl Strategy<Value = String> {
    let start = prop::sample::select(vec![
        "/api/",
        "/",
        "/aab/",
        "/x/",
        "/\u{e9}z",
        "/abcdefghijkl",
        "/no-groups",
    ]);
    (start, "[a-z/\u{e9}?=&$y]{0,12}").prop_map(|(start, rest)| format!("{start}{rest}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn targets_rewrite_as_javascript_replaces(source in source(), target in target(), url in url()) {
        let regex = Regex::new(source).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let compiled = js_replacement(&target, &regex);
        let Some(captures) = regex.captures(&url) else {
            return Ok(());
        };
        let Some((expected, refused)) = js_replace(&url, &regex, &target) else {
            return Err(TestCaseError::fail("the reference found no match"));
        };
        match compiled {
            Ok(compiled) => {
                prop_assert!(!refused, "accepted, but JavaScript keeps a pattern as text: {:?}", target);
                let whole = captures.get(0).map_or(0..0, |m| m.range());
                let out = compiled.rewrite(&url, whole, |group| captures.get(group).map(|m| m.as_str()));
                prop_assert_eq!(&out, &expected, "source {:?}, target {:?}, url {:?}", source, target, url);
                prop_assert!(out.len() <= url.len() * (1 + target.len()) + target.len());
            }
            Err(message) => {
                prop_assert!(refused, "refused, but JavaScript substitutes it all: {:?}: {}", target, message);
            }
        }
    }
}
