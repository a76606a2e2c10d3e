//! A real HTTP backend on `127.0.0.1:0` that records what it received and answers by path:
//! - `/status/NNN`: that status;
//! - `/hang`: never answers (for timeouts);
//! - `/bytes/N`: N bytes, streamed in 64 KiB chunks;
//! - `/count`: reads the whole request body and answers its length;
//! - `/cookie`: sets a session cookie and a persistent cookie;
//! - `/csp`: answers with `Content-Security-Policy: default-src 'self'`;
//! - `/text/N`: N bytes of compressible text with `Content-Type: text/plain`;
//! - anything else: 200 with a JSON echo of method, path and headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    /// The DER of the client certificate the TLS connection presented, if any.
    pub client_certificate: Option<Vec<u8>>,
}

/// A running backend.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    seen_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Seen>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections the backend has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits for the next request the backend receives.
    pub async fn next(&self) -> Seen {
        self.seen_rx.lock().await.recv().await.expect("backend running")
    }

    /// Waits (at most 10 s) for a request for which `matches` is true, seen earlier or later.
    pub async fn next_matching(&self, matches: impl Fn(&Seen) -> bool) -> Seen {
        let wait = async {
            loop {
                let seen = self.next().await;
                if matches(&seen) {
                    return seen;
                }
            }
        };
        if let Some(seen) = self.seen().into_iter().find(|seen| matches(seen)) {
            return seen;
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .expect("the backend got the expected request within 10 s")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a backend.
pub async fn backend() -> Backend {
    start(None).await
}

/// Starts a backend that speaks TLS with `config` (and HTTP/2 where its ALPN offers `h2`).
pub async fn tls_backend(config: Arc<rustls::ServerConfig>) -> Backend {
    start(Some(tokio_rustls::TlsAcceptor::from(config))).await
}

async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let record = seen.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let record = record.clone();
            let seen_tx = seen_tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => tokio_util::either::Either::Left(stream),
                        Err(_) => return,
                    },
                    None => tokio_util::either::Either::Right(stream),
                };
                let client_certificate = match &stream {
                    tokio_util::either::Either::Left(tls) => tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| leaf.to_vec()),
                    tokio_util::either::Either::Right(_) => None,
                };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let entry = Seen {
                        method: request.method().to_string(),
                        uri: request.uri().to_string(),
                        version: request.version(),
                        headers: request.headers().clone(),
                        client_certificate: client_certificate.clone(),
                    };
                    record.lock().expect("lock").push(entry.clone());
                    let _ = seen_tx.send(entry);
                    answer(request)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        seen,
        seen_rx: tokio::sync::Mutex::new(seen_rx),
        connections,
        task,
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let path = request.uri().path().to_string();
    if let Some((_, code)) = path.rsplit_once("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = Response::new(full(format!("status {code}")));
        *response.status_mut() = status;
        return Ok(response);
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if let Some(count) = path.strip_prefix("/bytes/") {
        let total: u64 = count.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(0..n as usize))), left - n))
            }
        });
        let mut response = Response::new(StreamBody::new(stream).boxed());
        response
            .headers_mut()
            .insert("content-type", "application/octet-stream".parse().unwrap());
        return Ok(response);
    }
    if let Some(count) = path.strip_prefix("/text/") {
        let total: usize = count.parse().unwrap_or(0);
        let text = "lorem ipsum dolor sit amet ".repeat(total / 27 + 1);
        let mut response = Response::new(full(text[..total].to_string()));
        response
            .headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        return Ok(response);
    }
    if path == "/count" {
        let mut body = request.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        return Ok(Response::new(full(total.to_string())));
    }
    if path == "/csp" {
        let mut response = Response::new(full("with a policy"));
        response
            .headers_mut()
            .insert("content-security-policy", "default-src 'self'".parse().unwrap());
        return Ok(response);
    }
    if path == "/cookie" {
        let mut response = Response::new(full("cookies"));
        response
            .headers_mut()
            .append("set-cookie", "BSESSION=backend-session-1; Path=/".parse().unwrap());
        response.headers_mut().append(
            "set-cookie",
            "BPERSIST=persist-1; Max-Age=3600; Path=/".parse().unwrap(),
        );
        return Ok(response);
    }
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                serde_json::Value::String(value.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let echo = serde_json::json!({
        "method": request.method().as_str(),
        "path": request.uri().to_string(),
        "headers": headers,
    });
    let mut response = Response::new(full(echo.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

fn full(text: impl Into<Bytes>) -> BoxBody {
    Full::new(text.into()).boxed()
}
