//! `routes` of xs-app.json, compiled: regexes built once, destinations resolved, targets converted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Method};
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::env::Env;
use super::error::Error;
use super::parse::parse_all;
use super::raw::{self, AuthenticationType};
use super::Destination;

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in `routes`, for logs and metrics labels.
    pub index: usize,
    /// `source`, matched against the URL with its query.
    pub source: Regex,
    /// `source.matchCase` (false: `source` was compiled case-insensitive).
    pub match_case: bool,
    /// `source` when it is `^literal(.*)$`, the most common form: matched without the regex.
    pub prefix: Option<Prefix>,
    /// `httpMethods`; `None` allows every method.
    pub methods: Option<Vec<Method>>,
    /// `target`, compiled.
    pub target: Option<Target>,
    pub kind: RouteKind,
    /// Effective authentication type (`none` when `authenticationMethod` is `none`).
    pub authentication: AuthenticationType,
    pub csrf_protection: bool,
    pub scope: Option<ScopeRule>,
    pub cache_control: Option<HeaderValue>,
    pub identity_provider: Option<String>,
    pub dynamic_identity_provider: bool,
    pub set_backend_session_cookies: bool,
    /// `preferLocal`: the destination is the provider's (found with the provider's token, the
    /// user's token as `X-user-token`), also for a subscriber tenant's request.
    pub prefer_local: bool,
    /// `replace` of a `localDir` route: which files are templates, and their view.
    pub replace: Option<Arc<crate::static_files::Replace>>,
}

impl Route {
    /// True when the route needs a logged-in user.
    pub fn is_protected(&self) -> bool {
        self.authentication != AuthenticationType::None
    }

    /// True when `method` is allowed by `httpMethods`.
    pub fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods.contains(method),
        }
    }
}

/// A `source` of the form `^literal(.*)$` (the literal plain ASCII, escapes allowed): a URL matches
/// when it starts with the literal and the rest holds no line feed (which `.` does not match), and
/// group 1 is that rest. For ASCII URLs this is exactly the regex's answer; others go to the regex,
/// whose case-insensitive matching also folds non-ASCII letters (`K`, the Kelvin sign, is `k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    literal: String,
    case_insensitive: bool,
}

impl Prefix {
    /// The prefix form of `pattern`, if it has it.
    pub fn of(pattern: &str, match_case: bool) -> Option<Prefix> {
        let body = pattern.strip_prefix('^')?.strip_suffix("(.*)$")?;
        let mut literal = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    escaped @ ('.' | '/' | '-' | '?' | '+' | '*' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^'
                    | '$' | '\\' | '&' | '~' | '#' | ' ') => literal.push(escaped),
                    _ => return None,
                },
                c if c.is_ascii_alphanumeric() || "/_-~!,;:@=&%'".contains(c) => literal.push(c),
                _ => return None,
            }
        }
        Some(Prefix {
            literal,
            case_insensitive: !match_case,
        })
    }

    /// Group 1 (the text after the literal) when the ASCII `url` matches; `None` when it does not.
    pub fn rest<'u>(&self, url: &'u str) -> Option<&'u str> {
        let head = url.get(..self.literal.len())?;
        let matched = match self.case_insensitive {
            true => head.eq_ignore_ascii_case(&self.literal),
            false => head == self.literal,
        };
        let rest = &url[self.literal.len()..];
        (matched && !rest.contains('\n')).then_some(rest)
    }
}

/// From this many routes on, one pass of a [`regex::RegexSet`] finds the candidates; fewer are
/// tried one by one (a set's own pass costs more than a few literal-prefix rejections).
const ROUTE_SET_MIN: usize = 8;

