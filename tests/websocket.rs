//! Websockets through the router, against a real websocket echo backend and a websocket client:
//! the round trip, the admission rules (enabled, `Origin`), authentication (401 without a session,
//! the bearer token with one), and the close when the session ends.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use support::idp::{dev_xsuaa, Browser};
use support::{backend, gateway, Gateway, GatewayBuilder};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the echo backend reports.
#[derive(Debug)]
enum Event {
    /// A handshake: the request path and headers.
    Opened(String, HeaderMap),
    /// A connection ended, with the close code the backend received (if any).
    Closed(Option<u16>),
}

/// A websocket echo backend on `127.0.0.1:0`: answers every text or binary message with itself and
/// agrees to the `chat` subprotocol when offered.
struct EchoBackend {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoBackend {
    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("backend event in time")
            .expect("backend running")
    }
}

async fn echo_backend() -> EchoBackend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (events_tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let events_tx = events_tx.clone();
            tokio::spawn(async move {
                let opened = events_tx.clone();
                #[expect(clippy::result_large_err, reason = "the error type is tungstenite's")]
                let callback = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
                    let _ = opened.send(Event::Opened(request.uri().to_string(), request.headers().clone()));
                    let offered = request
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat"));
                    if offered {
                        response
                            .headers_mut()
                            .insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
                    }
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let mut close_code = None;
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Close(frame) = &message {
                        close_code = frame.as_ref().map(|f| u16::from(f.code));
                        break;
                    }
                    if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                        break;
                    }
                }
                let _ = events_tx.send(Event::Closed(close_code));
            });
        }
    });
    EchoBackend { addr, events, task }
}

/// Opens a websocket to `url` with extra request headers; a refused handshake gives its status.
async fn connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Client, tungstenite::http::Response<Option<Vec<u8>>>), u16> {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => Ok(connected),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(error) => panic!("websocket connect failed without an HTTP answer: {error}"),
    }
}

fn ws_url(router: &Gateway, path: &str) -> String {
    format!("ws://{}{path}", router.addr)
}

fn own_origin(router: &Gateway) -> String {
    format!("http://{}", router.addr)
}

async fn next_message(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("message in time")
        .expect("socket open")
        .expect("valid frame")
}

fn public_app(enabled: bool) -> GatewayBuilder {
    gateway(json!({
        "websockets": {"enabled": enabled},
        "routes": [
            {"source": "^/ws/(.*)$", "target": "/$1", "destination": "echo", "authenticationType": "none"}
        ]
    }))
}

#[tokio::test]
async fn echo_round_trip_on_a_public_route() {
    let mut backend = echo_backend().await;
    let router = public_app(true).destinations(&[("echo", &backend.url())]).start().await;

    let origin = own_origin(&router);
    let (mut client, response) = connect(
        &ws_url(&router, "/ws/chat?room=1"),
        &[("origin", &origin), ("sec-websocket-protocol", "chat, superchat")],
    )
    .await
    .expect("upgrade accepted");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");

    let Event::Opened(path, headers) = backend.next().await else {
        panic!("expected the handshake first")
    };
    assert_eq!(path, "/chat?room=1");
    assert_eq!(headers["upgrade"].to_str().unwrap().to_ascii_lowercase(), "websocket");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-path"], "/ws/chat");
    assert_eq!(headers["origin"], origin.as_str());
    assert!(headers.contains_key("x-correlationid"));

    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::text("hello"));
    let metrics = router.state.metrics.encode();
    assert!(metrics.contains("\napprouter_websockets_active 1\n"), "{metrics}");
    // Large enough for the 64-bit length form, in both directions.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(big));

    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert!(matches!(backend.next().await, Event::Closed(Some(1000))));
}

