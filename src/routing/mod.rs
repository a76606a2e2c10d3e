//! Route matching: first match wins, `httpMethods` → 405, `target` rewrite, destination lookup.
//! No IO happens here.

use std::borrow::Cow;

use http::Method;

use crate::config::{Config, Destination, DestinationRef, Route, RouteKind};

mod normalize;

pub use normalize::normalize_path;

/// Why a request cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No route's `source` matches.
    #[error("no route matches")]
    RouteNotFound,
    /// Routes match the path, but none allows the method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The sorted union of the matching routes' methods, for the `Allow` header.
        allow: String,
    },
    /// A `$N` destination names a destination that does not exist.
    #[error("dynamic destination {0:?} is not defined")]
    UnknownDestination(String),
    /// The decoded path leaves its root or hides a traversal.
    #[error("path traversal or malformed path")]
    PathTraversal,
    /// The path holds an encoded slash (`%2F`), which `ALLOW_ENCODED_SLASH` does not allow.
    #[error("encoded slash in the path")]
    EncodedSlash,
    /// The path holds an encoding of an encoding (`%2561`), one decode away from another path.
    #[error("nested percent-encoding in the path")]
    NestedEncoding,
}

/// The route chosen for a request: borrowed from the configuration (`'c`) and from the request's
/// URL (`'u`).
#[derive(Debug)]
pub struct RouteMatch<'c, 'u> {
    pub route: &'c Route,
    /// The URL (path and query) after the `target` rewrite.
    pub url: Cow<'u, str>,
    /// The destination for destination routes.
    pub destination: Option<&'c Destination>,
}

impl<'c> RouteMatch<'c, '_> {
    /// The same match, holding its own copy of the URL.
    pub fn into_owned(self) -> RouteMatch<'c, 'static> {
        RouteMatch {
            route: self.route,
            url: Cow::Owned(self.url.into_owned()),
            destination: self.destination,
        }
    }
}

/// Finds the first route for `method` and `url` (normalised path with query).
///
/// Sources match the URL with its query, as in the reference; a route whose source matches the path
/// alone is taken too, at its place in the table. So a query never moves a request past the first
/// route its path reaches (`/secret?x=1` still finds `^/secret$`), and tables that match on queries
/// keep working.
///
/// # Errors
/// [`Error::RouteNotFound`], [`Error::MethodNotAllowed`] or [`Error::UnknownDestination`].
pub fn match_route<'c, 'u>(config: &'c Config, method: &Method, url: &'u str) -> Result<RouteMatch<'c, 'u>, Error> {
    let mut path_matched: Option<Vec<Method>> = None;
    // The path alone, when there is a query to leave out.
    let path = url.find('?').map(|end| &url[..end]);
    // A `^literal(.*)$` source answers an ASCII URL (every URL that arrives percent-encoded) without
    // the regex engine.
    let ascii = url.is_ascii();
    let matches = |route: &Route, text: &str| match (&route.prefix, ascii) {
        (Some(prefix), true) => prefix.rest(text).is_some(),
        _ => route.source.is_match(text),
    };
    let found = match &config.route_set {
        // Large tables: one pass (two with a query) finds every route whose source matches.
        Some(set) => {
            let by_url = set.matches(url);
            let mut allowed_at = |index: usize, by_url: bool| {
                let route = config.routes.get(index)?;
                allowed(route, method, &mut path_matched).then_some((route, by_url))
            };
            match path.map(|path| set.matches(path)) {
                // Without a query only the URL's matches are visited.
                None => by_url.iter().find_map(|index| allowed_at(index, true)),
                Some(by_path) => (0..config.routes.len())
                    .filter(|&index| by_url.matched(index) || by_path.matched(index))
                    .find_map(|index| allowed_at(index, by_url.matched(index))),
            }
        }
        None => config
            .routes
            .iter()
            .filter_map(|route| {
                if matches(route, url) {
                    Some((route, true))
                } else {
                    path.filter(|path| matches(route, path)).map(|_| (route, false))
                }
            })
            .find(|(route, _)| allowed(route, method, &mut path_matched)),
    };
    if let Some((route, by_url)) = found {
        // What the source matched: the URL, or the path with the query kept aside.
        let (subject, query) = match (by_url, path) {
            (false, Some(path)) => (path, &url[path.len()..]),
            _ => (url, ""),
        };
        // One capture pass serves both the rewrite and a `$N` destination.
        let groups = match (&route.target, &route.kind) {
            (Some(_), _) | (_, RouteKind::Destination(DestinationRef::Capture(_))) => match (&route.prefix, ascii) {
                (Some(prefix), true) => prefix.rest(subject).map(|rest| Groups::Prefix { url: subject, rest }),
                _ => route.source.captures(subject).map(Groups::Regex),
            },
            _ => None,
        };
        let rewritten = match (&route.target, &groups) {
            // As `String.replace`: the first match is replaced, the text around it stays.
            (Some(target), Some(groups)) => {
                let mut rewritten = target.rewrite(subject, groups.whole(), |group| groups.get(group));
                rewritten.push_str(query);
                Cow::Owned(rewritten)
            }
            _ => Cow::Borrowed(url),
        };
        let destination = match &route.kind {
            RouteKind::Destination(DestinationRef::Named(name)) => config.destination(name).map(|d| &**d),
            RouteKind::Destination(DestinationRef::Capture(group)) => {
                let name = groups.as_ref().and_then(|groups| groups.get(*group)).unwrap_or("");
                match config.destination(name) {
                    Some(destination) => Some(&**destination),
                    None => return Err(Error::UnknownDestination(name.to_string())),
                }
            }
            _ => None,
        };
        return Ok(RouteMatch {
            route,
            url: rewritten,
            destination,
        });
    }
    match path_matched {
        Some(methods) => {
            let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
            names.sort_unstable();
            names.dedup();
            Err(Error::MethodNotAllowed {
                allow: names.join(", "),
            })
        }
        None => Err(Error::RouteNotFound),
    }
}