/// Every route's `source` in one set, index for index, for tables of [`ROUTE_SET_MIN`] routes or
/// more; `None` below that, or when the set would exceed the regex size limits (the routes are
/// then tried one by one, with the same result).
pub fn route_set(routes: &[Route]) -> Option<regex::RegexSet> {
    if routes.len() < ROUTE_SET_MIN {
        return None;
    }
    // A group with the route's case flag around its own pattern: the same language as the route's
    // regex (inline flags inside still win).
    let patterns = routes.iter().map(|route| match route.match_case {
        true => format!("(?:{})", route.source.as_str()),
        false => format!("(?i:{})", route.source.as_str()),
    });
    regex::RegexSet::new(patterns).ok()
}

/// What a route serves.
#[derive(Debug, Clone)]
pub enum RouteKind {
    /// Forward to a destination.
    Destination(DestinationRef),
    /// Serve files from this folder.
    LocalDir(PathBuf),
    /// A built-in service (`sap-approuter-userapi`).
    Service { name: String, endpoint: Option<String> },
}

/// How a route names its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationRef {
    /// A destination from the `destinations` variable.
    Named(String),
    /// A destination of the Destination service: a name the `destinations` variable does not
    /// define (which wins over the service's, as in the reference).
    Service(String),
    /// `$N`: the name is the N-th capture group of `source`.
    Capture(usize),
    /// `*`: the name is group 1 of `DESTINATION_HOST_PATTERN` on the request's host.
    Host,
}

/// `scope`: per method, with a default. Empty lists deny.
#[derive(Debug, Clone, Default)]
pub struct ScopeRule {
    pub per_method: Vec<(Method, Vec<String>)>,
    pub default: Option<Vec<String>>,
}

impl ScopeRule {
    /// The scopes of which the user needs any one for `method`; empty denies.
    pub fn required(&self, method: &Method) -> &[String] {
        self.per_method
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, scopes)| scopes.as_slice())
            .or(self.default.as_deref())
            .unwrap_or(&[])
    }

    /// Replaces a leading `$XSAPPNAME` in every scope with the binding's `xsappname`.
    pub fn resolve_xsappname(&mut self, xsappname: &str) {
        let fix = |scopes: &mut Vec<String>| {
            for scope in scopes.iter_mut() {
                if let Some(rest) = scope.strip_prefix("$XSAPPNAME") {
                    *scope = format!("{xsappname}{rest}");
                }
            }
        };
        for (_, scopes) in &mut self.per_method {
            fix(scopes);
        }
        if let Some(default) = &mut self.default {
            fix(default);
        }
    }
}

/// The user API service name of the reference.
pub const USER_API_SERVICE: &str = "sap-approuter-userapi";

/// Compiles `routes`, then the implicit `resources/` route when no route has `localDir`.
pub fn compile(
    routes: &[Value],
    destinations: &BTreeMap<String, Arc<Destination>>,
    dir: &Path,
    authentication_none: bool,
    env: &Env,
    errors: &mut Error,
) -> Vec<Route> {
    let mut compiled = Vec::new();
    for (index, value) in routes.iter().enumerate() {
        let path = format!("xs-app.json: routes[{index}]");
        let before = errors.problems.len();
        let Some(route) = parse_all::<raw::Route>(value.clone(), &path, errors) else {
            continue;
        };
        let route = compile_route(index, route, &path, destinations, dir, authentication_none, env, errors);
        if errors.problems.len() == before {
            if let Some(route) = route {
                compiled.push(route);
            }
        }
    }
    // As the Node.js router: without any `localDir` route, a `resources/` folder is served by a
    // catch-all route after all others, with the default authentication.
    let any_local_dir = routes
        .iter()
        .any(|route| route.get("localDir").is_some_and(|dir| !dir.is_null()));
    if !any_local_dir && dir.join(IMPLICIT_DIR).is_dir() {
        let index = routes.len();
        let implicit = serde_json::json!({"source": "^/(.*)", "localDir": IMPLICIT_DIR});
        let implicit = parse_all::<raw::Route>(implicit, IMPLICIT_ROUTE, errors);
        if let Some(route) = implicit.and_then(|implicit| {
            compile_route(
                index,
                implicit,
                IMPLICIT_ROUTE,
                destinations,
                dir,
                authentication_none,
                env,
                errors,
            )
        }) {
            compiled.push(route);
        }
    }
    compiled
}

