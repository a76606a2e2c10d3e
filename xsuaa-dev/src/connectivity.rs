//! The development connectivity proxy: a plain-HTTP forward proxy that
//! admits tokens of the connectivity client only and forwards absolute-form
//! requests, websocket upgrades included, to the system a virtual host maps to.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_TYPE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::config::ServiceKind;
use crate::state::State;
use crate::util::lock;

/// How many requests [`crate::DevXsuaa::connectivity_requests`] keeps; older
/// ones are dropped so a long-running local stack does not grow without bound.
pub(crate) const MAX_RECORDS: usize = 1000;

/// Hop-by-hop headers (RFC 9110 section 7.6.1) without an `http` constant;
/// `remove_hop_by_hop` drops them with the standard ones and those that
/// `Connection` names.
const HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];

/// A request the connectivity proxy received, as
/// [`crate::DevXsuaa::connectivity_requests`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRecord {
    /// The request method.
    pub method: String,
    /// The request target as received (absolute form when well formed).
    pub target: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// `cid` of the `Proxy-Authorization` token; `None` when refused.
    pub cid: Option<String>,
    /// `zid` of the `Proxy-Authorization` token; `None` when refused.
    pub zid: Option<String>,
    /// Every `SAP-Connectivity-*` header, by lower-cased name.
    pub sap_headers: BTreeMap<String, String>,
    /// The status the proxy answered (the backend's, when forwarded).
    pub status: StatusCode,
}

/// The requests received, oldest first, at most [`MAX_RECORDS`].
pub(crate) type Records = Mutex<VecDeque<ProxyRecord>>;

type ProxyBody = Either<Full<Bytes>, Incoming>;

/// Backend connections and websocket tunnels of one client connection: they
/// belong to it, so stopping the server (which drops the connection tasks)
/// ends them too.
type Tasks = Arc<Mutex<JoinSet<()>>>;

/// Accepts plain-TCP connections until the task is aborted; like the TLS
/// listeners, the connection tasks live in a `JoinSet` owned by this future.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                tracing::warn!(%err, listener = "connectivity", "accept failed");
                continue;
            }
        };
        connections.spawn(connection(tcp, Arc::clone(&state)));
    }
}

async fn connection(tcp: TcpStream, state: Arc<State>) {
    let tasks: Tasks = Arc::default();
    let service = {
        let tasks = Arc::clone(&tasks);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            let tasks = Arc::clone(&tasks);
            async move { Ok::<_, Infallible>(handle(&state, &tasks, req).await) }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        tracing::debug!(%err, listener = "connectivity", "connection ended with error");
    }
    // A websocket tunnel outlives the HTTP connection it was upgraded from.
    let mut tasks = std::mem::take(&mut *lock(&tasks));
    while tasks.join_next().await.is_some() {}
}

async fn handle(state: &State, tasks: &Tasks, req: Request<Incoming>) -> Response<ProxyBody> {
    let mut record = ProxyRecord {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        host: req.headers().get(HOST).map(lossy),
        cid: None,
        zid: None,
        sap_headers: req
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("sap-connectivity-"))
            .map(|(name, value)| (name.as_str().to_string(), lossy(value)))
            .collect(),
        status: StatusCode::OK,
    };
    let response = route(state, tasks, req, &mut record).await;
    record.status = response.status();
    if record.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        state.count(|s| s.connectivity_requests_refused += 1);
    }
    let mut records = lock(&state.proxy_records);
    if records.len() >= MAX_RECORDS {
        records.pop_front();
    }
    records.push_back(record);
    response
}