/// The capture groups of a matched source.
enum Groups<'u> {
    Regex(regex::Captures<'u>),
    /// A `^literal(.*)$` source: the whole URL matched, and group 1 is `rest`.
    Prefix {
        url: &'u str,
        rest: &'u str,
    },
}

impl<'u> Groups<'u> {
    fn get(&self, group: usize) -> Option<&'u str> {
        match self {
            Groups::Regex(captures) => captures.get(group).map(|m| m.as_str()),
            Groups::Prefix { url, .. } if group == 0 => Some(url),
            Groups::Prefix { rest, .. } if group == 1 => Some(rest),
            Groups::Prefix { .. } => None,
        }
    }

    /// Where the whole match lies in the URL.
    fn whole(&self) -> std::ops::Range<usize> {
        match self {
            Groups::Regex(captures) => captures.get(0).map_or(0..0, |m| m.range()),
            Groups::Prefix { url, .. } => 0..url.len(),
        }
    }
}

/// Whether `route`, whose source matched, takes `method`; if not, its methods join the `Allow`
/// list of a 405.
fn allowed(route: &Route, method: &Method, path_matched: &mut Option<Vec<Method>>) -> bool {
    if route.allows(method) {
        return true;
    }
    let allowed = path_matched.get_or_insert_with(Vec::new);
    if let Some(methods) = &route.methods {
        allowed.extend(methods.iter().cloned());
    }
    false
}

/// Refuses paths that hide a traversal, as the reference does: the path is percent-decoded up to
/// five times and NFKC-normalised (so `．．` or `‥` count as `..` and `／` as `/`). No decoded form
/// and no normalised one may contain a `.`/`..` segment, a backslash or a NUL.
///
/// # Errors
/// [`Error::PathTraversal`].
pub fn validate_path(path: &str) -> Result<(), Error> {
    let decoded = decoded_form(path)?;
    // ASCII is its own NFKC form: the common path costs one scan.
    if !decoded.is_ascii() {
        if let Cow::Owned(normalized) = NFKC.normalize(&decoded) {
            check_segments(&normalized)?;
        }
    }
    Ok(())
}

const NFKC: icu_normalizer::ComposingNormalizerBorrowed<'static> =
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc();

/// The fully decoded path (at most five rounds), each form checked on the way.
fn decoded_form(path: &str) -> Result<Cow<'_, str>, Error> {
    let mut current: Cow<'_, str> = Cow::Borrowed(path);
    for _ in 0..5 {
        check_segments(&current)?;
        if !current.contains('%') {
            // Nothing left to decode.
            return Ok(current);
        }
        let decoded = percent_encoding::percent_decode_str(&current).decode_utf8_lossy();
        if decoded == current {
            return Ok(current);
        }
        current = Cow::Owned(decoded.into_owned());
    }
    check_segments(&current)?;
    if current.contains('%') {
        // Still encoded after five rounds: nobody legitimate nests encodings that deep.
        let decoded = percent_encoding::percent_decode_str(&current).decode_utf8_lossy();
        if decoded != current {
            return Err(Error::PathTraversal);
        }
    }
    Ok(current)
}

fn check_segments(path: &str) -> Result<(), Error> {
    // One pass: a backslash or NUL anywhere, or a segment that is `.` or `..`.
    let mut dots = 0;
    let mut only_dots = true;
    for &byte in path.as_bytes().iter().chain(std::iter::once(&b'/')) {
        match byte {
            b'\\' | b'\0' => return Err(Error::PathTraversal),
            b'/' => {
                if only_dots && (dots == 1 || dots == 2) {
                    return Err(Error::PathTraversal);
                }
                dots = 0;
                only_dots = true;
            }
            b'.' => dots += 1,
            _ => only_dots = false,
        }
    }
    Ok(())
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A case-insensitive `^literal(.*)$` route still matches a URL whose letters only Unicode
    /// folds to the literal's (the Kelvin sign is `k`): such URLs go to the regex.
    #[test]
    fn prefix_routes_leave_non_ascii_urls_to_the_regex() {
        let xs_app = r#"{"authenticationMethod":"none","routes":[
            {"source":{"path":"^/k/(.*)$","matchCase":false},"target":"/t/$1","destination":"backend"}
        ]}"#;
        let env =
            crate::config::Env::from_pairs([("destinations", r#"[{"name":"backend","url":"http://127.0.0.1:1"}]"#)]);
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
        let env =
            crate::config::Env::from_pairs([("destinations", r#"[{"name":"backend","url":"http://127.0.0.1:1"}]"#)]);
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
}
