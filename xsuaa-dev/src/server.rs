//! TLS listeners: rustls configs for `url` and the destination service
//! (server auth only) and `certurl` (optional client certificates rooted at
//! the dev CA), the accept loop and request dispatch.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::certs;
use crate::destination;
use crate::endpoints;
use crate::http::{self as resp, OAuthError, Resp};
use crate::state::{Listener, State};
use crate::token;
use crate::zone::{self, HostZone};

/// Token request bodies are tiny; the limit keeps a misbehaving client from
/// making the server buffer without bound.
const MAX_BODY_BYTES: usize = 64 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Failure to build a rustls server configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    #[error("invalid tls server configuration")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// TLS for `url` and the destination service: no client certificates
/// requested.
pub(crate) fn url_tls(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS for `certurl`: client certificates are verified against the dev CA
/// (so foreign-CA and expired certificates fail the handshake), but a client
/// without one is let through so the token endpoint can answer 401 in HTTP.
pub(crate) fn certurl_tls(
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections until the task is aborted. Connection tasks live in a
/// `JoinSet` owned by this future, so aborting the loop closes them all.
pub(crate) async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, state: Arc<State>, kind: Listener) {
    let acceptor = TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow forever.
        while connections.try_join_next().is_some() {}
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                tracing::warn!(%err, listener = kind.name(), "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%err, listener = kind.name(), "tls handshake failed");
                    return;
                }
            };
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|leaf| certs::fingerprint(leaf));
            if kind == Listener::CertUrl {
                state.count(|s| s.certurl_tls_handshakes += 1);
            }
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                let client_cert = client_cert.clone();
                async move { Ok::<_, Infallible>(dispatch(&state, kind, client_cert.as_deref(), req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%err, listener = kind.name(), "connection ended with error");
            }
        });
    }
}

async fn dispatch(state: &State, kind: Listener, client_cert: Option<&str>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query();
    if kind == Listener::Destination {
        return match parts.uri.path().strip_prefix(destination::FIND_PREFIX) {
            Some(name) if name.is_empty() || name.contains('/') => resp::not_found(),
            Some(name) if parts.method == Method::GET => destination::find(state, name, &parts.headers).await,
            Some(_) => resp::html(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "this endpoint does not support the request method",
            ),
            None => resp::not_found(),
        };
    }
    let host = zone::request_host(&parts);
    let zone = if state.multi_zone {
        match zone::of_host(&state.zones, kind, host.as_deref()) {
            HostZone::Zone(zone) => zone,
            HostZone::Domain => {
                return match (&parts.method, parts.uri.path()) {
                    (&Method::GET, "/token_keys") => endpoints::token_keys(state, None, query, &parts.headers),
                    _ => resp::not_found(),
                };
            }
            HostZone::Unknown => return unknown_zone(host.as_deref()),
        }
    } else {
        state.provider()
    };
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/oauth/authorize") => endpoints::authorize(state, zone, query),
        (&Method::POST, "/oauth/token") => {
            let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return OAuthError::invalid_request("request body unreadable or too large").into_response(),
            };
            let raw_host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| parts.uri.authority().map(|a| a.as_str()));
            token::token(state, zone, kind, raw_host, &parts.headers, &body, client_cert)
        }
        (&Method::GET, "/token_keys") => endpoints::token_keys(state, Some(zone), query, &parts.headers),
        (&Method::GET | &Method::POST, "/userinfo") => endpoints::userinfo(state, zone, &parts.headers),
        (&Method::GET, "/logout.do") => endpoints::logout(state, query),
        (&Method::GET, "/.well-known/openid-configuration") => endpoints::openid_configuration(zone),
        (&Method::GET, crate::security_settings::PATH) if kind == Listener::Url => {
            crate::security_settings::public(state, query)
        }
        (_, "/oauth/authorize" | "/oauth/token" | "/token_keys" | "/logout.do") => resp::html(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "this endpoint does not support the request method",
        ),
        _ => resp::not_found(),
    }
}

/// What XSUAA answers on the host of a subdomain that is no identity zone.
fn unknown_zone(host: Option<&str>) -> Resp {
    resp::json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "error": "not_found",
            "error_description": format!("no identity zone for host {}", host.unwrap_or("(none)")),
        }),
    )
}
