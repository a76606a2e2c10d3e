use super::*;
use crate::session::User;
use http::HeaderValue;

fn session(token: Option<&str>) -> Session {
    Session {
        user: User::default(),
        access_token: String::new().into(),
        refresh_token: None,
        expires_at: 0,
        refresh_at: 0,
        csrf_secret: token.map(String::from),
        backend_cookies: Vec::new(),
        login_at: 0,
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_static(v));
    }
    map
}

const OWN: Option<&str> = Some("https://app.example");

#[test]
fn method_overrides_make_a_read_state_changing() {
    // Method, request headers, and whether the request counts as state-changing.
    type Row<'a> = (Method, &'a [(&'a str, &'a [u8])], bool);
    let rows: &[Row<'_>] = &[
        (Method::GET, &[], false),
        (Method::HEAD, &[("accept", b"*/*")], false),
        (Method::POST, &[], true),
        (Method::GET, &[("x-http-method", b" get ")], false),
        (Method::GET, &[("x-http-method", b"HEAD")], false),
        (Method::GET, &[("x-method-override", b"PATCH")], true),
        (Method::HEAD, &[("x-http-method-override", b"DELETE")], true),
        // The first value of a name counts, as a lookup returns it.
        (
            Method::GET,
            &[
                ("x-http-method-override", b"GET"),
                ("x-http-method-override", b"DELETE"),
            ],
            false,
        ),
        (
            Method::GET,
            &[("x-http-method", b"GET"), ("x-method-override", b"PUT")],
            true,
        ),
        // A value that is not text is not a read.
        (Method::GET, &[("x-http-method-override", b"GET\xff")], true),
    ];
    for (method, pairs, want) in rows {
        let mut map = HeaderMap::new();
        for (name, value) in *pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        assert_eq!(is_state_changing(method, &map), *want, "{method} {pairs:?}");
    }
}

/// Method, request headers, session, and the decision expected.
type TableRow<'a> = (
    Method,
    &'a [(&'static str, &'static str)],
    &'a Session,
    Result<bool, CsrfError>,
);

#[test]
fn table() {
    let with = session(Some("tok"));
    let rows: &[TableRow<'_>] = &[
        (Method::GET, &[], &with, Ok(false)),
        (Method::GET, &[("x-csrf-token", "Fetch")], &with, Ok(true)),
        (Method::POST, &[("x-csrf-token", "tok")], &with, Ok(false)),
        (Method::POST, &[], &with, Err(CsrfError::TokenMismatch)),
        (
            Method::POST,
            &[("x-csrf-token", "tok2")],
            &with,
            Err(CsrfError::TokenMismatch),
        ),
        (Method::OPTIONS, &[], &with, Err(CsrfError::TokenMismatch)),
        (
            Method::GET,
            &[("x-http-method-override", "DELETE")],
            &with,
            Err(CsrfError::TokenMismatch),
        ),
        (
            Method::POST,
            &[("x-csrf-token", "tok"), ("origin", "null")],
            &with,
            Err(CsrfError::CrossSite("Origin: null")),
        ),
        (
            Method::POST,
            &[("x-csrf-token", "tok"), ("origin", "https://evil.example")],
            &with,
            Err(CsrfError::CrossSite("foreign Origin")),
        ),
        (
            Method::POST,
            &[("x-csrf-token", "tok"), ("sec-fetch-site", "cross-site")],
            &with,
            Err(CsrfError::CrossSite("Sec-Fetch-Site: cross-site")),
        ),
        (
            Method::POST,
            &[("x-csrf-token", "tok"), ("origin", "https://app.example")],
            &with,
            Ok(false),
        ),
    ];
    for (method, pairs, session, want) in rows {
        let got = check(method, &headers(pairs), session, OWN, true).map(|d| matches!(d, Decision::Fetch { .. }));
        assert_eq!(&got, want, "{method} {pairs:?}");
    }
    let empty = session(None);
    assert_eq!(
        check(&Method::POST, &headers(&[("x-csrf-token", "")]), &empty, OWN, true),
        Err(CsrfError::TokenMismatch),
        "no token in the session never matches an empty header"
    );
}