async fn route(state: &State, tasks: &Tasks, req: Request<Incoming>, record: &mut ProxyRecord) -> Response<ProxyBody> {
    let Some(claims) = proxy_token(state, req.headers()) else {
        let mut refused = text(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "a connectivity token is required",
        );
        refused
            .headers_mut()
            .insert(PROXY_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    };
    record.cid = claims["cid"].as_str().map(str::to_string);
    record.zid = claims["zid"].as_str().map(str::to_string);

    if req.method() == Method::CONNECT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
    }
    let uri = req.uri();
    match uri.scheme_str() {
        Some("http") => {}
        // The Cloud Connector speaks TLS to the system itself; callers send http.
        Some("https") => return text(StatusCode::METHOD_NOT_ALLOWED, "https is not supported, use http"),
        Some(_) => return text(StatusCode::BAD_REQUEST, "only http targets are supported"),
        None => return text(StatusCode::BAD_REQUEST, "the request target must be in absolute form"),
    }
    let Some(authority) = uri.authority() else {
        return text(StatusCode::BAD_REQUEST, "the request target has no host");
    };
    let virtual_host = format!(
        "{}:{}",
        authority.host().to_ascii_lowercase(),
        authority.port_u16().unwrap_or(80)
    );
    let Some(system) = lock(&state.virtual_hosts).get(&virtual_host).cloned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no system mapped for {virtual_host}"),
        );
    };
    forward(tasks, req, &system).await
}

/// The claims of a `Proxy-Authorization: Bearer` token this XSUAA issued to
/// the connectivity client in any zone, valid now.
fn proxy_token(state: &State, headers: &HeaderMap) -> Option<Value> {
    let client_id = &state.service_clients.get(&ServiceKind::Connectivity)?.client_id;
    let (scheme, token) = headers.get(PROXY_AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (_, claims) = state.verify_any(token.trim())?;
    (claims["cid"].as_str() == Some(client_id.as_str())).then_some(claims)
}

async fn forward(tasks: &Tasks, mut req: Request<Incoming>, system: &str) -> Response<ProxyBody> {
    let websocket = is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, host);
        }
    }
    let upgrade = parts.headers.get(UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    // The system must not see the proxy's credentials or routing headers.
    parts.headers.remove(PROXY_AUTHORIZATION);
    let sap: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("sap-connectivity-"))
        .cloned()
        .collect();
    for name in sap {
        parts.headers.remove(name);
    }
    if let (true, Some(upgrade)) = (websocket, upgrade) {
        parts.headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, upgrade);
    }
    let origin_form = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match origin_form.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, "the request target is not valid"),
    };
    parts.version = Version::HTTP_11;

    let unreachable = || {
        text(
            StatusCode::BAD_GATEWAY,
            &format!("the system at {system} is not reachable"),
        )
    };
    let Ok(tcp) = TcpStream::connect(system).await else {
        return unreachable();
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(tcp)).await else {
        return unreachable();
    };
    spawn(tasks, async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "connection to the system ended with error");
        }
    });
    let mut response = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(%err, "forwarding to the system failed");
            return unreachable();
        }
    };
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (response.status(), client_upgrade) {
        let system_upgrade = hyper::upgrade::on(&mut response);
        spawn(tasks, tunnel(client_upgrade, system_upgrade));
        return response.map(|_| Either::Left(Full::default()));
    }
    remove_hop_by_hop(response.headers_mut());
    response.map(Either::Right)
}

/// Copies bytes both ways between the upgraded client and system
/// connections until both sides are done.
async fn tunnel(client: OnUpgrade, system: OnUpgrade) {
    let (client, system) = match tokio::join!(client, system) {
        (Ok(client), Ok(system)) => (client, system),
        (Err(err), _) | (_, Err(err)) => {
            tracing::debug!(%err, "websocket upgrade failed");
            return;
        }
    };
    let (mut client, mut system) = (TokioIo::new(client), TokioIo::new(system));
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut system).await {
        tracing::debug!(%err, "websocket tunnel ended with error");
    }
}

fn spawn(tasks: &Tasks, task: impl std::future::Future<Output = ()> + Send + 'static) {
    let mut tasks = lock(tasks);
    while tasks.try_join_next().is_some() {}
    tasks.spawn(task);
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket")
}

/// Removes the hop-by-hop headers: the fixed ones and those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, PROXY_AUTHENTICATE] {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
    response
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}
