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
    /// The destination for destination routes whose destination is in the `destinations`
    /// variable.
    pub destination: Option<&'c Destination>,
    /// The destination the Destination service must find, for the others.
    pub lookup: Option<Lookup>,
}

/// A destination to look up at the Destination service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// By name. `dynamic` when the name came from the request (`$N`, `*`): only destinations
    /// with `HTML5.DynamicDestination` may be reached that way.
    Name { name: String, dynamic: bool },
    /// `*`: group 1 of `DESTINATION_HOST_PATTERN` on the request's host names it.
    Host,
}

impl<'c> RouteMatch<'c, '_> {
    /// The same match, holding its own copy of the URL.
    pub fn into_owned(self) -> RouteMatch<'c, 'static> {
        RouteMatch {
            route: self.route,
            url: Cow::Owned(self.url.into_owned()),
            destination: self.destination,
            lookup: self.lookup,
        }
    }
}

/// The destination a name from the request (`$N`, `*`) gives: the `destinations` variable's, else
/// the Destination service's when one is bound.
///
/// # Errors
/// [`Error::UnknownDestination`] when neither can have it.
pub fn dynamic_destination<'c>(
    config: &'c Config,
    name: &str,
) -> Result<(Option<&'c Destination>, Option<Lookup>), Error> {
    if let Some(destination) = config.destination(name) {
        return Ok((Some(&**destination), None));
    }
    if name.is_empty() || config.services.destination.is_none() {
        return Err(Error::UnknownDestination(name.to_string()));
    }
    Ok((
        None,
        Some(Lookup::Name {
            name: name.to_string(),
            dynamic: true,
        }),
    ))
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
        let (destination, lookup) = match &route.kind {
            RouteKind::Destination(DestinationRef::Named(name)) => (config.destination(name).map(|d| &**d), None),
            RouteKind::Destination(DestinationRef::Service(name)) => (
                None,
                Some(Lookup::Name {
                    name: name.clone(),
                    dynamic: false,
                }),
            ),
            RouteKind::Destination(DestinationRef::Capture(group)) => {
                let name = groups.as_ref().and_then(|groups| groups.get(*group)).unwrap_or("");
                dynamic_destination(config, name)?
            }
            RouteKind::Destination(DestinationRef::Host) => (None, Some(Lookup::Host)),
            _ => (None, None),
        };
        return Ok(RouteMatch {
            route,
            url: rewritten,
            destination,
            lookup,
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
mod tests;
