//! The Destination-service client pieces against real servers: service tokens at the
//! development XSUAA over mutual TLS, and "find destination" against an HTTPS server on loopback
//! (status mapping, the one retry on a broken connection, the timeout, single flight).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use approuter::config::{self, Env, ServiceBinding, ServiceKind};
use approuter::destination::{DestinationCache, DestinationClient, DestinationError, FindRequest};
use approuter::idp::service_token::{ServiceTokenError, ServiceTokens};
use approuter::idp::Clock;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::idp::dev_xsuaa;
use support::pki::{server_config, TestCa};
use xsuaa_dev::DevXsuaa;

const TIMEOUT: Duration = Duration::from_secs(5);

fn roots_of(pem: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in approuter::tls::certificates(pem).expect("CA PEM") {
        roots.add(cert).expect("root");
    }
    Arc::new(roots)
}

/// A destination binding from `credentials`, found the way the router finds it.
fn binding(credentials: Value) -> ServiceBinding {
    let vcap = json!({"destination": [{"name": "dest", "label": "destination", "tags": ["destination"], "credentials": credentials}]});
    let env = Env::from_pairs([("VCAP_SERVICES", vcap.to_string())]);
    let mut errors = config::Error::default();
    let found = config::find_service(&env, ServiceKind::Destination, &mut errors);
    assert!(errors.is_empty(), "{errors}");
    found.expect("destination binding")
}

fn dev_binding(dev: &DevXsuaa, certificate: Option<&xsuaa_dev::ClientCert>) -> ServiceBinding {
    let mut credentials = match certificate {
        Some(certificate) => dev.credentials_with(certificate),
        None => dev.credentials(),
    };
    credentials["uri"] = json!("https://127.0.0.1:1");
    binding(credentials)
}

fn client_credentials_requests(dev: &DevXsuaa) -> u64 {
    dev.stats()
        .token_requests_by_grant
        .get("client_credentials")
        .copied()
        .unwrap_or(0)
}

// === service tokens ===

