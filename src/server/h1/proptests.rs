//! Property tests of the fast lane's head parser against `httparse`, which hyper parses with: on
//! any bytes it never panics, it takes a head exactly when hyper would take it unchanged and the
//! head is bodiless HTTP/1.1, the request it builds is the parsed head, and bytes it leaves for
//! hyper are untouched.

use http::header::{HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

const LIMIT: usize = 2048;

/// What `httparse` says of `input`, and the head it parsed when complete.
fn reference(input: &[u8]) -> (Result<httparse::Status<usize>, httparse::Error>, Option<ReferenceHead>) {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let verdict = parsed.parse(input);
    let head = match verdict {
        Ok(httparse::Status::Complete(_)) => Some(ReferenceHead {
            method: parsed.method.unwrap_or_default().to_string(),
            path: parsed.path.unwrap_or_default().to_string(),
            version: parsed.version.unwrap_or_default(),
            headers: parsed
                .headers
                .iter()
                .map(|field| (field.name.to_ascii_lowercase(), field.value.to_vec()))
                .collect(),
        }),
        _ => None,
    };
    (verdict, head)
}

struct ReferenceHead {
    method: String,
    path: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl ReferenceHead {
    /// Whether hyper takes this head as it is and it is the fast lane's kind of request:
    /// HTTP/1.1, origin form, no body, no expectation, no upgrade, every field valid for `http`.
    /// A head with both framing fields is the fast lane's too, whatever else it has: it is refused
    /// there (hyper would drop the length and serve it).
    fn is_fast(&self) -> bool {
        let method = Method::from_bytes(self.method.as_bytes());
        self.version == 1
            && self.path.starts_with('/')
            && method.is_ok_and(|method| method != Method::CONNECT)
            && Uri::from_maybe_shared(Bytes::copy_from_slice(self.path.as_bytes())).is_ok()
            && self.headers.iter().all(|(name, value)| {
                HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_bytes(value).is_ok()
            })
            && (self.frames_twice()
                || self.headers.iter().all(|(name, value)| match name.as_str() {
                    "content-length" => value == b"0",
                    "transfer-encoding" | "expect" | "upgrade" => false,
                    "connection" => !has_token(value, b"upgrade"),
                    _ => true,
                }))
    }

    /// Both `Content-Length` and `Transfer-Encoding`.
    fn frames_twice(&self) -> bool {
        let has = |wanted: &str| self.headers.iter().any(|(name, _)| name == wanted);
        has("content-length") && has("transfer-encoding")
    }
}

fn check(input: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(input);
    let parsed = parse(&mut buf, LIMIT);
    let (verdict, head) = reference(input);
    match parsed {
        Parsed::Head(Head { request, close }) => {
            let (Ok(httparse::Status::Complete(length)), Some(head)) = (verdict, head) else {
                return Err(TestCaseError::fail("taken, but httparse does not parse it"));
            };
            prop_assert!(length <= LIMIT);
            prop_assert!(head.is_fast(), "taken, but not a request for the fast lane");
            prop_assert_eq!(&buf[..], &input[length..], "the head, and only it, is consumed");
            prop_assert_eq!(request.method().as_str(), head.method.as_str());
            prop_assert_eq!(request.version(), Version::HTTP_11);
            let target = request.uri().path_and_query().map_or("", |target| target.as_str());
            prop_assert!(head.path.starts_with(target), "{target:?} from {:?}", head.path);
            let mut built: Vec<(String, Vec<u8>)> = request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect();
            let mut expected = head.headers.clone();
            built.sort();
            expected.sort();
            prop_assert_eq!(built, expected);
            let asked_close = head
                .headers
                .iter()
                .any(|(name, value)| name == "connection" && has_token(value, b"close"));
            // A head with both framing fields closes the connection: its body's end is unknowable.
            prop_assert_eq!(close, asked_close || head.frames_twice());
        }
        Parsed::Partial => {
            prop_assert_eq!(&buf[..], input, "a partial head stays in the buffer");
            prop_assert!(matches!(verdict, Ok(httparse::Status::Partial)));
        }
        Parsed::Other => {
            prop_assert_eq!(&buf[..], input, "bytes for hyper stay as they came");
            let fast = matches!(verdict, Ok(httparse::Status::Complete(length)) if length <= LIMIT)
                && head.is_some_and(|head| head.is_fast());
            prop_assert!(!fast, "a request for the fast lane was left to hyper");
        }
    }
    Ok(())
}

/// Request heads built from parts that are mostly, not always, well-formed.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        8 => prop::sample::select(vec!["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PATCH"]),
        1 => prop::sample::select(vec!["CONNECT", "get", "G(T", "", "GET\t", "M\u{e9}"]),
    ];
    let target = prop_oneof![
        8 => "/[a-zA-Z0-9._~%/?#&=;:@!$'()*+,-]{0,30}",
        1 => "(\\*|http://a/b|/[ -\u{ff}]{0,12})",
    ];
    let version = prop_oneof![
        8 => Just("HTTP/1.1"),
        1 => prop::sample::select(vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "HTTP/1.1 ", "http/1.1"]),
    ];
    let name = prop_oneof![
        8 => prop::sample::select(vec![
            "Host", "Accept", "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Connection", "X-A",
            "cookie",
        ])
        .prop_map(str::to_string),
        1 => "[ -~\t]{0,8}",
    ];
    let value = prop_oneof![
        8 => prop::sample::select(vec!["", "0", "5", "close", "keep-alive, Close", "Upgrade", "chunked", "a b"])
            .prop_map(str::to_string),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ];
    let end = prop_oneof![8 => Just("\r\n"), 1 => Just("\n")];
    (
        method,
        target,
        version,
        prop::collection::vec((name, value), 0..8),
        end,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(method, target, version, fields, end, after)| {
            let mut out = format!("{method} {target} {version}{end}").into_bytes();
            for (name, value) in fields {
                out.extend_from_slice(format!("{name}: {value}{end}").as_bytes());
            }
            out.extend_from_slice(end.as_bytes());
            out.extend_from_slice(&after);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_taken_only_as_hyper_would_take_them(input in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&input)?;
    }

    #[test]
    fn generated_heads_are_taken_only_as_hyper_would_take_them(input in head()) {
        check(&input)?;
    }

    #[test]
    fn a_changed_byte_never_makes_a_head_wrongly_taken(
        input in head(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut input = input;
        let at = at.index(input.len());
        input[at] = byte;
        check(&input)?;
        // Every cut of it, too: an incomplete head waits, never taken half.
        check(&input[..at])?;
    }

    #[test]
    fn a_head_past_the_limit_is_left_to_hyper(padding in 0usize..64) {
        let input = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(LIMIT + padding));
        let mut buf = BytesMut::from(input.as_bytes());
        prop_assert!(matches!(parse(&mut buf, LIMIT), Parsed::Other));
        prop_assert_eq!(&buf[..], input.as_bytes());
    }
}
