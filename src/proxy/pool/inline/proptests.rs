//! Property tests of the inline client's response-head parser against `httparse`, which hyper's
//! client parses with: on any bytes it never panics; a head it returns is the one `httparse` reads
//! (status, fields, what is left in the buffer), framed by RFC 9112 §6.3; a plain head is never
//! refused; and it holds no more than it was given.

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use proptest::prelude::*;

use super::*;
use crate::http1::MAX_HEADERS;
use crate::proxy::headers::is_hop_by_hop;

/// A final head as `httparse` reads it, after interim (1xx) heads: (status, fields, head length
/// with the interim heads), or `None` while incomplete.
type Reference = Result<Option<(u16, u8, Vec<(String, Vec<u8>)>, usize)>, ()>;

fn reference(input: &[u8]) -> Reference {
    let mut at = 0;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(&input[at..]) {
            Ok(httparse::Status::Complete(length)) => {
                let code = parsed.code.unwrap_or_default();
                if (100..200).contains(&code) && code != 101 {
                    at += length;
                    continue;
                }
                let fields = parsed
                    .headers
                    .iter()
                    .map(|field| (field.name.to_ascii_lowercase(), field.value.to_vec()))
                    .collect();
                return Ok(Some((code, parsed.version.unwrap_or_default(), fields, at + length)));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(()),
        }
    }
}

fn is_framing(name: &str) -> bool {
    name == "content-length" || name == "transfer-encoding"
}

fn check(input: &[u8], is_head: bool) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(input);
    let parsed = parse_head(&mut buf, is_head);
    let expected = reference(input);
    match parsed {
        Ok(None) => {
            prop_assert!(input.len() < MAX_HEAD);
            prop_assert!(input.ends_with(&buf), "only interim heads are consumed");
            prop_assert_eq!(expected, Ok(None));
        }
        Ok(Some(head)) => {
            let Ok(Some((code, version, fields, length))) = expected else {
                return Err(TestCaseError::fail(format!(
                    "a head httparse does not read: {expected:?}"
                )));
            };
            prop_assert!(length <= MAX_HEAD);
            prop_assert_eq!(head.status.as_u16(), code);
            prop_assert!(code != 101 && code >= 200);
            prop_assert_eq!(&buf[..], &input[length..], "the head, and only it, is consumed");
            // Every field kept is one that was sent; every end-to-end field sent is kept.
            let mut kept: Vec<(String, Vec<u8>)> = head
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect();
            let mut sent = fields.clone();
            kept.sort();
            sent.sort();
            let mut rest = sent.clone();
            for field in &kept {
                let at = rest.iter().position(|other| other == field);
                prop_assert!(at.is_some(), "{:?} was not sent", field);
                rest.remove(at.unwrap_or_default());
            }
            for (name, _) in &rest {
                prop_assert!(is_hop_by_hop(name) || name == "content-length", "{} was dropped", name);
            }
            let value_of = |wanted: &'static str| fields.iter().filter(move |(name, _)| name == wanted);
            let coding = value_of("transfer-encoding").next_back();
            let expected_framing = if is_head || code == 204 || code == 304 {
                Framing::Empty
            } else if let Some((_, coding)) = coding {
                prop_assert!(version == 1, "transfer-encoding in HTTP/1.0 is refused");
                let last = coding.rsplit(|byte| *byte == b',').next().unwrap_or_default();
                match last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    true => Framing::Chunked,
                    false => Framing::Close,
                }
            } else {
                let lengths: Vec<u64> = value_of("content-length")
                    .flat_map(|(_, value)| value.split(|byte| *byte == b','))
                    .map(|part| {
                        std::str::from_utf8(part.trim_ascii())
                            .ok()
                            .and_then(|part| part.parse().ok())
                    })
                    .collect::<Option<Vec<u64>>>()
                    .unwrap_or_default();
                match lengths.first() {
                    Some(length) => {
                        prop_assert!(lengths.iter().all(|other| other == length), "conflicting lengths");
                        Framing::Length(*length)
                    }
                    None => Framing::Close,
                }
            };
            prop_assert_eq!(head.framing, expected_framing);
            if head.framing == Framing::Close {
                prop_assert!(!head.keep_alive, "a body read to the close ends the connection");
            }
        }
        Err(_) => {
            // A complete head with a valid status and valid fields, none of them framing, is
            // never refused.
            if let Ok(Some((code, _, fields, length))) = expected {
                let plain = length <= MAX_HEAD
                    && StatusCode::from_u16(code).is_ok()
                    && code != 101
                    && fields.iter().all(|(name, value)| {
                        !is_framing(name)
                            && HeaderName::from_bytes(name.as_bytes()).is_ok()
                            && HeaderValue::from_bytes(value).is_ok()
                    });
                prop_assert!(!plain, "a plain head was refused");
            }
        }
    }
    Ok(())
}

/// Response heads from parts that are mostly well-formed, with interim heads in front at times.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        8 => Just("HTTP/1.1"),
        2 => Just("HTTP/1.0"),
        1 => prop::sample::select(vec!["HTTP/2.0", "http/1.1", "HTTP/1.1 ", "HTTP/1"]),
    ];
    let status = prop_oneof![
        8 => prop::sample::select(vec!["200 OK", "204 No Content", "304 Not Modified", "404 Not Found", "599 x"]),
        1 => prop::sample::select(vec!["101 Switching", "000 Zero", "099 x", "20 OK", "2000 OK", "abc", "200", "999 x"]),
    ];
    let interim = prop::sample::select(vec![
        "",
        "",
        "",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early\r\nlink: a\r\n\r\n",
    ]);
    let name = prop_oneof![
        8 => prop::sample::select(vec![
            "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "X-A", "Set-Cookie", "Upgrade",
            "Proxy-Connection", "TE", "Trailer", "content-length",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,6}",
    ];
    let value = prop_oneof![
        8 => prop::sample::select(vec![
            "0", "5", "5, 5", "5,6", " 7 ", "abc", "-1", "18446744073709551616", "chunked", "gzip, chunked",
            "chunked, gzip", "gzip", "close", "keep-alive", "x-a", "x-a, close", "Keep-Alive, Upgrade", "",
        ])
        .prop_map(str::to_string),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ];
    (
        interim,
        version,
        status,
        prop::collection::vec((name, value), 0..6),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(interim, version, status, fields, after)| {
            let mut out = format!("{interim}{version} {status}\r\n").into_bytes();
            for (name, value) in fields {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&after);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_as_httparse_reads_them(input in prop::collection::vec(any::<u8>(), 0..256), is_head in prop::bool::weighted(0.2)) {
        check(&input, is_head)?;
    }

    #[test]
    fn generated_heads_parse_and_frame_by_the_rfc(input in head(), is_head in prop::bool::weighted(0.2)) {
        check(&input, is_head)?;
    }

    #[test]
    fn a_changed_byte_or_a_cut_never_misparses(
        input in head(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        is_head in prop::bool::weighted(0.2),
    ) {
        let mut input = input;
        let at = at.index(input.len());
        input[at] = byte;
        check(&input, is_head)?;
        check(&input[..at], is_head)?;
    }
}
