//! Listener limits over raw TCP: oversized heads get 431, clients that stall while sending the head
//! are cut off after the header-read timeout, ambiguous framing gets 400, and shutdown lets a
//! download in flight finish while refusing new connections.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt;
use serde_json::json;
use support::raw::{exchange, PATIENCE};
use support::{backend, client, gateway, Backend, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A stalled connection must be closed well before this.
const QUICK: Duration = Duration::from_secs(5);

async fn start(backend: &Backend, env: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())]);
    for (name, value) in env {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

#[tokio::test]
async fn oversized_header_is_431() {
    let backend = backend().await;
    let router = start(&backend, &[]).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let head = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may stop reading (and reset) before the whole head is written: write on the
    // side and only look at what comes back.
    let (mut read_half, mut write_half) = stream.split();
    let write = async {
        let _ = write_half.write_all(head.as_bytes()).await;
    };
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        while !received.windows(2).any(|w| w == b"\r\n") {
            match read_half.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
        received
    };
    let ((), received) = tokio::time::timeout(PATIENCE, async { tokio::join!(write, read) })
        .await
        .expect("no answer to an oversized head");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 431"), "status line: {text:?}");
    assert!(backend.seen().is_empty(), "the oversized request reached the backend");
}

/// Bytes a slow client sends before it stalls, and how many requests among them are answered.
const STALLS: &[(&str, &str, usize)] = &[
    ("nothing at all", "", 0),
    ("half a request line", "GET /ech", 0),
    (
        "half the headers",
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n",
        0,
    ),
    ("the start of the HTTP/2 preface", "PRI * HTTP/2.0\r\n", 0),
    // The timeout counts again from the end of each answer.
    (
        "nothing after an answered request",
        "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n",
        1,
    ),
    (
        "half a head after two answered requests",
        "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\nGET /echo HTTP/1.1\r\nHost: localhost\r\n\r\nGET /echo HTTP/1.1\r\nHo",
        2,
    ),
];

#[tokio::test]
async fn stalled_head_is_cut_after_the_header_timeout() {
    let backend = backend().await;
    let router = start(&backend, &[("INCOMING_HEADER_TIMEOUT", "300")]).await;
    let mut failures = Vec::new();
    for (name, sent, answered) in STALLS {
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        stream.write_all(sent.as_bytes()).await.expect("write");
        let started = Instant::now();
        let mut received = Vec::new();
        match tokio::time::timeout(QUICK, stream.read_to_end(&mut received)).await {
            // EOF or a reset: either way the router closed the connection.
            Ok(_) => {
                let text = String::from_utf8_lossy(&received);
                let answers = text.matches("HTTP/1.1 200").count();
                let rest = text.rsplit("HTTP/1.1 200").next().unwrap_or("");
                // Cut: nothing after the answers, or a 408.
                let cut = match answers {
                    0 => received.is_empty() || text.starts_with("HTTP/1.1 408"),
                    _ => !rest.contains("HTTP/1.1 ") || rest.contains("HTTP/1.1 408"),
                };
                if answers != *answered || !cut {
                    failures.push(format!("{name}: unexpected answer {text:?}"));
                }
            }
            Err(_) => failures.push(format!("{name}: still open after {:?}", started.elapsed())),
        }
    }
    assert!(
        failures.is_empty(),
        "stalled clients not cut off:\n{}",
        failures.join("\n")
    );
    let answered: usize = STALLS.iter().map(|(_, _, answered)| answered).sum();
    assert_eq!(backend.seen().len(), answered, "a stalled request reached the backend");
}

/// Clients that stop moving bytes after the head: INCOMING_CONNECTION_TIMEOUT closes them, where
/// the header-read timeout no longer applies.
const IDLE_STALLS: &[(&str, &str)] = &[
    (
        "a body that stops halfway",
        "POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    ),
    (
        "a chunked body that stops",
        "POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ),
    // As the reference's socket timeout: waiting on a slow backend is inactivity too.
    (
        "a backend that does not answer",
        "GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ),
];

#[tokio::test]
async fn inactive_connection_is_closed_after_the_incoming_connection_timeout() {
    let backend = backend().await;
    // The header timeout is far away, so only the inactivity timeout can close these.
    let router = start(
        &backend,
        &[
            ("INCOMING_CONNECTION_TIMEOUT", "300"),
            ("INCOMING_HEADER_TIMEOUT", "60000"),
        ],
    )
    .await;
    let mut failures = Vec::new();
    for (name, sent) in IDLE_STALLS {
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        stream.write_all(sent.as_bytes()).await.expect("write");
        let started = Instant::now();
        let mut received = Vec::new();
        match tokio::time::timeout(QUICK, stream.read_to_end(&mut received)).await {
            Ok(_) if started.elapsed() < Duration::from_millis(300) => failures.push(format!(
                "{name}: closed before the timeout, after {:?}",
                started.elapsed()
            )),
            Ok(_) => {}
            Err(_) => failures.push(format!("{name}: still open after {:?}", started.elapsed())),
        }
    }
    assert!(
        failures.is_empty(),
        "inactive clients not cut off:\n{}",
        failures.join("\n")
    );

    // A connection that keeps working is not cut: keep-alive requests well past the timeout in
    // total, each answered at once.
    let client = client();
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(900) {
        let response = client.get(router.url("/busy")).send().await.expect("response");
        assert_eq!(response.status(), 200, "request {requests}");
        response.bytes().await.expect("body");
        requests += 1;
    }
    assert!(requests > 1);
}

#[tokio::test]
async fn a_request_not_received_in_time_gets_408_and_its_connection_closed() {
    let backend = backend().await;
    // Neither the header nor the inactivity timeout can end these: only the request timeout.
    let router = start(
        &backend,
        &[
            ("INCOMING_REQUEST_TIMEOUT", "1500"),
            ("INCOMING_HEADER_TIMEOUT", "60000"),
        ],
    )
    .await;
    // Each client stalls for ever after a part of its body: the only question is that the 408
    // arrives, and that the connection then ends.
    for (name, sent) in &IDLE_STALLS[..2] {
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        stream.write_all(sent.as_bytes()).await.expect("write");
        let mut received = Vec::new();
        tokio::time::timeout(QUICK, stream.read_to_end(&mut received))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer and still open"))
            .expect("read");
        let response = support::raw::parse(&received);
        assert_eq!(response.status, 408, "{name}: {}", response.text());
        assert_eq!(response.header("connection"), Some("close"), "{name}");
    }

    // A body that arrives in time is forwarded whole.
    let response = client()
        .post(router.url("/count"))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "100000");
}

#[test]
fn incoming_request_timeout_is_the_reference_default_and_zero_means_none() {
    let (_dir, config) = gateway(json!({"routes": []})).config();
    assert_eq!(
        config.expect("valid").server.request_timeout,
        Some(Duration::from_secs(300))
    );
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("INCOMING_REQUEST_TIMEOUT", "0")
        .config();
    assert_eq!(config.expect("0 is accepted").server.request_timeout, None);
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("INCOMING_REQUEST_TIMEOUT", "soon")
        .config();
    let errors = config.expect_err("not a number").to_string();
    assert!(errors.contains("INCOMING_REQUEST_TIMEOUT"), "{errors}");
}

#[test]
fn incoming_connection_timeout_zero_means_none_as_in_the_reference() {
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("INCOMING_CONNECTION_TIMEOUT", "0")
        .config();
    let config = config.expect("0 is accepted");
    assert_eq!(config.server.connection_idle_timeout, None);
    let (_dir, config) = gateway(json!({"routes": []}))
        .env("INCOMING_CONNECTION_TIMEOUT", "-5")
        .config();
    let errors = config.expect_err("a negative timeout is refused").to_string();
    assert!(errors.contains("INCOMING_CONNECTION_TIMEOUT"), "{errors}");
}

/// Requests whose body framing is ambiguous (request smuggling): refused with 400, never forwarded.
const AMBIGUOUS: &[(&str, &str)] = &[
    (
        "two different Content-Lengths",
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
    ),
    (
        "chunked is not the final encoding",
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ),
    (
        "Content-Length that is not a number",
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5x\r\nConnection: close\r\n\r\nhello",
    ),
];

/// Both framings at once, in either order: the reference answers 400 (section 0, connect-utils).
const TE_AND_CL: &[(&str, &str)] = &[
    (
        "Transfer-Encoding then Content-Length",
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ),
    (
        "Content-Length then Transfer-Encoding",
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ),
];

/// Sends each raw request; every one must get 400 and none may reach the backend.
async fn check_refused(rows: &[(&str, &str)]) {
    let backend = backend().await;
    let router = start(&backend, &[]).await;
    let mut failures = Vec::new();
    for (name, request) in rows {
        let response = exchange(router.addr, request.as_bytes()).await;
        if response.status != 400 {
            failures.push(format!("{name}: status {}", response.status));
        }
    }
    let seen: Vec<String> = backend
        .seen()
        .iter()
        .map(|seen| format!("{} {}", seen.method, seen.uri))
        .collect();
    if !seen.is_empty() {
        failures.push(format!("the backend received {seen:?}"));
    }
    assert!(
        failures.is_empty(),
        "ambiguous requests not refused:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn ambiguous_framing_is_400() {
    check_refused(AMBIGUOUS).await;
}

/// RFC 9112 6.1: a server may reject such a request or frame it by Transfer-Encoding alone, and an
/// intermediary must not forward the Content-Length. hyper does the latter (and closes the
/// connection afterwards); either way the backend never sees both headers.
#[tokio::test]
async fn transfer_encoding_with_content_length_is_never_forwarded_ambiguously() {
    let backend = backend().await;
    let router = start(&backend, &[]).await;
    for (name, request) in TE_AND_CL {
        let response = exchange(router.addr, request.as_bytes()).await;
        assert!(
            response.status == 400 || response.status == 200,
            "{name}: status {}",
            response.status
        );
    }
    for seen in backend.seen() {
        assert!(
            !(seen.headers.contains_key("content-length") && seen.headers.contains_key("transfer-encoding")),
            "the backend got both framing headers: {:?}",
            seen.headers
        );
        assert!(
            seen.headers.get("content-length").is_none_or(|v| v == "0"),
            "{:?}",
            seen.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_download_in_flight_and_refuses_new_connections() {
    const SIZE: usize = 50_000_000;
    let backend = backend().await;
    let router = start(&backend, &[]).await;
    let addr = router.addr;
    let client = client();

    let response = client
        .get(router.url(&format!("/bytes/{SIZE}")))
        .send()
        .await
        .expect("download starts");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = 0usize;
    // Some of the body first, so the shutdown certainly lands in the middle of the transfer.
    while received < 1024 * 1024 {
        received += body.next().await.expect("more body").expect("body chunk").len();
    }

    let stopping = tokio::spawn(router.stop());
    // Stop is asynchronous: wait (bounded) until the listener is gone.
    let refused = tokio::time::timeout(QUICK, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(stream) => {
                    drop(stream);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections still accepted after stop");
    assert!(!stopping.is_finished(), "stop returned while a download was in flight");

    let rest = async {
        while let Some(chunk) = body.next().await {
            received += chunk.expect("the download must not be cut by the shutdown").len();
        }
    };
    tokio::time::timeout(PATIENCE, rest)
        .await
        .expect("download stalled during shutdown");
    assert_eq!(received, SIZE, "download incomplete");

    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("stop did not finish after the last request")
        .expect("stop task");
    let after = TcpStream::connect(addr).await;
    assert!(after.is_err(), "connection accepted after stop");
}