/// The folder the implicit route serves.
const IMPLICIT_DIR: &str = "resources";
/// How errors name the implicit route.
pub const IMPLICIT_ROUTE: &str = "xs-app.json: the implicit route serving resources/ (no route has localDir)";

#[expect(clippy::too_many_arguments, reason = "the route and what compiling it reads")]
fn compile_route(
    index: usize,
    mut route: raw::Route,
    path: &str,
    destinations: &BTreeMap<String, Arc<Destination>>,
    dir: &Path,
    authentication_none: bool,
    env: &Env,
    errors: &mut Error,
) -> Option<Route> {
    let (pattern, match_case) = match &route.source {
        raw::Source::Pattern(pattern) => (pattern.as_str(), true),
        raw::Source::Object(object) => (object.path.as_str(), object.match_case.unwrap_or(true)),
    };
    let source = match RegexBuilder::new(pattern).case_insensitive(!match_case).build() {
        Ok(regex) => Some(regex),
        Err(error) => {
            let message = error.to_string().lines().last().unwrap_or("").trim().to_string();
            errors.push(
                format!("{path}.source"),
                format!("invalid regex {pattern:?}: {message}"),
            );
            None
        }
    };
    let groups = source.as_ref().map(|regex| regex.captures_len() - 1).unwrap_or(0);

    let kinds = [
        route.destination.is_some(),
        route.local_dir.is_some(),
        route.service.is_some(),
    ];
    if kinds.iter().filter(|set| **set).count() != 1 {
        errors.push(
            path,
            "needs exactly one of \"destination\", \"localDir\" and \"service\"",
        );
    }
    let kind = if let Some(name) = &route.destination {
        destination_ref(name, groups, destinations, &format!("{path}.destination"), errors).map(RouteKind::Destination)
    } else if let Some(local_dir) = &route.local_dir {
        let full = dir.join(local_dir);
        if !full.is_dir() {
            errors.push(
                format!("{path}.localDir"),
                format!("directory not found: {}", full.display()),
            );
        }
        if route.http_methods.is_some() {
            errors.push(format!("{path}.httpMethods"), "is not allowed together with localDir");
        }
        Some(RouteKind::LocalDir(full))
    } else if let Some(service) = &route.service {
        if service != USER_API_SERVICE {
            errors.push(
                format!("{path}.service"),
                format!("{service:?} is not yet supported (only \"{USER_API_SERVICE}\")"),
            );
        }
        Some(RouteKind::Service {
            name: service.clone(),
            endpoint: route.endpoint.clone(),
        })
    } else {
        None
    };
    if route.endpoint.is_some() && route.service.is_none() {
        errors.push(format!("{path}.endpoint"), "requires \"service\"");
    }
    if route.prefer_local.is_some() && route.destination.is_none() {
        errors.push(format!("{path}.preferLocal"), "requires \"destination\"");
    }
    let replace = match route.replace.take() {
        Some(_) if route.local_dir.is_none() => {
            errors.push(format!("{path}.replace"), "requires \"localDir\"");
            None
        }
        Some(replace) => replace::compile(replace, path, env, errors),
        None => None,
    };

    let target = route.target.as_deref().and_then(|target| {
        // Every relative form the Node.js router takes (`/x`, `x`, `$1`), but never another host.
        if target.starts_with("//") || target.contains("://") {
            errors.push(
                format!("{path}.target"),
                format!("must be a relative URI, not one naming a host, got {target:?}"),
            );
        }
        match js_replacement(target, source.as_ref()?) {
            Ok(converted) => Some(converted),
            Err(message) => {
                errors.push(format!("{path}.target"), message);
                None
            }
        }
    });

    let authentication = if authentication_none {
        AuthenticationType::None
    } else {
        route.authentication_type.unwrap_or(AuthenticationType::Xsuaa)
    };
    if authentication == AuthenticationType::Ias {
        errors.push(format!("{path}.authenticationType"), "\"ias\" is not yet supported");
    }
    if route.identity_provider.is_some()
        && !matches!(authentication, AuthenticationType::Xsuaa | AuthenticationType::Ias)
    {
        errors.push(
            format!("{path}.identityProvider"),
            "is only allowed with authenticationType xsuaa or ias",
        );
    }

    let cache_control = route
        .cache_control
        .as_deref()
        .and_then(|value| match HeaderValue::from_str(value) {
            Ok(value) => Some(value),
            Err(_) => {
                errors.push(
                    format!("{path}.cacheControl"),
                    format!("{value:?} is not a valid header value"),
                );
                None
            }
        });

    let methods = route.http_methods.as_ref().map(|methods| {
        if methods.is_empty() {
            errors.push(format!("{path}.httpMethods"), "must not be empty");
        }
        methods.iter().map(|method| to_method(*method)).collect()
    });

    Some(Route {
        index,
        prefix: Prefix::of(pattern, match_case),
        source: source?,
        match_case,
        methods,
        target,
        kind: kind?,
        authentication,
        csrf_protection: route.csrf_protection.unwrap_or(true),
        scope: route.scope.map(scope_rule),
        cache_control,
        identity_provider: route.identity_provider,
        dynamic_identity_provider: route.dynamic_identity_provider.unwrap_or(false),
        set_backend_session_cookies: route.set_backend_session_cookies.unwrap_or(false),
        prefer_local: route.prefer_local.unwrap_or(false),
        replace,
    })
}