#[tokio::test]
async fn upgrades_are_admitted_by_origin_and_setting() {
    struct Case {
        name: &'static str,
        enabled: bool,
        allowed: Option<&'static str>,
        /// `{own}` is replaced by the router's own origin.
        headers: &'static [(&'static str, &'static str)],
        /// `None`: the upgrade succeeds.
        refused: Option<u16>,
    }
    let cases = [
        Case {
            name: "own origin",
            enabled: true,
            allowed: None,
            headers: &[("origin", "{own}")],
            refused: None,
        },
        Case {
            name: "foreign origin",
            enabled: true,
            allowed: None,
            headers: &[("origin", "https://evil.example")],
            refused: Some(403),
        },
        Case {
            name: "no origin",
            enabled: true,
            allowed: None,
            headers: &[],
            refused: Some(403),
        },
        Case {
            name: "null origin",
            enabled: true,
            allowed: None,
            headers: &[("origin", "null")],
            refused: Some(403),
        },
        Case {
            name: "look-alike host",
            enabled: true,
            allowed: None,
            headers: &[("origin", "http://127.0.0.1.evil.example")],
            refused: Some(403),
        },
        Case {
            name: "disabled",
            enabled: false,
            allowed: None,
            headers: &[("origin", "{own}")],
            refused: Some(403),
        },
        Case {
            name: "allowlisted",
            enabled: true,
            allowed: Some(r#"[{"protocol": "https", "host": "*.trusted.example"}]"#),
            headers: &[("origin", "https://app.trusted.example")],
            refused: None,
        },
        Case {
            name: "allowlisted host, wrong protocol",
            enabled: true,
            allowed: Some(r#"[{"protocol": "https", "host": "*.trusted.example"}]"#),
            headers: &[("origin", "http://app.trusted.example")],
            refused: Some(403),
        },
        Case {
            name: "own origin behind a proxy",
            enabled: true,
            allowed: None,
            headers: &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "router.example"),
                ("origin", "https://router.example"),
            ],
            refused: None,
        },
        Case {
            name: "proxy says https, page is http",
            enabled: true,
            allowed: None,
            headers: &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "router.example"),
                ("origin", "http://router.example"),
            ],
            refused: Some(403),
        },
    ];
    for case in cases {
        let mut backend = echo_backend().await;
        // Behind a trusted proxy: its forwarded headers say the origin.
        let mut builder = public_app(case.enabled)
            .destinations(&[("echo", &backend.url())])
            .env("CLIENT_IP_FORWARDED_HOPS", "1");
        if let Some(allowed) = case.allowed {
            builder = builder.env("WS_ALLOWED_ORIGINS", allowed);
        }
        let router = builder.start().await;
        let own = own_origin(&router);
        let headers: Vec<(&str, String)> = case
            .headers
            .iter()
            .map(|(n, v)| (*n, v.replace("{own}", &own)))
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        match (connect(&ws_url(&router, "/ws/x"), &headers).await, case.refused) {
            (Ok((mut client, _)), None) => {
                client.send(Message::text(case.name)).await.unwrap();
                assert_eq!(
                    next_message(&mut client).await,
                    Message::text(case.name),
                    "{}",
                    case.name
                );
            }
            (Err(status), Some(expected)) => {
                assert_eq!(status, expected, "{}", case.name);
                assert!(
                    backend.events.try_recv().is_err(),
                    "{}: the backend was not asked",
                    case.name
                );
            }
            (Ok(_), Some(expected)) => panic!("{}: upgraded, expected {expected}", case.name),
            (Err(status), None) => panic!("{}: refused with {status}", case.name),
        }
    }
}

