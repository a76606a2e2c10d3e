use http::HeaderValue;

use super::*;

/// An origin's text, and its scheme, host and port when it parses.
type ParseCase<'a> = (&'a str, Option<(&'a str, &'a str, u16)>);

#[test]
fn origins_parse_strictly() {
    let cases: &[ParseCase<'_>] = &[
        ("https://App.Example.com", Some(("https", "app.example.com", 443))),
        ("http://127.0.0.1:8080", Some(("http", "127.0.0.1", 8080))),
        ("http://a.example:80/", Some(("http", "a.example", 80))),
        ("http://[::1]:5000", Some(("http", "[::1]", 5000))),
        ("null", None),
        ("", None),
        ("https://a.example/path", None),
        ("https://a.example?x=https://b.example", None),
        ("https://user@a.example", None),
        ("ftp://a.example", None),
        (" https://a.example", None),
        ("https://a.example\\@b.example", None),
        ("//a.example", None),
    ];
    for (text, expected) in cases {
        let parsed = WebOrigin::parse(text).map(|o| (o.scheme, o.host, o.port));
        let expected = expected.map(|(s, h, p)| (s.to_string(), h.to_string(), p));
        assert_eq!(parsed, expected, "{text:?}");
    }
}

/// An allowlist entry (protocol, host, port), an origin, and whether it matches.
type AllowCase<'a> = (Option<&'a str>, &'a str, Option<u16>, &'a str, bool);

#[test]
fn allowlist_entries_match_by_the_parts_they_name() {
    let cases: &[AllowCase<'_>] = &[
        (None, "app.example", None, "https://app.example", true),
        (None, "app.example", None, "http://app.example:8080", true),
        (Some("https"), "app.example", None, "http://app.example", false),
        (Some("https:"), "app.example", None, "https://app.example", true),
        (None, "app.example", Some(443), "https://app.example", true),
        (None, "app.example", Some(8443), "https://app.example", false),
        (None, "*.example.com", None, "https://a.b.example.com", true),
        (None, "*.example.com", None, "https://example.com", false),
        (None, "*.example.com", None, "https://evilexample.com", false),
        (None, "*.Example.com", None, "https://x.example.com", true),
        (None, "*", None, "http://anything.example:1", true),
        (None, "app.example", None, "https://app.example.evil", false),
    ];
    for (protocol, host, port, origin, expected) in cases {
        let pattern = OriginPattern::new(*protocol, host, *port).expect("valid entry");
        let origin = WebOrigin::parse(origin).expect("origin");
        assert_eq!(
            pattern.matches(&origin),
            *expected,
            "{protocol:?} {host} {port:?} vs {origin:?}"
        );
    }
    assert!(OriginPattern::new(None, "a*.example", None).is_err());
    assert!(OriginPattern::new(Some("ht tp"), "a.example", None).is_err());
    assert!(OriginPattern::new(None, "", None).is_err());
}

#[test]
fn own_origin_follows_forwarded_headers_and_the_external_url() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5000"));
    let direct = own_origin(&headers, "http", None, true, false).unwrap();
    assert_eq!(direct.to_string(), "http://127.0.0.1:5000");
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.insert("x-forwarded-host", HeaderValue::from_static("App.example"));
    // Without a trusted proxy in front, the client's forwarded headers count for nothing.
    let untrusted = own_origin(&headers, "http", None, false, false).unwrap();
    assert_eq!(untrusted.to_string(), "http://127.0.0.1:5000");
    assert_eq!(
        own_origin(&headers, "http", None, true, false).unwrap().to_string(),
        "https://app.example"
    );
    let configured = own_origin(&headers, "http", Some("https://router.example:8443/base"), true, false).unwrap();
    assert_eq!(configured.to_string(), "https://router.example:8443");
    headers.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
    assert_eq!(
        own_origin(&headers, "http", None, true, false),
        Err(OwnOriginError::ForwardedProto)
    );
    let mut no_host = HeaderMap::new();
    no_host.insert(header::HOST, HeaderValue::from_static("a b"));
    assert_eq!(
        own_origin(&no_host, "http", None, true, false),
        Err(OwnOriginError::Host)
    );
}
