//! Property tests of the byte-wise `Cookie` reader against a plain split (`;` between pairs, the
//! first `=` between name and value, whitespace trimmed) and against the `cookie` crate's parser:
//! the lookups find what both find, and stripping leaves exactly the other pairs and never the
//! stripped name.

use proptest::prelude::*;

use super::*;

type Pair = (Vec<u8>, Option<Vec<u8>>);

fn reference(values: &[Vec<u8>]) -> Vec<Pair> {
    values
        .iter()
        .flat_map(|value| value.split(|byte| *byte == b';'))
        .map(|pair| pair.trim_ascii())
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|byte| *byte == b'=') {
            Some(at) => (
                pair[..at].trim_ascii().to_vec(),
                Some(pair[at + 1..].trim_ascii().to_vec()),
            ),
            None => (pair.to_vec(), None),
        })
        .collect()
}

fn headers_of(values: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("a"));
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::COOKIE, value);
        }
    }
    headers
}

/// `Cookie` values: pairs with names that collide with the router's, odd separators and spacing,
/// bytes outside visible ASCII.
fn cookie_values() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let name = prop::sample::select(vec![
        "JSESSIONID",
        "JSESSIONID_STATE",
        "jsessionid",
        "a",
        "",
        " JSESSIONID",
        "x y",
    ]);
    let value = prop_oneof![
        3 => "[A-Za-z0-9_=\"-]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(
            prop_oneof![4 => prop::sample::select(b"ab=; \t,\"%".to_vec()), 1 => 0x80u8..=0xff],
            0..8,
        ),
    ];
    let separator = prop::sample::select(vec![&b";"[..], b"; ", b";;", b" ; ", b"\t;", b";="]);
    let pair = (name, prop::option::weighted(0.9, value));
    let header = prop::collection::vec((pair, separator), 0..6).prop_map(|pairs| {
        let mut out = Vec::new();
        for ((name, value), separator) in pairs {
            out.extend_from_slice(name.as_bytes());
            if let Some(value) = value {
                out.push(b'=');
                out.extend_from_slice(&value);
            }
            out.extend_from_slice(separator);
        }
        out
    });
    prop::collection::vec(header, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lookups_find_what_a_plain_split_finds(values in cookie_values()) {
        let headers = headers_of(&values);
        let sent: Vec<Vec<u8>> = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes().to_vec()).collect();
        let pairs = reference(&sent);
        for name in ["JSESSIONID", "JSESSIONID_STATE", "a", "x y", ""] {
            let expected = pairs
                .iter()
                .find_map(|(key, value)| value.as_deref().filter(|_| key == name.as_bytes()));
            prop_assert_eq!(cookie_bytes(&headers, name), expected, "{}", name);
            let text = pairs
                .iter()
                .filter(|(key, _)| key == name.as_bytes())
                .find_map(|(_, value)| value.as_deref().and_then(|value| std::str::from_utf8(value).ok()));
            prop_assert_eq!(cookie(&headers, name), text, "{}", name);
        }
    }

    #[test]
    fn stripping_leaves_exactly_the_other_pairs(values in cookie_values()) {
        let mut headers = headers_of(&values);
        let sent: Vec<Vec<u8>> = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes().to_vec()).collect();
        let router_cookie = |name: &[u8]| name == b"JSESSIONID" || name == b"JSESSIONID_STATE";
        strip_cookies(&mut headers, router_cookie);
        let left: Vec<Vec<u8>> = headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes().to_vec()).collect();
        let before = reference(&sent);
        if !before.iter().any(|(name, _)| router_cookie(name)) {
            prop_assert_eq!(left, sent, "nothing to strip: the headers stay as they are");
            return Ok(());
        }
        let expected: Vec<Pair> = before.into_iter().filter(|(name, _)| !router_cookie(name)).collect();
        prop_assert_eq!(reference(&left), expected.clone());
        prop_assert!(left.len() <= 1, "the kept pairs are one header");
        prop_assert!(expected.is_empty() == left.is_empty(), "an empty header is dropped");
        prop_assert_eq!(cookie_bytes(&headers, "JSESSIONID"), None);
        prop_assert_eq!(cookie_bytes(&headers, "JSESSIONID_STATE"), None);
        let total: usize = sent.iter().map(Vec::len).sum();
        prop_assert!(left.iter().map(Vec::len).sum::<usize>() <= total + 2 * expected.len());
        prop_assert_eq!(headers.get(header::HOST).map(|v| v.as_bytes()), Some(&b"a"[..]), "other headers stay");
    }

    #[test]
    fn lookups_find_what_the_cookie_crate_parses(values in cookie_values()) {
        // The crate reads text and trims Unicode whitespace; the reader reads bytes and trims ASCII
        // whitespace. On ASCII headers the two must agree.
        let values: Vec<Vec<u8>> = values.into_iter().filter(|value| value.is_ascii()).collect();
        let headers = headers_of(&values);
        let parsed: Vec<(String, String)> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .map(|cookie| (cookie.name().to_owned(), cookie.value().to_owned()))
            .collect();
        // The crate refuses an empty name, so "" is not asked.
        for name in ["JSESSIONID", "JSESSIONID_STATE", "jsessionid", "a", "x y"] {
            let expected = parsed.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
            prop_assert_eq!(cookie(&headers, name), expected, "{}", name);
            prop_assert_eq!(cookie_bytes(&headers, name), expected.map(str::as_bytes), "{}", name);
        }
    }
}
