//! The fast paths against hyper: the same generated requests, malformed ones included, go once
//! through a router with its fast paths (the HTTP/1.1 fast lane and the inline upstream client)
//! and once through one with `HTTP_FAST_PATHS=false`, where hyper serves every connection and sends
//! every upstream request. Both must answer with the same status and send the backend the same
//! bytes. The backend is a raw loopback server that records each request's bytes and answers with
//! one of a table of responses (malformed ones included), chosen by the request.

mod support;

use std::net::SocketAddr;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::json;
use support::raw::PATIENCE;
use support::{gateway, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Cases per run: each is two exchanges on loopback, a few milliseconds in a debug build.
const CASES: u32 = 300;

/// What the backend answers, chosen by the request's `x-answer` header: (interim and final head,
/// body, whether the backend closes the connection afterwards). A `HEAD` request gets the heads
/// alone.
const ANSWERS: &[(&[u8], &[u8], bool)] = &[
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok", false),
    (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"2\r\nok\r\n0\r\n\r\n",
        false,
    ),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", false),
    (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
        b"ok",
        true,
    ),
    (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", b"", true),
    (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
        b"ok",
        false,
    ),
    (b"HTTP/1.0 200 OK\r\n\r\n", b"ok", true),
    (b"HTTP/1.1 599 Odd\r\ncontent-length: 0\r\n\r\n", b"", false),
    (b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n", b"", true),
    (b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 0\r\n\r\n", b"", true),
    (b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n", b"", false),
    (
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        b"2\r\nok\r\n0\r\n\r\n",
        false,
    ),
    (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n", b"", false),
    (b"HTTP/1.1 200 OK\nContent-Length: 2\n\n", b"ok", false),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", b"", true),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\n", b"ok", false),
    (
        b"HTTP/1.1 200 OK\r\nx-v: a\x80\xff\r\ncontent-length: 0\r\n\r\n",
        b"",
        false,
    ),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", b"ok", true),
    (b"HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n", b"", true),
    (
        b"HTTP/1.1 200 OK\r\nx-v: a\x01b\r\ncontent-length: 0\r\n\r\n",
        b"",
        true,
    ),
];

/// A request head and body as generated: every part can be malformed.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    target: Vec<u8>,
    version: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    /// Line ends: CRLF or a bare LF.
    crlf: bool,
    /// An obsolete line folding after the first header.
    fold: bool,
    answer: usize,
    /// A `Host` field first (HTTP/1.1 needs exactly one; the generated fields may add another).
    host: bool,
}

impl Case {
    /// Both framing fields, whatever their values.
    fn frames_twice(&self) -> bool {
        let has = |wanted: &str| self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(wanted));
        has("content-length") && has("transfer-encoding")
    }

    fn bytes(&self) -> Vec<u8> {
        let end: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(end);
        // Fixed, valid trace context and correlation id: otherwise each router makes its own.
        out.extend_from_slice(b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        out.extend_from_slice(end);
        out.extend_from_slice(b"x-correlationid: differential");
        out.extend_from_slice(end);
        out.extend_from_slice(format!("x-answer: {}", self.answer).as_bytes());
        out.extend_from_slice(end);
        if self.host {
            out.extend_from_slice(b"Host: localhost");
            out.extend_from_slice(end);
        }
        let mut length = false;
        let mut chunked = false;
        for (index, (name, value)) in self.headers.iter().enumerate() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(end);
            if index == 0 && self.fold {
                out.extend_from_slice(b" folded");
                out.extend_from_slice(end);
            }
            length |= name.eq_ignore_ascii_case("content-length") && *value == b"5";
            chunked |= name.eq_ignore_ascii_case("transfer-encoding") && value.ends_with(b"chunked");
        }
        out.extend_from_slice(end);
        // The body the framing headers announce, so that no side waits for bytes that never come.
        if chunked {
            out.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        } else if length {
            out.extend_from_slice(b"hello");
        }
        out
    }
}

fn case() -> impl Strategy<Value = Case> {
    // Each part is mostly well-formed, so that most requests get through to the backend; one in
    // ten of each is malformed.
    let method = prop_oneof![
        9 => prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"]),
        1 => prop::sample::select(vec!["get", "G\u{1}T", "FOO", "CONNECT", "", "GET\t"]),
    ];
    let start = prop_oneof![
        9 => prop::sample::select(vec![&b"/api/"[..], b"/api/", b"/", b"/other/"]),
        1 => prop::sample::select(vec![&b"http://example.test/api/"[..], b"*", b"api/", b"//api/", b""]),
    ];
    let safe = b"abcXYZ019._~-%2e/?#&=;:@!$'()*+,".to_vec();
    let unsafe_bytes = b" \t\x7f\x00\"<>[]\\^`{|}\xc3\xa9\xff%".to_vec();
    let rest = prop_oneof![
        9 => prop::collection::vec(prop::sample::select(safe.clone()), 0..20),
        1 => prop::collection::vec(
            prop_oneof![3 => prop::sample::select(safe), 1 => prop::sample::select(unsafe_bytes)],
            1..20,
        ),
    ];
    let version = prop_oneof![
        9 => Just("HTTP/1.1"),
        1 => prop::sample::select(vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 ", "HTTP/1"]),
    ];
    let name = prop_oneof![
        19 => prop::sample::select(vec![
            "Accept",
            "X-Custom",
            "Cookie",
            "Connection",
            "Content-Length",
            "Transfer-Encoding",
            "Expect",
            "Upgrade",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "Host",
            "TE",
            "Keep-Alive",
            "Proxy-Authorization",
            "Authorization",
            "Accept-Encoding",
        ]),
        1 => prop::sample::select(vec!["Bad Name", "x\u{1}y", "", "Accept ", "x-\u{e9}", "x(y)"]),
    ];
    let value = prop_oneof![
        19 => prop::sample::select(vec![
            &b""[..],
            b"a",
            b"close",
            b"keep-alive",
            b"Upgrade",
            b"x-custom, close",
            b"0",
            b"5",
            b"chunked",
            b"gzip, chunked",
            b"gzip",
            b"100-continue",
            b"websocket",
            b" padded ",
            b"1.2.3.4",
            b"JSESSIONID=abc; other=1",
            b"https",
            b"example.test:8080",
            b"x\x80\xff",
        ]),
        1 => prop::sample::select(vec![&b"\t"[..], b"x\x01y", b"x\x7fy", b"a\rb"]),
    ];
    (
        method,
        (start, rest).prop_map(|(start, rest)| [start, &rest[..]].concat()),
        version,
        prop::collection::vec((name, value), 0..6),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.05),
        0..ANSWERS.len(),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(method, target, version, headers, crlf, fold, answer, host)| Case {
            method,
            target,
            version,
            headers,
            crlf,
            fold,
            answer,
            host,
        })
}

/// What one router did with a case: the status of each answer the client got (`None`: the
/// connection closed before it) and the requests the backend received.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    statuses: Vec<Option<u16>>,
    upstream: Vec<String>,
}

#[test]
fn fast_paths_and_hyper_answer_and_forward_alike() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (backend, received) = runtime.block_on(raw_backend());
    // The runner's closure is `Fn`.
    let received = std::sync::Mutex::new(received);
    let (fast, plain) = runtime.block_on(async {
        let fast = router(backend, true).await;
        let plain = router(backend, false).await;
        (fast, plain)
    });
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    // A fixed seed: every run checks the same cases, and a failure reproduces.
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    // One request, or two on the same connection: the second is sent once the first is answered,
    // so the fast lane serves a connection that it may then hand over to hyper.
    let cases = (case(), prop::option::weighted(0.5, case()))
        .prop_map(|(first, second)| std::iter::once(first).chain(second).collect::<Vec<Case>>());
    let result = runner.run(&cases, |cases| {
        let mut received = received.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (through_fast, through_plain) = runtime.block_on(async {
            let through_fast = outcome(&fast, &cases, &mut received).await;
            let through_plain = outcome(&plain, &cases, &mut received).await;
            (through_fast, through_plain)
        });
        // Both framing fields: the fast lane refuses the request (400, closed); hyper alone, or
        // after it took the connection over, reads the body as chunked and closes after its answer
        // (RFC 9112 §6.1 allows both). Neither may forward both fields.
        if cases.iter().any(Case::frames_twice) {
            for upstream in through_fast.upstream.iter().chain(&through_plain.upstream) {
                let lower = upstream.to_ascii_lowercase();
                if lower.contains("\ncontent-length:") && lower.contains("\ntransfer-encoding:") {
                    return Err(TestCaseError::fail(format!(
                        "both framing fields forwarded: {upstream}"
                    )));
                }
            }
            return Ok(());
        }
        if through_fast != through_plain {
            let requests: Vec<String> = cases
                .iter()
                .map(|case| String::from_utf8_lossy(&case.bytes()).into_owned())
                .collect();
            return Err(TestCaseError::fail(format!(
                "requests {requests:#?}\nfast paths: {through_fast:#?}\nhyper: {through_plain:#?}"
            )));
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// Differences the generated cases found, kept as fixed rows: a `101` to a plain request, and
/// conflicting lengths on a `HEAD` answer, are 502 on both paths (hyper's server used to drop the
/// client connection without an answer).
#[tokio::test]
async fn responses_no_client_may_get_are_502_on_both_paths() {
    let (backend, mut received) = raw_backend().await;
    let fast = router(backend, true).await;
    let plain = router(backend, false).await;
    for (method, answer) in [("GET", 14), ("POST", 14), ("HEAD", 3)] {
        let case = Case {
            method,
            target: b"/api/x".to_vec(),
            version: "HTTP/1.1",
            headers: vec![("Content-Length", b"0")],
            crlf: true,
            fold: false,
            answer,
            host: true,
        };
        for router in [&fast, &plain] {
            let outcome = outcome(router, std::slice::from_ref(&case), &mut received).await;
            assert_eq!(
                outcome.statuses,
                [Some(502)],
                "{method} answered by {:?}",
                ANSWERS[answer].0
            );
            assert_eq!(outcome.upstream.len(), 1);
        }
    }
}

/// More differences the generated cases found: a backend answer framed by `Transfer-Encoding` with
/// a `Content-Length` beside it, or with its length given as a list, reaches the client framed
/// once and correctly on both paths, so the client connection carries the next request.
#[tokio::test]
async fn framing_fields_are_forwarded_in_one_form_on_both_paths() {
    let (backend, mut received) = raw_backend().await;
    let fast = router(backend, true).await;
    let plain = router(backend, false).await;
    let get = |answer| Case {
        method: "GET",
        target: b"/api/x".to_vec(),
        version: "HTTP/1.1",
        headers: Vec::new(),
        crlf: true,
        fold: false,
        answer,
        host: true,
    };
    for answer in [11, 15] {
        for router in [&fast, &plain] {
            let outcome = outcome(router, &[get(answer), get(0)], &mut received).await;
            assert_eq!(
                outcome.statuses,
                [Some(200), Some(200)],
                "after {:?}",
                ANSWERS[answer].0
            );
        }
    }
}

async fn router(backend: SocketAddr, fast_paths: bool) -> Gateway {
    gateway(json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"},
            {"source": "^/(.*)$", "destination": "backend", "authenticationType": "none"}
        ]
    }))
    .destination_entries(json!([{"name": "backend", "url": format!("http://{backend}"), "timeout": 3000}]))
    .env("HTTP_FAST_PATHS", fast_paths.to_string())
    .env("INCOMING_HEADER_TIMEOUT", "3000")
    .start()
    .await
}

/// Sends `cases` on a new connection to `router`, each once the one before is answered, and
/// reads the answers; then takes what the backend recorded meanwhile (it records a request before
/// it answers, so everything these requests caused is there once the answers are).
async fn outcome(router: &Gateway, cases: &[Case], received: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Outcome {
    let exchange = async {
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        let mut buf = Vec::new();
        let mut statuses = Vec::new();
        let mut open = true;
        for case in cases {
            if !open || stream.write_all(&case.bytes()).await.is_err() {
                open = false;
                statuses.push(None);
                continue;
            }
            let (status, reusable) = response(&mut stream, &mut buf, case.method == "HEAD").await;
            open = reusable;
            statuses.push(status);
        }
        statuses
    };
    let statuses = tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer in time to {cases:?}"));
    let mut upstream = Vec::new();
    while let Ok(request) = received.try_recv() {
        upstream.push(String::from_utf8_lossy(&request).into_owned());
    }
    Outcome { statuses, upstream }
}

/// Reads one answer off `stream` (interim answers skipped): its status, and whether the connection
/// can carry another request (the body ended by its framing, not by the connection closing).
async fn response(stream: &mut TcpStream, buf: &mut Vec<u8>, is_head: bool) -> (Option<u16>, bool) {
    let (code, head_end) = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let line_end = find(buf, b"\r\n").unwrap_or(end);
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let Some(code) = line.split(' ').nth(1).and_then(|code| code.parse::<u16>().ok()) else {
                return (None, false);
            };
            if (100..200).contains(&code) {
                buf.drain(..end + 4);
                continue;
            }
            break (code, end + 4);
        }
        if !fill(stream, buf).await {
            return (None, false);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let field = |name: &str| {
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_string())
    };
    let body_end = if is_head || code == 204 || code == 304 {
        Some(head_end)
    } else if field("transfer-encoding").is_some_and(|coding| coding.ends_with("chunked")) {
        // The bodies here are a few bytes without trailers: the last chunk ends them.
        loop {
            let body = &buf[head_end..];
            if body.starts_with(b"0\r\n\r\n") {
                break Some(head_end + 5);
            }
            if let Some(at) = find(body, b"\r\n0\r\n\r\n") {
                break Some(head_end + at + 7);
            }
            if !fill(stream, buf).await {
                break None;
            }
        }
    } else if let Some(length) = field("content-length").and_then(|length| length.parse::<usize>().ok()) {
        loop {
            if buf.len() >= head_end + length {
                break Some(head_end + length);
            }
            if !fill(stream, buf).await {
                break None;
            }
        }
    } else {
        // Until the connection closes.
        None
    };
    match body_end {
        Some(end) => {
            buf.drain(..end);
            (Some(code), !head.contains("\r\nconnection: close"))
        }
        None => (Some(code), false),
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(read) => {
            buf.extend_from_slice(&chunk[..read]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A backend that records every request it reads (head and body, as received) and answers it
/// with the `x-answer` entry of [`ANSWERS`].
async fn raw_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (received_tx, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_backend(stream, received_tx.clone()));
        }
    });
    (addr, received)
}

async fn serve_backend(mut stream: TcpStream, received: mpsc::UnboundedSender<Vec<u8>>) {
    let mut buf = Vec::new();
    loop {
        let Some((request, head)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let answer = head.answer.and_then(|index| ANSWERS.get(index)).unwrap_or(&ANSWERS[0]);
        let _ = received.send(request);
        let (heads, body, close) = *answer;
        let mut out = heads.to_vec();
        if !head.is_head {
            out.extend_from_slice(body);
        }
        if stream.write_all(&out).await.is_err() || close {
            return;
        }
    }
}

struct RequestHead {
    is_head: bool,
    answer: Option<usize>,
}

/// One request off `stream` (with what `buf` already holds): its bytes and what the backend needs
/// of its head. `None` when the connection ends or the request is not readable.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Vec<u8>, RequestHead)> {
    let head_end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, buf).await.then_some(())?;
    };
    let head_text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut length = 0usize;
    let mut chunked = false;
    let mut answer = None;
    for line in head_text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().ends_with("chunked"),
            "x-answer" => answer = value.parse().ok(),
            _ => {}
        }
    }
    let is_head = head_text.starts_with("HEAD ");
    let end = if chunked {
        // The bodies this test sends are small: read until the last chunk and an empty trailer.
        loop {
            if let Some(at) = find(&buf[head_end..], b"0\r\n\r\n") {
                break head_end + at + 5;
            }
            fill(stream, buf).await.then_some(())?;
        }
    } else {
        while buf.len() < head_end + length {
            fill(stream, buf).await.then_some(())?;
        }
        head_end + length
    };
    let request = buf.drain(..end).collect();
    Some((request, RequestHead { is_head, answer }))
}