#[tokio::test]
async fn client_token_over_mtls_is_fetched_once_for_a_hundred_callers() {
    let dev = dev_xsuaa().await;
    let tokens =
        Arc::new(ServiceTokens::new(&dev_binding(&dev, None), roots_of(&dev.ca_pem()), TIMEOUT).expect("client"));
    let mut callers = Vec::new();
    for _ in 0..100 {
        let tokens = tokens.clone();
        callers.push(tokio::spawn(async move { tokens.client_token().await }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for caller in callers {
        let token = caller.await.expect("joined").expect("token");
        seen.insert(token.access_token.to_string());
    }
    assert_eq!(seen.len(), 1, "every caller got the one token");
    assert_eq!(client_credentials_requests(&dev), 1);
    assert_eq!(dev.stats().certurl_tls_handshakes, 1);
    let again = tokens.client_token().await.expect("cached");
    assert!(seen.contains(&*again.access_token));
    assert_eq!(client_credentials_requests(&dev), 1, "served from the cache");
}

#[tokio::test]
async fn a_certificate_the_token_endpoint_does_not_trust_is_refused() {
    let dev = dev_xsuaa().await;
    let foreign = dev.foreign_client_cert();
    let tokens =
        ServiceTokens::new(&dev_binding(&dev, Some(&foreign)), roots_of(&dev.ca_pem()), TIMEOUT).expect("client");
    let error = tokens.client_token().await.expect_err("refused");
    assert!(matches!(error, ServiceTokenError::Request(_)), "{error:?}");
    assert_eq!(client_credentials_requests(&dev), 0);
}

// === a loopback HTTPS server ===

/// What the server does with a request.
#[derive(Clone)]
enum Answer {
    Json(StatusCode, Value),
    /// Close the connection without an answer.
    Close,
    /// Never answer.
    Hang,
}

struct Server {
    addr: SocketAddr,
    ca: TestCa,
    requests: Arc<Mutex<Vec<http::request::Parts>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
}

/// An HTTPS server on 127.0.0.1 whose `n`-th request (from 0) gets `answer(n)`.
async fn serve(answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Server {
    let ca = TestCa::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&ca, &[b"http/1.1"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let (requests_in, bodies_in, count_in) = (requests.clone(), bodies.clone(), count.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            let (requests, bodies, count) = (requests_in.clone(), bodies_in.clone(), count_in.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (answer, requests, bodies, count) =
                        (answer.clone(), requests.clone(), bodies.clone(), count.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        requests.lock().expect("lock").push(parts);
                        bodies
                            .lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&body).into_owned());
                        match answer(n) {
                            Answer::Json(status, value) => {
                                let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
                                *response.status_mut() = status;
                                Ok(response)
                            }
                            Answer::Close => Err("closed on purpose"),
                            Answer::Hang => std::future::pending().await,
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        ca,
        requests,
        bodies,
        count,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        Arc::new(self.ca.roots())
    }

    fn binding(&self) -> ServiceBinding {
        binding(json!({"clientid": "sb-dest", "clientsecret": "s3cret", "url": self.url(), "uri": self.url()}))
    }
}

fn token_answer(token: &str) -> Answer {
    Answer::Json(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}),
    )
}

#[tokio::test]
async fn user_tokens_are_exchanged_once_per_user_token() {
    let server = serve(|n| token_answer(&format!("exchanged-{n}"))).await;
    let tokens = Arc::new(ServiceTokens::new(&server.binding(), server.roots(), TIMEOUT).expect("client"));
    let mut callers = Vec::new();
    for i in 0..100 {
        let tokens = tokens.clone();
        let user = if i % 2 == 0 { "alice-jwt" } else { "bob-jwt" };
        callers.push(tokio::spawn(async move { (user, tokens.user_token(user).await) }));
    }
    let mut by_user: HashMap<&str, std::collections::BTreeSet<String>> = HashMap::new();
    for caller in callers {
        let (user, token) = caller.await.expect("joined");
        by_user
            .entry(user)
            .or_default()
            .insert(token.expect("token").access_token.to_string());
    }
    assert_eq!(server.count.load(Ordering::SeqCst), 2, "one exchange per user token");
    assert_eq!(by_user["alice-jwt"].len(), 1);
    assert_ne!(by_user["alice-jwt"], by_user["bob-jwt"], "users never share a token");
    let bodies = server.bodies.lock().expect("lock").clone();
    for body in &bodies {
        let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
        assert_eq!(form["client_id"], "sb-dest");
        assert_eq!(form["client_secret"], "s3cret", "secret bindings send the secret");
        assert!(form["assertion"] == "alice-jwt" || form["assertion"] == "bob-jwt");
    }
    let path = server.requests.lock().expect("lock")[0].uri.path().to_string();
    assert_eq!(path, "/oauth/token");
}

#[tokio::test]
async fn a_success_without_token_fields_is_an_error() {
    let server = serve(|n| match n {
        0 => Answer::Json(StatusCode::OK, json!({"token_type": "bearer", "expires_in": 60})),
        1 => Answer::Json(StatusCode::OK, json!({"access_token": "a"})),
        _ => Answer::Json(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"})),
    })
    .await;
    let tokens = ServiceTokens::new(&server.binding(), server.roots(), TIMEOUT).expect("client");
    let error = tokens.client_token().await.expect_err("no access_token");
    assert!(matches!(error, ServiceTokenError::MissingAccessToken), "{error:?}");
    let error = tokens.client_token().await.expect_err("no expires_in");
    assert!(matches!(error, ServiceTokenError::MissingExpiresIn), "{error:?}");
    let error = tokens.client_token().await.expect_err("refused");
    assert_eq!(error.refused_status(), Some(StatusCode::UNAUTHORIZED));
}

// === find destination ===

fn destination_answer() -> Value {
    json!({
        "owner": {"SubaccountId": "s", "InstanceId": null},
        "destinationConfiguration": {"Name": "erp", "Type": "HTTP", "URL": "https://erp.example.org",
            "Authentication": "OAuth2ClientCredentials", "ProxyType": "Internet"},
        "authTokens": [{"type": "Bearer", "value": "t", "expires_in": "3599",
            "http_header": {"key": "Authorization", "value": "Bearer t"}}]
    })
}

fn find_request(name: &str) -> FindRequest<'_> {
    FindRequest {
        name,
        token: "service-token",
        correlation_id: "corr-1",
        user_token: Some("user-jwt"),
    }
}

#[tokio::test]
async fn find_sends_the_documented_request_and_reads_the_answer() {
    let server = serve(|_| Answer::Json(StatusCode::OK, destination_answer())).await;
    let client = DestinationClient::new(&server.binding(), server.roots(), TIMEOUT, false).expect("client");
    let found = client.find(find_request("erp prod/1")).await.expect("destination");
    assert_eq!(found.url.as_str(), "https://erp.example.org/");
    let requests = server.requests.lock().expect("lock");
    let request = &requests[0];
    assert_eq!(request.method, http::Method::GET);
    assert_eq!(
        request.uri.path(),
        "/destination-configuration/v1/destinations/erp%20prod%2F1"
    );
    assert_eq!(request.headers["authorization"], "Bearer service-token");
    assert_eq!(request.headers["x-correlationid"], "corr-1");
    assert_eq!(request.headers["x-user-token"], "user-jwt");
}

#[tokio::test]
async fn each_status_of_the_service_is_its_own_error() {
    let statuses = [401u16, 403, 404, 500, 503, 418];
    let server = serve(move |n| Answer::Json(StatusCode::from_u16(statuses[n]).expect("status"), json!({}))).await;
    let client = DestinationClient::new(&server.binding(), server.roots(), TIMEOUT, false).expect("client");
    let mut kinds = Vec::new();
    for _ in statuses {
        let error = client.find(find_request("erp")).await.expect_err("status");
        kinds.push(match error {
            DestinationError::Unauthorized { .. } => "unauthorized".to_string(),
            DestinationError::Forbidden { .. } => "forbidden".into(),
            DestinationError::NotFound { .. } => "not found".into(),
            DestinationError::ServiceFailed { status, .. } => format!("failed {}", status.as_u16()),
            DestinationError::UnexpectedStatus { status, .. } => format!("unexpected {}", status.as_u16()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        kinds,
        [
            "unauthorized",
            "forbidden",
            "not found",
            "failed 500",
            "failed 503",
            "unexpected 418"
        ]
    );
}

#[tokio::test]
async fn a_broken_connection_is_retried_once() {
    let server = serve(|n| match n {
        0 => Answer::Close,
        _ => Answer::Json(StatusCode::OK, destination_answer()),
    })
    .await;
    let client = DestinationClient::new(&server.binding(), server.roots(), TIMEOUT, false).expect("client");
    client.find(find_request("erp")).await.expect("found on the retry");
    assert_eq!(server.count.load(Ordering::SeqCst), 2);

    let server = serve(|_| Answer::Close).await;
    let client = DestinationClient::new(&server.binding(), server.roots(), TIMEOUT, false).expect("client");
    let error = client.find(find_request("erp")).await.expect_err("broken twice");
    assert!(matches!(error, DestinationError::Unreachable { .. }), "{error:?}");
    assert_eq!(server.count.load(Ordering::SeqCst), 2, "one retry, not more");
}

#[tokio::test]
async fn a_service_that_does_not_answer_times_out() {
    let server = serve(|_| Answer::Hang).await;
    let timeout = Duration::from_millis(300);
    let client = DestinationClient::new(&server.binding(), server.roots(), timeout, false).expect("client");
    let error = client.find(find_request("erp")).await.expect_err("timeout");
    assert!(
        matches!(error, DestinationError::Timeout { timeout: t, .. } if t == timeout),
        "{error:?}"
    );
    assert_eq!(server.count.load(Ordering::SeqCst), 1, "a timeout is not retried");
}

#[tokio::test]
async fn the_cache_finds_once_for_a_hundred_requests_and_keeps_users_apart() {
    let server = serve(|_| Answer::Json(StatusCode::OK, destination_answer())).await;
    let client = Arc::new(DestinationClient::new(&server.binding(), server.roots(), TIMEOUT, false).expect("client"));
    let cache = Arc::new(DestinationCache::new(100, Duration::from_secs(300), Clock::System));
    let mut callers = Vec::new();
    for i in 0..100 {
        let (client, cache) = (client.clone(), cache.clone());
        let user = if i % 2 == 0 { Some("alice-jwt") } else { None };
        callers.push(tokio::spawn(async move {
            cache
                .get_or_find(None, user, "erp", || async {
                    let mut request = find_request("erp");
                    request.user_token = user;
                    client.find(request).await
                })
                .await
        }));
    }
    for caller in callers {
        caller.await.expect("joined").expect("destination");
    }
    assert_eq!(server.count.load(Ordering::SeqCst), 2, "one find per (user, name)");
    assert_eq!(cache.len(), 2);
    let with_user = server
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|request| request.headers.contains_key("x-user-token"))
        .count();
    assert_eq!(with_user, 1);
}