fn destination_ref(
    name: &str,
    groups: usize,
    destinations: &BTreeMap<String, Arc<Destination>>,
    path: &str,
    errors: &mut Error,
) -> Option<DestinationRef> {
    if name == "*" {
        return Some(DestinationRef::Host);
    }
    if let Some(group) = name.strip_prefix('$') {
        return match group.parse::<usize>() {
            Ok(n) if n >= 1 && n <= groups => Some(DestinationRef::Capture(n)),
            _ => {
                errors.push(
                    path,
                    format!("{name:?} names no capture group of source ({groups} groups)"),
                );
                None
            }
        };
    }
    if !destinations.contains_key(name) {
        // Found at the Destination service, if one is bound (checked with the bindings).
        return Some(DestinationRef::Service(name.to_string()));
    }
    Some(DestinationRef::Named(name.to_string()))
}

fn to_method(method: raw::HttpMethod) -> Method {
    match method {
        raw::HttpMethod::Delete => Method::DELETE,
        raw::HttpMethod::Get => Method::GET,
        raw::HttpMethod::Head => Method::HEAD,
        raw::HttpMethod::Options => Method::OPTIONS,
        raw::HttpMethod::Post => Method::POST,
        raw::HttpMethod::Put => Method::PUT,
        raw::HttpMethod::Trace => Method::TRACE,
        raw::HttpMethod::Patch => Method::PATCH,
    }
}

fn scope_rule(scope: raw::Scope) -> ScopeRule {
    match scope {
        raw::Scope::One(one) => ScopeRule {
            per_method: Vec::new(),
            default: Some(vec![one]),
        },
        raw::Scope::Many(many) => ScopeRule {
            per_method: Vec::new(),
            default: Some(many),
        },
        raw::Scope::PerMethod(per) => {
            let per = *per;
            let entries = [
                (Method::GET, per.get),
                (Method::POST, per.post),
                (Method::PUT, per.put),
                (Method::DELETE, per.delete),
                (Method::PATCH, per.patch),
                (Method::HEAD, per.head),
                (Method::OPTIONS, per.options),
                (Method::TRACE, per.trace),
                (Method::CONNECT, per.connect),
            ];
            ScopeRule {
                per_method: entries
                    .into_iter()
                    .filter_map(|(method, scopes)| scopes.map(|s| (method, s.to_vec())))
                    .collect(),
                default: per.default.map(|d| d.to_vec()),
            }
        }
    }
}

