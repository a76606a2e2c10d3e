//! Hot paths of one proxied request, measured through the public API: loading the configuration,
//! route matching (first, middle, last route and a miss), path validation and the header policy.
//!
//! Run with `cargo bench --bench hot_paths`; each benchmark is kept short so the whole run stays
//! well under two minutes.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderMap, HeaderValue};
use http::Method;

use approuter::config::{Config, Env};
use approuter::proxy::headers::{self, Forwarding};
use approuter::routing;

/// How many routes the benchmark configuration has.
const ROUTES: usize = 30;

/// An xs-app.json with `ROUTES` public destination routes: a mix of plain, `target`-rewriting and
/// method-restricted routes, as large apps have them. No catch-all, so a miss walks every route.
fn xs_app_json() -> String {
    let mut routes = Vec::with_capacity(ROUTES);
    for index in 0..ROUTES {
        let route = match index % 3 {
            0 => format!(r#"{{"source":"^/api/service{index:02}/(.*)$","target":"/$1","destination":"backend"}}"#),
            1 => format!(
                r#"{{"source":"^/odata/v4/service{index:02}/(.*)$","httpMethods":["GET","POST"],"destination":"backend","csrfProtection":false}}"#
            ),
            _ => format!(
                r#"{{"source":{{"path":"^/ui/app{index:02}(/.*)?$","matchCase":false}},"destination":"backend"}}"#
            ),
        };
        routes.push(route);
    }
    format!(r#"{{"authenticationMethod":"none","routes":[{}]}}"#, routes.join(","))
}

fn env() -> Env {
    Env::from_pairs([
        ("PORT", "5000"),
        (
            "destinations",
            r#"[{"name":"backend","url":"http://127.0.0.1:8080/base"}]"#,
        ),
    ])
}

fn load_config() -> Config {
    let xs_app = xs_app_json();
    match Config::load(&xs_app, &env(), Path::new(env!("CARGO_MANIFEST_DIR"))) {
        Ok(config) => config,
        Err(errors) => panic!("benchmark configuration is invalid: {errors}"),
    }
}

/// A browser-like request after it has been parsed: cookies of the router and of the app, a
/// `Connection` header naming an extra hop-by-hop header, and forwarding headers from a load balancer.
fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pairs: &[(&str, &str)] = &[
        ("host", "app.example.test"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("referer", "https://app.example.test/ui/app02/index.html"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-csrf-token", "fetch"),
        ("sec-fetch-mode", "cors"),
        ("x-approuter-authorization", "Bearer must-not-pass"),
        (
            "cookie",
            "JSESSIONID=s%3A0123456789abcdef0123456789abcdef.sig; locale=en; \
             __VCAP_ID__=1b2c3d4e; theme=sap_horizon; _ga=GA1.1.123456789.1700000000",
        ),
    ];
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

fn config_load(c: &mut Criterion) {
    let xs_app = xs_app_json();
    let env = env();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    c.bench_function("config/load_30_routes", |b| {
        b.iter(|| Config::load(black_box(&xs_app), &env, dir).is_ok())
    });
}

fn match_route(c: &mut Criterion) {
    let config = load_config();
    let cases = [
        ("first", "/api/service00/entities?$top=10"),
        ("middle", "/odata/v4/service16/Orders(42)?$expand=items"),
        ("last", "/ui/app29/index.html"),
        ("miss", "/nowhere/at/all"),
        ("last_with_query", "/ui/app29/index.html?sap-language=EN"),
    ];
    let mut group = c.benchmark_group("routing/match_route");
    for (name, url) in cases {
        group.bench_function(name, |b| {
            b.iter(|| routing::match_route(&config, &Method::GET, black_box(url)).is_ok())
        });
    }
    group.finish();
}

fn validate_path(c: &mut Criterion) {
    let cases = [
        ("plain", "/odata/v4/service16/Orders/items/index.html"),
        ("encoded", "/ui/app02/some%20file%2Bname%252F.json"),
        ("traversal", "/ui/app02/%252e%252e/secret"),
    ];
    let mut group = c.benchmark_group("routing/validate_path");
    for (name, path) in cases {
        group.bench_function(name, |b| b.iter(|| routing::validate_path(black_box(path)).is_ok()));
    }
    group.finish();
}

fn normalize_path(c: &mut Criterion) {
    let cases = [
        ("plain", "/odata/v4/service16/Orders/items/index.html"),
        ("escaped", "/ui/app02/some%20file%2Bname.json"),
        ("merged", "//ui//app02/%61pp/index.html"),
    ];
    let mut group = c.benchmark_group("routing/normalize_path");
    for (name, path) in cases {
        group.bench_function(name, |b| {
            b.iter(|| routing::normalize_path(black_box(path), false).is_ok())
        });
    }
    group.finish();
}

fn header_policy(c: &mut Criterion) {
    let template = request_headers();
    let correlation_id = HeaderValue::from_static("3f2b8c9e-5d1a-4e7b-9c0d-1a2b3c4d5e6f");
    let host = template.get("host").cloned();
    let mut group = c.benchmark_group("proxy/headers");
    group.bench_function("upstream_request", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| {
                let forwarding = Forwarding {
                    peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                    scheme: "https",
                    host: host.clone(),
                    original_path: "/odata/v4/service16/Orders(42)",
                    set_x_forwarded: true,
                    correlation_id: &correlation_id,
                };
                headers::upstream_request(headers, &forwarding, headers::Policy::default());
            },
            BatchSize::SmallInput,
        )
    });
    // What the inline client runs: the policy with its added headers written as head lines.
    group.bench_function("upstream_request_apart", |b| {
        b.iter_batched_ref(
            || (template.clone(), Vec::with_capacity(512)),
            |(headers, head)| {
                let forwarding = Forwarding {
                    peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                    scheme: "https",
                    host: host.clone(),
                    original_path: "/odata/v4/service16/Orders(42)",
                    set_x_forwarded: true,
                    correlation_id: &correlation_id,
                };
                headers::upstream_request_apart(headers, &forwarding, headers::Policy::default()).write_to(head);
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("strip_cookies", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| headers::strip_cookies(headers, |name| name == b"JSESSIONID" || name == b"__VCAP_ID__"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = short();
    targets = config_load, match_route, validate_path, normalize_path, header_policy
}
criterion_main!(benches);
