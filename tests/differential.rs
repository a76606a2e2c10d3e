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
}

impl Case {
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
    )
        .prop_map(|(method, target, version, headers, crlf, fold, answer)| Case {
            method,
            target,
            version,
            headers: headers.into_iter().map(|(name, value)| (name, value)).collect(),
            crlf,
            fold,
            answer,
        })
}

/// What one router did with a case: the status the client got (`None`: the connection closed
/// without an answer) and the requests the backend received.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: Option<u16>,
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
    let result = runner.run(&case(), |case| {
        let bytes = case.bytes();
        let mut received = received.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (through_fast, through_plain) = runtime.block_on(async {
            let through_fast = outcome(&fast, &bytes, &mut received).await;
            let through_plain = outcome(&plain, &bytes, &mut received).await;
            (through_fast, through_plain)
        });
        if through_fast != through_plain {
            return Err(TestCaseError::fail(format!(
                "request {:?}\nfast paths: {through_fast:#?}\nhyper: {through_plain:#?}",
                String::from_utf8_lossy(&bytes)
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
        };
        for router in [&fast, &plain] {
            let outcome = outcome(router, &case.bytes(), &mut received).await;
            assert_eq!(
                outcome.status,
                Some(502),
                "{method} answered by {:?}",
                ANSWERS[answer].0
            );
            assert_eq!(outcome.upstream.len(), 1);
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

/// Sends `bytes` on a new connection to `router` and reads the answer's status; then takes what
/// the backend recorded meanwhile (it records a request before it answers, so everything this
/// request caused is there once the answer is).
async fn outcome(router: &Gateway, bytes: &[u8], received: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Outcome {
    let status = tokio::time::timeout(PATIENCE, status(router.addr, bytes))
        .await
        .unwrap_or_else(|_| panic!("no answer in time to {:?}", String::from_utf8_lossy(bytes)));
    let mut upstream = Vec::new();
    while let Ok(request) = received.try_recv() {
        upstream.push(String::from_utf8_lossy(&request).into_owned());
    }
    Outcome { status, upstream }
}

/// The status of the first final response head on a new connection that sent `bytes`.
async fn status(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.ok()?;
    let mut buf = Vec::new();
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let line_end = find(&buf, b"\r\n").unwrap_or(end);
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let code = line.split(' ').nth(1).and_then(|code| code.parse::<u16>().ok());
            match code {
                Some(code) if (100..200).contains(&code) => {
                    buf.drain(..end + 4);
                    continue;
                }
                code => return code,
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
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
        fill(stream, buf).await?;
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
            fill(stream, buf).await?;
        }
    } else {
        while buf.len() < head_end + length {
            fill(stream, buf).await?;
        }
        head_end + length
    };
    let request = buf.drain(..end).collect();
    Some((request, RequestHead { is_head, answer }))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(read) => {
            buf.extend_from_slice(&chunk[..read]);
            Some(())
        }
    }
}