/// A route's `target`, compiled once: literal text and capture groups in order, with the meaning of
/// JavaScript's `String.replace` patterns (`$1`, `$&`, `$$`, `$<name>`), so `$1a` is "group 1, then a"
/// as in the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    /// A capture group; one that did not take part in the match adds nothing.
    Group(usize),
}

impl Target {
    /// `url` rewritten as `String.replace` does: the match of the route's `source` at `whole` is
    /// replaced by the target, whose groups `group` gives; the text around the match stays.
    pub fn rewrite<'u>(
        &self,
        url: &str,
        whole: std::ops::Range<usize>,
        group: impl Fn(usize) -> Option<&'u str>,
    ) -> String {
        let text: usize = self
            .0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.len(),
                Piece::Group(_) => 0,
            })
            .sum();
        let mut out = String::with_capacity(url.len() + text);
        out.push_str(&url[..whole.start]);
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Group(index) => out.push_str(group(*index).unwrap_or("")),
            }
        }
        out.push_str(&url[whole.end..]);
        out
    }
}

/// Compiles a JavaScript `String.replace` pattern against the route's `source`.
///
/// # Errors
/// `` $` `` and `$'` (not supported) and a `$N` naming no group of `source`.
pub fn js_replacement(target: &str, source: &Regex) -> Result<Target, String> {
    let groups = source.captures_len() - 1;
    let mut pieces = Vec::new();
    let mut text = String::new();
    let group = |pieces: &mut Vec<Piece>, text: &mut String, piece: Option<usize>| {
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(text).into_boxed_str()));
        }
        // A named group that `source` does not have adds nothing, as an unset group.
        if let Some(index) = piece {
            pieces.push(Piece::Group(index));
        }
    };
    let bytes = target.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'$' {
            let ch = target[i..].chars().next().unwrap_or('\u{fffd}');
            text.push(ch);
            i += ch.len_utf8();
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                text.push('$');
                i += 2;
            }
            Some(b'&') => {
                group(&mut pieces, &mut text, Some(0));
                i += 2;
            }
            Some(b'`') | Some(b'\'') => {
                return Err("the replacement patterns $` and $' are not supported".into());
            }
            // As JavaScript: `$<` names a group only when `source` has named groups; otherwise it
            // is text.
            Some(b'<') if source.capture_names().flatten().next().is_some() => match target[i + 2..].find('>') {
                Some(end) => {
                    let name = &target[i + 2..i + 2 + end];
                    let index = source.capture_names().position(|candidate| candidate == Some(name));
                    group(&mut pieces, &mut text, index);
                    i += 3 + end;
                }
                None => {
                    text.push('$');
                    i += 1;
                }
            },
            Some(d) if d.is_ascii_digit() => {
                let one = (d - b'0') as usize;
                let two = bytes
                    .get(i + 2)
                    .filter(|next| next.is_ascii_digit())
                    .map(|next| one * 10 + (next - b'0') as usize);
                match two {
                    Some(n) if n >= 1 && n <= groups => {
                        group(&mut pieces, &mut text, Some(n));
                        i += 3;
                    }
                    _ if one >= 1 && one <= groups => {
                        group(&mut pieces, &mut text, Some(one));
                        i += 2;
                    }
                    _ => {
                        return Err(format!("${one} names no capture group of source ({groups} groups)"));
                    }
                }
            }
            _ => {
                text.push('$');
                i += 1;
            }
        }
    }
    group(&mut pieces, &mut text, None);
    Ok(Target(pieces))
}

mod replace;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests;
