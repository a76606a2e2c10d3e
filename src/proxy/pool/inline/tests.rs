use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use http::header::HeaderValue;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

// === response heads ===

/// What a head parses to: status, framing, reuse, and the bytes left after it.
type Parsed = Result<(u16, Framing, bool, &'static str), &'static str>;

#[test]
fn response_heads_parse_to_status_framing_and_reuse() {
    let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n", "x-a: 1\r\n".repeat(101));
    let huge_value = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n", "a".repeat(70_000));
    let huge_partial = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(70_000));
    let rows: &[(&str, &str, bool, Parsed)] = &[
        ("length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, Ok((200, Framing::Length(5), true, "hello"))),
        ("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", false, Ok((200, Framing::Chunked, true, "5\r\n"))),
        ("chunked last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Ok((200, Framing::Chunked, true, ""))),
        ("chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, Ok((200, Framing::Close, false, ""))),
        ("coding and length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((200, Framing::Chunked, false, ""))),
        ("coding and an invalid length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((200, Framing::Chunked, false, ""))),
        ("no length", "HTTP/1.1 200 OK\r\n\r\nabc", false, Ok((200, Framing::Close, false, "abc"))),
        ("close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, Ok((200, Framing::Length(0), false, ""))),
        ("close in a list", "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n", false, Ok((200, Framing::Length(0), false, ""))),
        ("http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, Ok((200, Framing::Length(2), false, "ok"))),
        ("http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", false, Ok((200, Framing::Length(2), true, "ok"))),
        ("204", "HTTP/1.1 204 No Content\r\n\r\n", false, Ok((204, Framing::Empty, true, ""))),
        ("304 with a length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, Ok((304, Framing::Empty, true, ""))),
        ("head", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, Ok((200, Framing::Empty, true, ""))),
        ("100 first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, Ok((200, Framing::Length(0), true, ""))),
        ("102 and 103 first", "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx", false, Ok((404, Framing::Length(1), true, "x"))),
        ("100 alone", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false, Err("partial")),
        ("101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", false, Err("unexpected 101 response")),
        ("repeated length", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", false, Ok((200, Framing::Length(5), true, ""))),
        ("conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, Err("conflicting content-length")),
        ("conflicting list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", false, Err("conflicting content-length")),
        ("signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, Err("invalid content-length")),
        ("empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", false, Err("invalid content-length")),
        ("trailing comma", "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", false, Err("invalid content-length")),
        ("huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, Err("invalid content-length")),
        ("coding in http/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err("transfer-encoding in an HTTP/1.0 response")),
        ("bad status", "HTTP/1.1 2000 OK\r\n\r\n", false, Err("malformed response head")),
        ("not http", "hello world\r\n\r\n", false, Err("malformed response head")),
        ("partial", "HTTP/1.1 200 OK\r\nContent-Le", false, Err("partial")),
        ("too many headers", &many_headers, false, Err("too many response headers")),
        ("head too large", &huge_value, false, Err("response head too large")),
        ("partial head too large", &huge_partial, false, Err("response head too large")),
    ];
    for (name, input, is_head, expected) in rows {
        let mut buf = BytesMut::from(input.as_bytes());
        let got: Parsed = match parse_head(&mut buf, *is_head) {
            Ok(Some(head)) => Ok((
                head.status.as_u16(),
                head.framing,
                head.keep_alive,
                // Leaked: the table compares `&'static str`s; a test's few bytes.
                Box::leak(String::from_utf8(buf.to_vec()).expect("utf-8").into_boxed_str()),
            )),
            Ok(None) => Err("partial"),
            Err(message) => Err(message),
        };
        assert_eq!(&got, expected, "{name}");
    }
}

#[test]
fn response_headers_keep_order_and_values_and_lose_the_transfer_coding() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nX-Empty:\r\nSet-Cookie: b=2\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nX-Obs: caf\xc3\xa9\r\n\r\n"[..],
    );
    let head = parse_head(&mut buf, false).expect("valid").expect("complete");
    let headers = &head.headers;
    assert_eq!(headers["content-type"], "text/plain");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(headers["x-empty"], "");
    assert_eq!(headers["x-obs"].as_bytes(), "café".as_bytes());
    assert!(!headers.contains_key("transfer-encoding"));
    assert!(
        !headers.contains_key("content-length"),
        "the coding overrides the length"
    );
}

#[test]
fn hop_by_hop_response_headers_end_at_the_parse_unless_connection_names_others() {
    // (the response's hop-by-hop fields) → the Connection values kept for the response policy
    let rows: [(&str, &[&str]); 5] = [
        ("Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n", &[]),
        (
            "Connection: close\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: x\r\nProxy-Connection: x\r\n",
            &[],
        ),
        (
            "Connection: Keep-Alive, CLOSE\r\nPublic: x\r\nProxy-Authenticate: x\r\n",
            &[],
        ),
        // A Connection naming a header of its own stays: the policy removes that header with it.
        ("Connection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n", &["x-hop"]),
        (
            "Connection: keep-alive, x-a-name-longer-than-the-lower-case-buffer\r\n",
            &["keep-alive, x-a-name-longer-than-the-lower-case-buffer"],
        ),
    ];
    for (index, (fields, kept)) in rows.into_iter().enumerate() {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{fields}X-End: 1\r\n\r\n");
        let mut buf = BytesMut::from(text.as_bytes());
        let head = parse_head(&mut buf, false).expect("valid").expect("complete");
        let headers = &head.headers;
        let connection: Vec<_> = headers.get_all("connection").iter().collect();
        assert_eq!(connection, kept, "row {index}");
        for name in [
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "proxy-connection",
            "public",
            "proxy-authenticate",
        ] {
            assert!(!headers.contains_key(name), "row {index}: {name}");
        }
        assert_eq!(headers["x-end"], "1", "row {index}");
        assert_eq!(headers["content-length"], "0", "row {index}");
        // What stays goes through the response policy, which leaves no hop-by-hop header.
        let mut after = headers.clone();
        crate::proxy::headers::downstream_response(&mut after);
        assert!(
            !after.contains_key("connection") && !after.contains_key("x-hop"),
            "row {index}"
        );
    }
}

// === request heads ===

#[test]
fn request_heads_are_written_in_origin_form_with_the_headers_as_given() {
    let mut request = Request::new(body::empty());
    *request.method_mut() = Method::DELETE;
    *request.uri_mut() = "http://backend:8080/a/b?c=d".parse().expect("uri");
    request.headers_mut().insert("x-one", HeaderValue::from_static("1"));
    request.headers_mut().append("x-one", HeaderValue::from_static("2"));
    assert_eq!(
        String::from_utf8(encode_head(&request, &Added::default())).expect("utf-8"),
        "DELETE /a/b?c=d HTTP/1.1\r\nhost: backend:8080\r\nx-one: 1\r\nx-one: 2\r\n\r\n"
    );
    // A host of the caller's own is kept; a body that has not ended gets its zero length.
    let mut request = Request::new(body::boxed(Unended));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = "http://backend/".parse().expect("uri");
    request
        .headers_mut()
        .insert("host", HeaderValue::from_static("example.com"));
    assert!(applies(&request));
    assert_eq!(
        String::from_utf8(encode_head(&request, &Added::default())).expect("utf-8"),
        "POST / HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n"
    );
}

/// A body known to be empty that does not say it has ended.
struct Unended;

impl HttpBody for Unended {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}

#[test]
fn only_bodiless_plain_requests_are_inline() {
    let request = |uri: &str, body: Body| {
        let mut request = Request::new(body);
        *request.uri_mut() = uri.parse().expect("uri");
        request
    };
    assert!(applies(&request("http://backend/", body::empty())));
    assert!(!applies(&request("https://backend/", body::empty())));
    assert!(!applies(&request("http://backend/", body::full("x"))));
    let mut upgrade = request("http://backend/", body::empty());
    upgrade
        .headers_mut()
        .insert("upgrade", HeaderValue::from_static("websocket"));
    assert!(!applies(&upgrade));
}

// === exchanges over loopback ===

/// What the scripted backend does with a request: answer with these bytes, then close the
/// connection or not. Empty bytes and `true`: close without answering; with `false`: never answer.
type Answer = (&'static [u8], bool);

/// A backend that answers requests in order (across its connections) from `answers`, and counts
/// the connections it accepted.
async fn scripted(answers: Vec<Answer>) -> (Home, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0; 4096];
                loop {
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    request.clear();
                    let Some((bytes, close)) = answers.lock().expect("answers").pop_front() else {
                        return;
                    };
                    if socket.write_all(bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    let home = Home {
        pool: Arc::new(()),
        scheme: Scheme::HTTP,
        authority: address.to_string().parse().expect("authority"),
        max_idle: 4,
        generation: 0,
    };
    (home, accepted)
}

/// A deadline no exchange here comes near.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn get(home: &Home, method: Method) -> Request<Body> {
    let mut request = Request::new(body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = format!("http://{}/", home.authority).parse().expect("uri");
    request
}

async fn text(response: Response<Body>) -> Result<String, crate::body::BoxError> {
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

#[tokio::test]
async fn one_connection_carries_requests_whose_bodies_were_read() {
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n{}",
            "b".repeat(300_000)
        )
        .into_boxed_str(),
    );
    let mut big_chunked = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..30 {
        big_chunked.push_str(&format!("2710\r\n{}\r\n", "c".repeat(10_000)));
    }
    big_chunked.push_str("0\r\nx-done: 1\r\n\r\n");
    let big_chunked: &'static str = Box::leak(big_chunked.into_boxed_str());
    let (home, accepted) = scripted(vec![
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false),
        (big.as_bytes(), false),
        (big_chunked.as_bytes(), false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    ])
    .await;
    let expected = [
        "hello".to_string(),
        "hello world".to_string(),
        String::new(),
        "b".repeat(300_000),
        "c".repeat(300_000),
        "ok".to_string(),
    ];
    for body in expected {
        let response = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
            .await
            .expect("response");
        assert_eq!(text(response).await.expect("body"), body);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n{}",
            "b".repeat(300_000)
        )
        .into_boxed_str(),
    );
    let (home, accepted) = scripted(vec![
        (big.as_bytes(), false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", true),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    ])
    .await;
    let mut response = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
        .await
        .expect("response");
    response.body_mut().frame().await.expect("a frame").expect("data");
    drop(response);
    for body in ["ok", "ok", "until close", "ok"] {
        let response = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
            .await
            .expect("response");
        assert_eq!(text(response).await.expect("body"), body);
    }
    // The dropped download's, then one until `Connection: close`, one until the end of the
    // HTTP/1.0 body, and a last one.
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_idempotent_request_on_a_connection_closed_under_it_is_sent_again() {
    let ok: Answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
    let (home, accepted) = scripted(vec![ok, (b"", true), ok, (b"", true)]).await;
    for method in [Method::GET, Method::PUT] {
        let response = send(home.clone(), get(&home, method), &Added::default(), later())
            .await
            .expect("response");
        assert_eq!(text(response).await.expect("body"), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // Not so a POST: the server may have acted on it.
    let (home, accepted) = scripted(vec![ok, (b"", true), ok]).await;
    let response = send(home.clone(), get(&home, Method::POST), &Added::default(), later())
        .await
        .expect("response");
    assert_eq!(text(response).await.expect("body"), "ok");
    let error = send(home.clone(), get(&home, Method::POST), &Added::default(), later())
        .await
        .expect_err("closed");
    assert!(matches!(error, PoolError::Io(_)), "{error:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_cut_short_fails_and_an_invalid_head_is_an_error() {
    let (home, accepted) = scripted(vec![
        (b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\nhello", true),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            true,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
    ])
    .await;
    for _ in 0..2 {
        let response = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
            .await
            .expect("response");
        let error = text(response).await.expect_err("cut short");
        assert_eq!(error.to_string(), "invalid response: response body ended early");
    }
    let error = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
        .await
        .expect_err("invalid");
    assert!(
        matches!(error, PoolError::InvalidResponse("invalid content-length")),
        "{error:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let home = Home {
        pool: Arc::new(()),
        scheme: Scheme::HTTP,
        authority: address.to_string().parse().expect("authority"),
        max_idle: 4,
        generation: 0,
    };
    let error = send(home.clone(), get(&home, Method::GET), &Added::default(), later())
        .await
        .expect_err("refused");
    assert!(matches!(error, PoolError::Connect(_)), "{error:?}");
}

#[tokio::test]
async fn a_head_later_than_its_deadline_times_out_on_new_and_reused_connections() {
    const OK: Answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
    const SILENT: Answer = (b"", false);
    let (home, accepted) = scripted(vec![OK, SILENT, OK, SILENT]).await;
    let answered = |deadline: Instant| {
        let home = home.clone();
        async move {
            let response = send(home.clone(), get(&home, Method::GET), &Added::default(), deadline)
                .await
                .expect("response");
            assert_eq!(text(response).await.expect("body"), "ok");
        }
    };
    // A request to the silent backend must time out at its deadline, neither earlier nor much later.
    let times_out_after = |wait: Duration| {
        let home = home.clone();
        async move {
            let started = Instant::now();
            let error = send(home.clone(), get(&home, Method::GET), &Added::default(), started + wait)
                .await
                .expect_err("silent backend");
            let waited = started.elapsed();
            assert!(matches!(error, PoolError::TimedOut), "{error:?}");
            assert!(
                waited >= wait && waited < Duration::from_secs(5),
                "{waited:?} for {wait:?}"
            );
        }
    };
    answered(later()).await;
    // The reused connection's timer, armed for the first request's far deadline, moves earlier.
    times_out_after(Duration::from_millis(300)).await;
    // A connection that timed out is not reused: a new one answers, with a near deadline...
    answered(Instant::now() + Duration::from_millis(300)).await;
    // ...then its timer moves later: it must not fire at the earlier request's deadline.
    times_out_after(Duration::from_millis(900)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

// === idle checks ===

#[tokio::test]
async fn an_idle_connection_with_bytes_not_yet_seen_by_the_reactor_is_not_quiet() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (mut server, _) = listener.accept().await.expect("accept");
    let mut client = client;
    server
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .expect("write");
    // A read shorter than the buffer: tokio takes the socket for drained until the reactor says
    // otherwise, as after a response read to its end.
    let mut buf = BytesMut::with_capacity(1024);
    client.read_buf(&mut buf).await.expect("read");
    assert!(is_quiet(&client, true), "nothing more was sent");
    // Delivered at once on loopback; the reactor has not turned since (no await in between).
    server.write_all(b"HTTP/1.1 200 OK\r\n").await.expect("write");
    assert!(
        !is_quiet(&client, true),
        "stray bytes after a bodiless answer must retire the connection"
    );
    drop(server);
    assert!(!is_quiet(&client, true), "a closed connection must not be reused");
}
