//! Unit tests of the pipeline's helpers: router cookies and the correlation id.

use http::HeaderValue;

use super::finish::correlation_id;
use super::upstream::is_router_cookie;

#[test]
fn router_cookies_are_the_session_binding_and_fragment_cookies() {
    let session = "JSESSIONID";
    assert_eq!(crate::auth::login::binding_cookie(session), "JSESSIONID_STATE");
    for (name, expected) in [
        ("JSESSIONID", true),
        ("JSESSIONID_STATE", true),
        (crate::auth::login::FRAGMENT_COOKIE, true),
        ("JSESSIONID_STATEX", false),
        ("JSESSIONIDX", false),
        ("jsessionid", false),
        ("XJSESSIONID", false),
        ("", false),
    ] {
        assert_eq!(is_router_cookie(session, name.as_bytes()), expected, "{name:?}");
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn the_correlation_id_comes_from_the_first_sane_source_in_order() {
    // Request headers, and the id expected (`None`: a new UUID).
    type Row<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let table: &[Row<'_>] = &[
        (&[("x-request-id", "r"), ("x-correlationid", "c")], Some("c")),
        (&[("x-vcap-request-id", "v"), ("x-correlation-id", "d")], Some("d")),
        (&[("x-vcap-request-id", "v"), ("x-request-id", "r")], Some("r")),
        (&[("x-vcap-request-id", "v")], Some("v")),
        // Insane values are passed over.
        (&[("x-correlationid", "a b"), ("x-request-id", "r")], Some("r")),
        (&[("x-correlationid", ""), ("x-vcap-request-id", "v")], Some("v")),
        // The first of several values counts, as a lookup returns it.
        (&[("x-request-id", "first"), ("x-request-id", "second")], Some("first")),
        (&[("x-request-id", "no way"), ("x-request-id", "second")], None),
        (&[("accept", "text/html")], None),
    ];
    for (pairs, expected) in table {
        let id = correlation_id(&headers(pairs));
        let id = id.to_str().unwrap();
        match expected {
            Some(expected) => assert_eq!(id, *expected, "{pairs:?}"),
            None => assert_eq!(id.len(), 36, "a new UUID for {pairs:?}, got {id}"),
        }
    }
}