#[tokio::test]
async fn a_backend_that_refuses_the_upgrade_answers_the_client() {
    // A plain HTTP backend answers the upgrade request with 200 and its JSON echo.
    let http_backend = backend().await;
    let router = public_app(true)
        .destinations(&[("echo", &http_backend.url())])
        .start()
        .await;
    let origin = own_origin(&router);
    let status = connect(&ws_url(&router, "/ws/status/404"), &[("origin", &origin)])
        .await
        .err();
    assert_eq!(status, Some(404));
    let seen = http_backend.seen();
    let last = seen.last().expect("backend reached");
    assert_eq!(last.headers["connection"], "upgrade");
    assert_eq!(last.headers["upgrade"], "websocket");
    assert!(last.headers.contains_key("sec-websocket-key"));
    assert_eq!(last.headers["sec-websocket-version"], "13");

    // A destination that does not listen.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let router = public_app(true).destinations(&[("echo", &gone)]).start().await;
    let origin = own_origin(&router);
    assert_eq!(
        connect(&ws_url(&router, "/ws/x"), &[("origin", &origin)]).await.err(),
        Some(502)
    );
}

fn protected_app() -> serde_json::Value {
    json!({
        "websockets": {"enabled": true},
        "logout": {"logoutEndpoint": "/my/logout"},
        "routes": [
            {"source": "^/ws/(.*)$", "target": "/$1", "destination": "echo"},
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "api"}
        ]
    })
}

