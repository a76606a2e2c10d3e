use super::*;

/// A case-insensitive `^literal(.*)$` route still matches a URL whose letters only Unicode
/// folds to the literal's (the Kelvin sign is `k`): such URLs go to the regex.
#[test]
fn prefix_routes_leave_non_ascii_urls_to_the_regex() {
    let xs_app = r#"{"authenticationMethod":"none","routes":[
        {"source":{"path":"^/k/(.*)$","matchCase":false},"target":"/t/$1","destination":"backend"}
    ]}"#;
    let env = crate::config::Env::from_pairs([("destinations", r#"[{"name":"backend","url":"http://127.0.0.1:1"}]"#)]);
    let config = Config::load(xs_app, &env, std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).expect("valid");
    assert!(config.routes[0].prefix.is_some());
    for (url, expected) in [("/K/x", "/t/x"), ("/\u{212A}/é", "/t/é"), ("/k/", "/t/")] {
        let matched = match_route(&config, &Method::GET, url).expect(url);
        assert_eq!(matched.url, expected, "{url}");
    }
    assert_eq!(
        match_route(&config, &Method::GET, "/kx").unwrap_err(),
        Error::RouteNotFound
    );
}

#[test]
fn a_large_route_table_matches_through_its_set_exactly_as_one_by_one() {
    let xs_app = r#"{"authenticationMethod":"none","routes":[
        {"source":"^/api/(v1|v2)/(.*)$","target":"/$2","destination":"backend","httpMethods":["GET"]},
        {"source":"^/api/v1/(.*)$","destination":"backend","httpMethods":["POST","PUT"]},
        {"source":{"path":"^/UI/(.*)$","matchCase":false},"destination":"backend"},
        {"source":"^/Case/(.*)$","destination":"backend"},
        {"source":"^/(?i)mixed/x$|^/alt$","destination":"backend"},
        {"source":{"path":"^/flags/(?-i:Exact)$","matchCase":false},"destination":"backend"},
        {"source":"^/q\\?a=1","destination":"backend"},
        {"source":"^/(dyn)/(.*)$","destination":"$1"},
        {"source":"^/only-delete$","destination":"backend","httpMethods":["DELETE"]},
        {"source":"^/(.*)$","destination":"backend","httpMethods":["HEAD"]}
    ]}"#;
    let env = crate::config::Env::from_pairs([(
        "destinations",
        r#"[{"name":"backend","url":"http://127.0.0.1:1"},{"name":"dyn","url":"http://127.0.0.1:2"}]"#,
    )]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let with_set = Config::load(xs_app, &env, dir).expect("valid");
    assert!(with_set.route_set.is_some(), "10 routes use the set");
    let mut one_by_one = Config::load(xs_app, &env, dir).expect("valid");
    one_by_one.route_set = None;
    let urls = [
        "/api/v1/orders",
        "/api/v2/x?y=1",
        "/api/v3/x",
        "/ui/index.html",
        "/Ui/a",
        "/case/x",
        "/Case/x",
        "/MIXED/x",
        "/alt",
        "/ALT",
        "/flags/Exact",
        "/FLAGS/Exact",
        "/flags/exact",
        "/q?a=1",
        "/dyn/a",
        "/only-delete",
        "/only-delete?x=1",
        "/alt?y",
        "/case/x?",
        "/flags/Exact?a=1",
        "/nothing",
        "/",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
    ];
    let outcome = |config: &Config, method: &Method, url: &str| match match_route(config, method, url) {
        Ok(found) => Ok((
            found.route.index,
            found.url.into_owned(),
            found.destination.map(|d| d.name.clone()),
        )),
        Err(error) => Err(error),
    };
    let mut matched = 0;
    for url in urls {
        for method in &methods {
            let expected = outcome(&one_by_one, method, url);
            matched += usize::from(expected.is_ok());
            assert_eq!(outcome(&with_set, method, url), expected, "{method} {url}");
        }
    }
    assert!(matched > 20, "the table exercises matches too ({matched})");
}

/// A query never moves a request past the first route its path reaches; sources that match on
/// the query still get their requests, and the rewrite keeps the query.
#[test]
fn a_route_is_taken_when_its_source_matches_the_url_or_the_path() {
    let xs_app = r#"{"authenticationMethod":"none","routes":[
        {"source":"^/report\\?format=csv$","target":"/csv","destination":"backend"},
        {"source":"^/secret$","target":"/s","destination":"backend"},
        {"source":"^/(.*)$","destination":"backend"}
    ]}"#;
    let env = crate::config::Env::from_pairs([("destinations", r#"[{"name":"backend","url":"http://127.0.0.1:1"}]"#)]);
    let config = Config::load(xs_app, &env, std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).expect("valid");
    for (url, route, rewritten) in [
        ("/secret", 1, "/s"),
        ("/secret?x=1", 1, "/s?x=1"),
        ("/secret?", 1, "/s?"),
        ("/secret/x?y", 2, "/secret/x?y"),
        ("/report?format=csv", 0, "/csv"),
        ("/report?format=pdf", 2, "/report?format=pdf"),
    ] {
        let matched = match_route(&config, &Method::GET, url).expect(url);
        assert_eq!((matched.route.index, &*matched.url), (route, rewritten), "{url}");
    }
}

#[test]
fn traversal_is_refused_in_every_encoding() {
    for path in [
        "/a/../b",
        "/a/./b",
        "/a/%2e%2e/b",
        "/a/%252e%252e/b",
        "/public%2F..%2Fapi",
        "/a%5c..%5cb",
        "/a/..",
        "/%2e",
        "..",
        ".",
        "/a/.",
        "./a",
        "/a\\b",
        "/a\0b",
        "/a//../b",
        // NFKC: fullwidth full stops and solidus, the two-dot leader, a fullwidth reverse
        // solidus; raw and encoded twice.
        "/a/%EF%BC%8E%EF%BC%8E/b",
        "/a%EF%BC%8F..%EF%BC%8Fb",
        "/a/%E2%80%A5/b",
        "/a/%E2%80%A4",
        "/a%EF%BC%BCb",
        "/a/%25EF%25BC%258E%25EF%25BC%258E/b",
    ] {
        assert_eq!(validate_path(path), Err(Error::PathTraversal), "{path}");
    }
}

#[test]
fn ordinary_paths_pass() {
    for path in [
        "/",
        "/a/b.c",
        "/a/..b/c",
        "/a%20b",
        "/v1/x...y",
        "/a/b/",
        "/a/.../b",
        "/.a/b.",
        "/a..",
        "",
        "a",
        // Non-ASCII that normalises to nothing dangerous.
        "/caf%C3%A9/%EF%BC%A1",
        "/a/%E2%80%A4x",
        "/%EF%BC%8E%EF%BC%8E%EF%BC%8E/b",
        "/%FF%FE",
    ] {
        assert_eq!(validate_path(path), Ok(()), "{path}");
    }
}
