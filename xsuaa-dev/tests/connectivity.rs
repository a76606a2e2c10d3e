//! The development connectivity proxy: who may use it, which request forms
//! it refuses, and what a system behind a virtual host receives.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::{cert_of, mtls_client, post_token};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use xsuaa_dev::{DevXsuaa, ServiceKind};

const VHOST: &str = "erp.internal:44300";

/// What the system behind the proxy received.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A system on loopback that reports every request and answers with a
/// fixed body; a websocket upgrade is answered 101 and echoes bytes.
async fn system() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let seen_tx = seen_tx.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let seen_tx = seen_tx.clone();
                async move { Ok::<_, Infallible>(answer(req, &seen_tx).await) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen_rx)
}

async fn answer(mut req: Request<Incoming>, seen_tx: &mpsc::UnboundedSender<Seen>) -> Response<Full<Bytes>> {
    let upgrade = req.headers().get("upgrade").is_some();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let _ = seen_tx.send(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    if upgrade {
        tokio::spawn(async move {
            let mut io = TokioIo::new(on_upgrade.await.unwrap());
            let mut buf = [0u8; 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => io.write_all(&buf[..n]).await.unwrap(),
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(Full::default())
            .unwrap();
    }
    Response::builder()
        .header("x-system", "erp")
        .header("connection", "x-secret")
        .header("x-secret", "hop")
        .body(Full::new(Bytes::from_static(b"from the system")))
        .unwrap()
}

async fn token(xsuaa: &DevXsuaa, kind: ServiceKind) -> String {
    let cert = cert_of(&xsuaa.service_credentials(kind).unwrap());
    let client_id = xsuaa.service_client_id(kind);
    let form = [("grant_type", "client_credentials"), ("client_id", client_id.as_str())];
    let (status, body) = post_token(&mtls_client(xsuaa, &cert), &xsuaa.cert_url(), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// One HTTP/1.1 answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A raw client connection to the proxy: requests are written as text, so
/// the request line is exactly what the test says.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(xsuaa: &DevXsuaa) -> Self {
        let tcp = TcpStream::connect(xsuaa.connectivity_proxy_addr()).await.unwrap();
        Self {
            stream: BufReader::new(tcp),
        }
    }

    /// Sends `head` (request line and headers, no blank line) and `body`,
    /// then reads the answer.
    async fn send(&mut self, head: &str, body: &str) -> Answer {
        let request = if body.is_empty() {
            format!("{head}\r\n\r\n")
        } else {
            format!("{head}\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        };
        self.stream.get_mut().write_all(request.as_bytes()).await.unwrap();
        self.read().await
    }

    async fn read(&mut self) -> Answer {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        }
        let length = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

#[tokio::test]
async fn refuses_requests_without_a_connectivity_token() {
    let (system_addr, mut seen) = system().await;
    let xsuaa = DevXsuaa::builder()
        .virtual_host(VHOST, system_addr)
        .start()
        .await
        .unwrap();
    let connectivity = token(&xsuaa, ServiceKind::Connectivity).await;
    let destination = token(&xsuaa, ServiceKind::Destination).await;
    let mut expired = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&connectivity)
        .unwrap()
        .claims;
    expired["iat"] = json!(1_000);
    expired["exp"] = json!(2_000);
    let expired = xsuaa.mint_token(expired);
    let other = DevXsuaa::builder().start().await.unwrap();
    let other = token(&other, ServiceKind::Connectivity).await;

    let mut client = Client::connect(&xsuaa).await;
    let cases = [
        ("no token", String::new()),
        ("the destination client's token", format!("Bearer {destination}")),
        ("an expired token", format!("Bearer {expired}")),
        ("another XSUAA's token", format!("Bearer {other}")),
        ("not a jwt", "Bearer abc".to_string()),
        ("another scheme", format!("Basic {connectivity}")),
    ];
    for (case, authorization) in &cases {
        let mut head = format!("GET http://{VHOST}/x HTTP/1.1\r\nhost: {VHOST}");
        if !authorization.is_empty() {
            head.push_str(&format!("\r\nproxy-authorization: {authorization}"));
        }
        let answer = client.send(&head, "").await;
        assert_eq!(answer.status, 407, "{case}");
        assert_eq!(answer.headers["proxy-authenticate"], "Bearer", "{case}");
    }
    let records = xsuaa.connectivity_requests();
    assert_eq!(records.len(), cases.len());
    for record in &records {
        assert_eq!(record.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!((record.cid.as_deref(), record.zid.as_deref()), (None, None));
    }
    assert_eq!(xsuaa.stats().connectivity_requests_refused, cases.len() as u64);

    // The same connection with the connectivity client's token gets through.
    let answer = client
        .send(
            &format!("GET http://{VHOST}/x HTTP/1.1\r\nhost: {VHOST}\r\nproxy-authorization: Bearer {connectivity}"),
            "",
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(seen.recv().await.unwrap().target, "/x");
    assert!(seen.try_recv().is_err(), "a refused request reached the system");
}

#[tokio::test]
async fn refuses_https_connect_origin_form_and_unmapped_hosts() {
    let (system_addr, mut seen) = system().await;
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let auth = format!(
        "proxy-authorization: Bearer {}",
        token(&xsuaa, ServiceKind::Connectivity).await
    );
    let mut client = Client::connect(&xsuaa).await;
    for (case, head, status, body) in [
        (
            "https",
            format!("GET https://{VHOST}/x HTTP/1.1\r\nhost: {VHOST}\r\n{auth}"),
            405,
            "https is not supported, use http",
        ),
        (
            "unmapped",
            format!("GET http://{VHOST}/x HTTP/1.1\r\nhost: {VHOST}\r\n{auth}"),
            503,
            "no system mapped for erp.internal:44300",
        ),
        (
            "origin form",
            format!("GET /x HTTP/1.1\r\nhost: {VHOST}\r\n{auth}"),
            400,
            "the request target must be in absolute form",
        ),
        (
            "connect",
            format!("CONNECT {VHOST} HTTP/1.1\r\nhost: {VHOST}\r\n{auth}"),
            405,
            "CONNECT is not supported",
        ),
    ] {
        let answer = client.send(&head, "").await;
        assert_eq!((answer.status, answer.body.as_str()), (status, body), "{case}");
    }
    // A mapping made while the proxy runs applies at once; the host compares
    // case-insensitively and the port defaults to 80.
    let mut client = Client::connect(&xsuaa).await;
    xsuaa.set_virtual_host("ERP.internal:44300", system_addr);
    xsuaa.set_virtual_host("plain.internal:80", system_addr);
    for target in [format!("http://{VHOST}/y"), "http://Plain.Internal/z".to_string()] {
        let answer = client.send(&format!("GET {target} HTTP/1.1\r\n{auth}"), "").await;
        assert_eq!(answer.status, 200, "{target}");
    }
    assert_eq!(seen.recv().await.unwrap().target, "/y");
    let plain = seen.recv().await.unwrap();
    assert_eq!(plain.target, "/z");
    // Without a Host header the target's authority becomes the Host.
    assert_eq!(plain.headers["host"], "Plain.Internal");
    xsuaa.remove_virtual_host(VHOST);
    let answer = client
        .send(&format!("GET http://{VHOST}/y HTTP/1.1\r\n{auth}"), "")
        .await;
    assert_eq!(answer.status, 503);
    // A system that hangs up without answering is a bad gateway.
    let hang_up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    xsuaa.set_virtual_host("gone.internal:80", hang_up.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = hang_up.accept().await {
            drop(tcp);
        }
    });
    let answer = client
        .send(&format!("GET http://gone.internal/ HTTP/1.1\r\n{auth}"), "")
        .await;
    assert_eq!(answer.status, 502);
    let statuses: Vec<u16> = xsuaa
        .connectivity_requests()
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(statuses, [405, 503, 400, 405, 200, 200, 503, 502]);
    assert_eq!(xsuaa.stats().connectivity_requests_refused, 0);
}

#[tokio::test]
async fn forwards_in_origin_form_without_the_proxy_headers() {
    let (system_addr, mut seen) = system().await;
    let xsuaa = DevXsuaa::builder()
        .virtual_host(VHOST, system_addr)
        .start()
        .await
        .unwrap();
    let connectivity = token(&xsuaa, ServiceKind::Connectivity).await;
    let mut client = Client::connect(&xsuaa).await;
    let head = format!(
        "GET http://{VHOST}/sap/opu/odata/Items?$top=5&x=a%20b HTTP/1.1\r\n\
         host: {VHOST}\r\n\
         proxy-authorization: Bearer {connectivity}\r\n\
         SAP-Connectivity-SCC-Location_ID: loc1\r\n\
         SAP-Connectivity-Authentication: Bearer user-token\r\n\
         SAP-Connectivity-Technical-Authentication: Bearer tech-token\r\n\
         proxy-connection: keep-alive\r\n\
         connection: keep-alive, x-hop\r\n\
         x-hop: dropped\r\n\
         x-correlationid: c-1"
    );
    let answer = client.send(&head, "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "from the system");
    assert_eq!(answer.headers["x-system"], "erp");
    assert!(!answer.headers.contains_key("x-secret"), "{:?}", answer.headers);

    let get = seen.recv().await.unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(get.target, "/sap/opu/odata/Items?$top=5&x=a%20b");
    assert_eq!(get.headers["host"], VHOST);
    assert_eq!(get.headers["x-correlationid"], "c-1");
    for name in get.headers.keys() {
        let name = name.as_str();
        assert!(
            !name.starts_with("sap-connectivity-")
                && !["proxy-authorization", "proxy-connection", "x-hop"].contains(&name),
            "the system saw {name}"
        );
    }

    // The same connection carries a POST whose body reaches the system, and
    // a chunked one.
    let head =
        format!("POST http://{VHOST}/items HTTP/1.1\r\nhost: {VHOST}\r\nproxy-authorization: Bearer {connectivity}");
    let answer = client.send(&head, r#"{"id":1}"#).await;
    assert_eq!(answer.status, 200);
    let post = seen.recv().await.unwrap();
    assert_eq!((post.method.as_str(), post.target.as_str()), ("POST", "/items"));
    assert_eq!(post.body, r#"{"id":1}"#);
    let chunked = format!("{head}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    client.stream.get_mut().write_all(chunked.as_bytes()).await.unwrap();
    assert_eq!(client.read().await.status, 200);
    assert_eq!(seen.recv().await.unwrap().body, "hello world");

    let records = xsuaa.connectivity_requests();
    assert_eq!(records.len(), 3);
    let first = &records[0];
    assert_eq!(first.method, "GET");
    assert_eq!(
        first.target,
        format!("http://{VHOST}/sap/opu/odata/Items?$top=5&x=a%20b")
    );
    assert_eq!(first.host.as_deref(), Some(VHOST));
    assert_eq!(
        first.cid.as_deref(),
        Some(xsuaa.service_client_id(ServiceKind::Connectivity).as_str())
    );
    assert_eq!(first.zid.as_deref(), Some(xsuaa.zone_id().as_str()));
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.sap_headers,
        BTreeMap::from([
            (
                "sap-connectivity-authentication".to_string(),
                "Bearer user-token".to_string()
            ),
            ("sap-connectivity-scc-location_id".to_string(), "loc1".to_string()),
            (
                "sap-connectivity-technical-authentication".to_string(),
                "Bearer tech-token".to_string()
            ),
        ])
    );
    assert!(records[1].sap_headers.is_empty());
}

#[tokio::test]
async fn relays_websocket_upgrades() {
    let (system_addr, mut seen) = system().await;
    let xsuaa = DevXsuaa::builder()
        .virtual_host(VHOST, system_addr)
        .start()
        .await
        .unwrap();
    let connectivity = token(&xsuaa, ServiceKind::Connectivity).await;
    let mut client = Client::connect(&xsuaa).await;
    let head = format!(
        "GET http://{VHOST}/ws?room=1 HTTP/1.1\r\n\
         host: {VHOST}\r\n\
         proxy-authorization: Bearer {connectivity}\r\n\
         connection: Upgrade\r\n\
         upgrade: websocket\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-version: 13"
    );
    let answer = client.send(&head, "").await;
    assert_eq!(answer.status, 101);
    assert_eq!(answer.headers["upgrade"], "websocket");
    assert_eq!(answer.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let upgrade = seen.recv().await.unwrap();
    assert_eq!(upgrade.target, "/ws?room=1");
    assert_eq!(upgrade.headers["upgrade"], "websocket");
    assert_eq!(upgrade.headers["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(upgrade.headers.get("proxy-authorization").is_none());

    for message in ["hello", "through the tunnel"] {
        client.stream.get_mut().write_all(message.as_bytes()).await.unwrap();
        let mut echo = vec![0; message.len()];
        client.stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, message.as_bytes());
    }
    assert_eq!(xsuaa.connectivity_requests()[0].status, StatusCode::SWITCHING_PROTOCOLS);
}

#[tokio::test]
async fn the_binding_names_the_proxy_and_records_are_bounded() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let addr = xsuaa.connectivity_proxy_addr();
    let credentials = xsuaa.service_credentials(ServiceKind::Connectivity).unwrap();
    assert_eq!(credentials["onpremise_proxy_host"], addr.ip().to_string());
    for field in ["onpremise_proxy_http_port", "onpremise_proxy_port"] {
        assert_eq!(credentials[field], addr.port().to_string(), "{field}");
    }

    let mut client = Client::connect(&xsuaa).await;
    for n in 0..1005 {
        let answer = client.send(&format!("GET http://{VHOST}/{n} HTTP/1.1"), "").await;
        assert_eq!(answer.status, 407);
    }
    let records = xsuaa.connectivity_requests();
    assert_eq!(records.len(), 1000);
    assert_eq!(records[0].target, format!("http://{VHOST}/5"));
    assert_eq!(records[999].target, format!("http://{VHOST}/1004"));
    assert_eq!(xsuaa.stats().connectivity_requests_refused, 1005);
}