#[tokio::test]
async fn protected_route_without_session_gets_401() {
    let dev = dev_xsuaa().await;
    let mut backend = echo_backend().await;
    let router = gateway(protected_app())
        .destinations(&[("echo", &backend.url()), ("api", "http://127.0.0.1:9")])
        .xsuaa(&dev, &dev.credentials())
        .start()
        .await;
    let origin = own_origin(&router);
    let rows: &[&[(&str, &str)]] = &[
        &[("origin", &origin)],
        &[("origin", &origin), ("cookie", "JSESSIONID=forged")],
        &[
            ("origin", &origin),
            ("cookie", "JSESSIONID=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ],
    ];
    for headers in rows {
        assert_eq!(
            connect(&ws_url(&router, "/ws/x"), headers).await.err(),
            Some(401),
            "{headers:?}"
        );
    }
    assert!(backend.events.try_recv().is_err(), "the backend was not asked");
}

#[tokio::test]
async fn logged_in_websocket_gets_the_bearer_token_and_closes_when_the_session_ends() {
    let dev = dev_xsuaa().await;
    let mut backend = echo_backend().await;
    let api = support::backend().await;
    let router = gateway(protected_app())
        .destination_entries(json!([
            {"name": "echo", "url": backend.url(), "forwardAuthToken": true},
            {"name": "api", "url": api.url(), "forwardAuthToken": true}
        ]))
        .xsuaa(&dev, &dev.credentials())
        .env("WS_SESSION_CHECK_INTERVAL", "50")
        .start()
        .await;
    let browser = Browser::new(&dev);
    let (response, visited) = browser.navigate(&router.url("/api/hello")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let session = browser.cookie(&router.url("/"), "JSESSIONID").expect("session cookie");

    let origin = own_origin(&router);
    let cookie = format!("JSESSIONID={session}; other=1");
    let (mut client, _) = connect(
        &ws_url(&router, "/ws/live"),
        &[("origin", &origin), ("cookie", &cookie)],
    )
    .await
    .expect("upgrade with a session");
    let Event::Opened(_, headers) = backend.next().await else {
        panic!("expected the handshake first")
    };
    let bearer = headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").expect("bearer token");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let cookies = headers
        .get("cookie")
        .map(|c| c.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        !cookies.contains("JSESSIONID"),
        "the session cookie never reaches a backend: {cookies}"
    );
    assert!(cookies.contains("other=1"));

    for round in 0..20 {
        let text = format!("round {round}");
        client.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_message(&mut client).await, Message::text(text));
    }

    let logout = browser.client.get(router.url("/my/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 302);
    // Within one check interval the router notices and closes both sides.
    match next_message(&mut client).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert_eq!(frame.reason.as_str(), "Session ended!");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(matches!(backend.next().await, Event::Closed(Some(1008))));
}

/// A websocket upgrade the destination refuses (nothing listens) or never answers counts as an
/// upstream error of its kind, as a forwarded request's does.
#[tokio::test]
async fn failed_websocket_upgrades_count_as_upstream_errors() {
    let dead = support::refusing();
    // Accepts and reads, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let router = gateway(json!({
        "websockets": {"enabled": true},
        "routes": [
            {"source": "^/dead/(.*)$", "target": "/$1", "destination": "dead", "authenticationType": "none"},
            {"source": "^/silent/(.*)$", "target": "/$1", "destination": "silent", "authenticationType": "none"}
        ]
    }))
    .destination_entries(json!([
        {"name": "dead", "url": format!("ws://{}", dead.addr)},
        {"name": "silent", "url": format!("ws://{silent_addr}"), "timeout": 300}
    ]))
    .start()
    .await;
    let origin = own_origin(&router);
    let counted = |kind: &str| {
        let series = format!("approuter_upstream_errors_total{{kind=\"{kind}\"}}");
        router.state.metrics.encode().lines().find_map(|line| {
            line.strip_prefix(series.as_str())?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };

    let refused = connect(&ws_url(&router, "/dead/x"), &[("origin", &origin)]).await;
    assert_eq!(refused.err(), Some(502));
    assert_eq!(counted("connect"), Some(1.0));

    let unanswered = connect(&ws_url(&router, "/silent/x"), &[("origin", &origin)]).await;
    assert_eq!(unanswered.err(), Some(504));
    assert_eq!(counted("timeout"), Some(1.0));
    held.abort();
}

#[tokio::test]
async fn websocket_to_a_destination_behind_a_proxy_goes_through_its_tunnel() {
    let mut backend = echo_backend().await;
    let mut proxy = support::tunnel::connect_proxy().await;
    let router = public_app(true)
        .destination_entries(json!([{
            "name": "echo",
            "url": backend.url(),
            "proxyHost": "127.0.0.1",
            "proxyPort": proxy.addr.port(),
        }]))
        .start()
        .await;
    let origin = own_origin(&router);
    let (mut client, _) = connect(&ws_url(&router, "/ws/tunnelled"), &[("origin", &origin)])
        .await
        .expect("upgrade accepted");
    assert_eq!(
        proxy.next_request().await,
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", backend.addr.port())
    );
    let Event::Opened(path, _) = backend.next().await else {
        panic!("expected the handshake first")
    };
    assert_eq!(path, "/tunnelled");
    client.send(Message::text("through the tunnel")).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::text("through the tunnel"));
}

#[tokio::test]
async fn websocket_to_an_on_premise_destination_goes_through_the_connectivity_proxy() {
    let mut backend = echo_backend().await;
    let dev = xsuaa_dev::DevXsuaa::builder()
        .virtual_host("chat.internal:8080", backend.addr.to_string())
        .start()
        .await
        .expect("development XSUAA");
    let router = public_app(true)
        .services(&dev, &dev.credentials())
        .destination_entries(json!([{"name": "echo", "url": "ws://chat.internal:8080", "proxyType": "OnPremise"}]))
        .start()
        .await;
    let origin = own_origin(&router);
    let (mut client, _) = connect(&ws_url(&router, "/ws/room"), &[("origin", &origin)])
        .await
        .expect("upgrade accepted");
    let Event::Opened(path, headers) = backend.next().await else {
        panic!("expected the handshake first")
    };
    assert_eq!(path, "/room");
    assert_eq!(headers["host"], "chat.internal:8080");
    assert!(!headers.contains_key("proxy-authorization"));
    client.send(Message::text("on premise")).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::text("on premise"));
    let record = dev.connectivity_requests().pop().expect("the proxy saw the upgrade");
    assert_eq!(record.target, "http://chat.internal:8080/room");
    assert_eq!(
        record.cid.as_deref(),
        Some(dev.service_client_id(xsuaa_dev::ServiceKind::Connectivity).as_str())
    );
}
