use http::header::{HeaderName, HeaderValue};
use http_body_util::{Full, StreamBody};

use super::*;

fn parsed(raw: &str) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(raw.as_bytes());
    (parse(&mut buf, 8192), buf)
}

#[test]
fn the_fast_lane_takes_complete_bodiless_http11_heads_only() {
    // (request bytes, taken by the fast lane)
    let rows: &[(&str, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        ("GET /a?b=c HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", true),
        ("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", true),
        ("HEAD /x HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
        // Bodies, expectations and upgrades are hyper's.
        ("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", false),
        ("POST /x HTTP/1.1\r\nContent-Length: 00\r\n\r\n", false),
        ("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false),
        (
            "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            false,
        ),
        ("GET /ws HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n", false),
        // Other versions, forms and methods.
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
        ("GET http://a/ HTTP/1.1\r\n\r\n", false),
        ("OPTIONS * HTTP/1.1\r\n\r\n", false),
        ("CONNECT a:443 HTTP/1.1\r\n\r\n", false),
        // Malformed: hyper answers these.
        ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", false),
        // Raw non-ASCII in the target: hyper builds the same URI (path validation refuses it later).
        ("GET /\u{e9} HTTP/1.1\r\n\r\n", true),
        ("G\u{1}T / HTTP/1.1\r\n\r\n", false),
    ];
    for (raw, fast) in rows {
        let (parsed, rest) = parsed(raw);
        match parsed {
            Parsed::Head(_) => {
                assert!(*fast, "taken, but is hyper's: {raw:?}");
                assert!(rest.is_empty(), "head left bytes behind: {raw:?}");
            }
            Parsed::Other => {
                assert!(!*fast, "left to hyper: {raw:?}");
                assert_eq!(&rest[..], raw.as_bytes(), "bytes for hyper changed: {raw:?}");
            }
            Parsed::Partial => panic!("partial: {raw:?}"),
        }
    }
}

#[test]
fn a_head_with_length_and_transfer_encoding_is_taken_to_be_refused_and_closed() {
    for raw in [
        "POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
    ] {
        let (parsed, _) = parsed(raw);
        let Parsed::Head(Head { request, close }) = parsed else {
            panic!("left to hyper, which drops the length: {raw:?}");
        };
        assert!(close, "{raw:?}");
        assert!(request.headers().contains_key("content-length"));
        assert!(request.headers().contains_key("transfer-encoding"));
    }
}

#[test]
fn a_head_longer_than_the_limit_is_hypers() {
    let raw = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(200));
    for (limit, fast) in [(raw.len(), true), (raw.len() - 1, false)] {
        let mut buf = BytesMut::from(raw.as_bytes());
        let taken = matches!(parse(&mut buf, limit), Parsed::Head(_));
        assert_eq!(taken, fast, "limit {limit} for a head of {}", raw.len());
    }
}

#[test]
fn a_head_becomes_the_request_hyper_would_build() {
    let raw = "GET /p/a?x=1 HTTP/1.1\r\nHost: example\r\nX-Two: a\r\nx-two: b\r\nConnection: Close\r\n\r\nGET /next";
    let (parsed, rest) = parsed(raw);
    let Parsed::Head(Head { request, close }) = parsed else {
        panic!("not taken");
    };
    assert!(close);
    assert_eq!(&rest[..], b"GET /next", "pipelined bytes stay");
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/p/a");
    assert_eq!(request.uri().query(), Some("x=1"));
    assert_eq!(request.version(), Version::HTTP_11);
    assert_eq!(request.headers()["host"], "example");
    let two: Vec<_> = request.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["a", "b"]);
}

#[test]
fn an_incomplete_head_waits_for_more_bytes() {
    let full = "GET /abc HTTP/1.1\r\nHost: a\r\n\r\n";
    for cut in 1..full.len() {
        let (parsed, rest) = parsed(&full[..cut]);
        assert!(matches!(parsed, Parsed::Partial), "cut at {cut}");
        assert_eq!(rest.len(), cut);
    }
}

fn head_of(response: Response<Body>, is_head: bool, close: bool) -> (String, Framing) {
    let (parts, body) = response.into_parts();
    let mut out = Vec::new();
    let (framing, _) = encode_head(&mut out, &parts, &body, is_head, close);
    let text = String::from_utf8(out).expect("ascii head");
    // The date changes; its presence is checked, its value not.
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    let date = lines
        .iter()
        .position(|line| line.starts_with("date: "))
        .expect("a date header");
    lines.remove(date);
    (lines.join("|"), framing)
}

fn with_status(status: u16, body: Body, headers: &[(&str, &str)]) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    for (name, value) in headers {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    response
}

fn unknown_length() -> Body {
    let frames = futures_util::stream::iter([Ok::<_, crate::body::BoxError>(http_body::Frame::data(
        Bytes::from_static(b"x"),
    ))]);
    crate::body::boxed(StreamBody::new(frames))
}

#[test]
fn the_framing_is_the_one_hyper_chooses() {
    use crate::body::{empty, full};
    // (status, body, headers, HEAD request, client asked to close) → head lines, framing
    let rows: Vec<(Response<Body>, bool, bool, &str, Framing)> = vec![
        (
            with_status(200, full("hello"), &[]),
            false,
            false,
            "HTTP/1.1 200 OK|content-length: 5||",
            Framing::Length(5),
        ),
        (
            with_status(404, full("no"), &[("x-a", "1")]),
            false,
            false,
            "HTTP/1.1 404 Not Found|x-a: 1|content-length: 2||",
            Framing::Length(2),
        ),
        (
            with_status(200, empty(), &[]),
            false,
            false,
            "HTTP/1.1 200 OK|content-length: 0||",
            Framing::Empty,
        ),
        (
            with_status(200, unknown_length(), &[]),
            false,
            false,
            "HTTP/1.1 200 OK|transfer-encoding: chunked||",
            Framing::Chunked,
        ),
        // A declared length frames a body of unknown length.
        (
            with_status(200, unknown_length(), &[("content-length", "1")]),
            false,
            false,
            "HTTP/1.1 200 OK|content-length: 1||",
            Framing::Length(1),
        ),
        // HEAD: the length is announced, no body follows; an empty body announces nothing.
        (
            with_status(200, unknown_length(), &[("content-length", "100")]),
            true,
            false,
            "HTTP/1.1 200 OK|content-length: 100||",
            Framing::Empty,
        ),
        (
            with_status(200, full("hello"), &[]),
            true,
            false,
            "HTTP/1.1 200 OK|content-length: 5||",
            Framing::Empty,
        ),
        (
            with_status(200, empty(), &[]),
            true,
            false,
            "HTTP/1.1 200 OK||",
            Framing::Empty,
        ),
        (
            with_status(200, empty(), &[("content-length", "7")]),
            true,
            false,
            "HTTP/1.1 200 OK|content-length: 7||",
            Framing::Empty,
        ),
        // 204 and 304 carry no length and no body.
        (
            with_status(204, empty(), &[]),
            false,
            false,
            "HTTP/1.1 204 No Content||",
            Framing::Empty,
        ),
        (
            with_status(304, empty(), &[("etag", "\"a\""), ("content-length", "10")]),
            false,
            false,
            "HTTP/1.1 304 Not Modified|etag: \"a\"||",
            Framing::Empty,
        ),
        // A length header on an empty body is dropped (not HEAD).
        (
            with_status(200, empty(), &[("content-length", "3")]),
            false,
            false,
            "HTTP/1.1 200 OK|content-length: 0||",
            Framing::Empty,
        ),
        // Closing: said once.
        (
            with_status(200, full("a"), &[]),
            false,
            true,
            "HTTP/1.1 200 OK|connection: close|content-length: 1||",
            Framing::Length(1),
        ),
        (
            with_status(200, full("a"), &[("connection", "Close")]),
            false,
            true,
            "HTTP/1.1 200 OK|connection: Close|content-length: 1||",
            Framing::Length(1),
        ),
        (
            with_status(599, full("a"), &[]),
            false,
            false,
            "HTTP/1.1 599 <none>|content-length: 1||",
            Framing::Length(1),
        ),
    ];
    for (index, (response, is_head, close, expected, framing)) in rows.into_iter().enumerate() {
        let (head, got) = head_of(response, is_head, close);
        assert_eq!(head, expected, "row {index}");
        assert!(got == framing, "row {index}: framing");
    }
}

#[test]
fn a_response_that_says_close_ends_the_connection() {
    // (the response's Connection values, the client asked to close) → the connection ends
    let rows: [(&[&str], bool, bool); 6] = [
        (&[], false, false),
        (&["close"], false, true),
        (&["keep-alive"], false, false),
        (&["x-a", "Keep-Alive, CLOSE"], false, true),
        (&[], true, true),
        (&["close"], true, true),
    ];
    for (index, (values, client_close, expected)) in rows.into_iter().enumerate() {
        let pairs: Vec<(&str, &str)> = values.iter().map(|value| ("connection", *value)).collect();
        let (parts, body) = with_status(200, crate::body::full("a"), &pairs).into_parts();
        let mut out = Vec::new();
        let (_, close_listed) = encode_head(&mut out, &parts, &body, false, client_close);
        assert_eq!(client_close || close_listed, expected, "row {index}");
        let text = String::from_utf8(out).expect("ascii");
        let said = text.to_ascii_lowercase().matches("close").count();
        assert_eq!(said, usize::from(expected), "row {index}: {text}");
    }
}

#[test]
fn an_existing_date_is_kept() {
    let response = with_status(200, crate::body::empty(), &[("date", "Tue, 01 Jan 2030 00:00:00 GMT")]);
    let (parts, body) = response.into_parts();
    let mut out = Vec::new();
    encode_head(&mut out, &parts, &body, false, false);
    let text = String::from_utf8(out).expect("ascii");
    assert_eq!(text.matches("date: ").count(), 1, "{text}");
    assert!(text.contains("date: Tue, 01 Jan 2030 00:00:00 GMT"), "{text}");
}

/// Writes `response` to a buffer and returns the bytes and whether the connection may go on.
async fn written(response: Response<Body>, is_head: bool) -> (String, bool) {
    let mut wire = Vec::new();
    let mut out = Vec::new();
    let keep = write_response(&mut wire, &mut out, response, is_head, false)
        .await
        .expect("write");
    let text = String::from_utf8(wire).expect("ascii");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (body, keep)
}

#[tokio::test]
async fn bodies_are_written_as_framed() {
    let (body, keep) = written(with_status(200, crate::body::full("hello"), &[]), false).await;
    assert_eq!((body.as_str(), keep), ("hello", true));
    let (body, keep) = written(with_status(200, unknown_length(), &[]), false).await;
    assert_eq!((body.as_str(), keep), ("1\r\nx\r\n0\r\n\r\n", true));
    let (body, keep) = written(with_status(200, crate::body::full("hello"), &[]), true).await;
    assert_eq!((body.as_str(), keep), ("", true));
    // A body shorter or longer than its declared length ends the connection.
    let (body, keep) = written(with_status(200, unknown_length(), &[("content-length", "3")]), false).await;
    assert_eq!((body.as_str(), keep), ("x", false));
    let long = Full::new(Bytes::from_static(b"abcdef"));
    let (body, keep) = written(
        with_status(200, crate::body::boxed(long), &[("content-length", "3")]),
        false,
    )
    .await;
    assert_eq!((body.as_str(), keep), ("abc", false));
    // A failing body ends the connection without the last chunk.
    let failing = futures_util::stream::iter([
        Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
        Err::<http_body::Frame<Bytes>, crate::body::BoxError>("broken".into()),
    ]);
    let (body, keep) = written(
        with_status(200, crate::body::boxed(StreamBody::new(failing)), &[]),
        false,
    )
    .await;
    assert_eq!((body.as_str(), keep), ("2\r\nab\r\n", false));
}
