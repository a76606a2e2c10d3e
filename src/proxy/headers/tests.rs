#[test]
fn addresses_are_written_as_display_writes_them() {
    for text in [
        "0.0.0.0",
        "127.0.0.1",
        "255.255.255.255",
        "10.1.20.100",
        "9.99.100.109",
        "::1",
        "2001:db8::8a2e:370:7334",
        "::ffff:192.0.2.1",
    ] {
        let address: std::net::IpAddr = text.parse().unwrap();
        assert_eq!(
            super::IpText::of(address).as_bytes(),
            address.to_string().as_bytes(),
            "{text}"
        );
    }
}

#[test]
fn traceparent_passes_through_when_valid_and_is_created_otherwise() {
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let table: &[(&str, bool)] = &[
        (valid, true),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false),
        ("garbage", false),
    ];
    for (traceparent, kept) in table {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
        headers.insert("tracestate", HeaderValue::from_static("vendor=1"));
        forward(&mut headers);
        let sent = headers["traceparent"].to_str().unwrap();
        assert_eq!(sent == *traceparent, *kept, "{traceparent}");
        assert_eq!(headers.contains_key("tracestate"), *kept, "{traceparent}");
        assert!(valid_traceparent(sent.as_bytes()), "{sent}");
    }
    let mut headers = HeaderMap::new();
    forward(&mut headers);
    let first = headers["traceparent"].clone();
    assert!(valid_traceparent(first.as_bytes()), "{first:?}");
    let mut again = HeaderMap::new();
    forward(&mut again);
    assert_ne!(
        again["traceparent"].as_bytes()[3..35],
        first.as_bytes()[3..35],
        "new trace ids"
    );
    let mut twice = HeaderMap::new();
    twice.append("traceparent", HeaderValue::from_static(valid));
    twice.append("traceparent", HeaderValue::from_static(valid));
    forward(&mut twice);
    assert_eq!(twice.get_all("traceparent").iter().count(), 1);
    // A tracestate without its traceparent goes too.
    let mut orphan = HeaderMap::new();
    orphan.append("tracestate", HeaderValue::from_static("vendor=1"));
    forward(&mut orphan);
    assert!(!orphan.contains_key("tracestate"));
    assert!(valid_traceparent(orphan["traceparent"].as_bytes()));
}

/// The request policy as a forwarded request meets it.
fn forward(headers: &mut HeaderMap) {
    let correlation_id = HeaderValue::from_static("id");
    let forwarding = Forwarding {
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
        scheme: "http",
        host: None,
        original_path: "/",
        set_x_forwarded: true,
        correlation_id: &correlation_id,
    };
    upstream_request(headers, &forwarding, TRUSTED);
}

/// Behind a trusted proxy, as the older rows were written.
const TRUSTED: Policy = Policy {
    trust_forwarded: true,
    allow_underscores: false,
};

use super::*;

/// The headers a backend gets, sorted, with a newly made `traceparent` as `new`.
fn as_sent(headers: &HeaderMap, extra: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(extra).expect("text");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    let lines = text.split_terminator("\r\n").map(|line| {
        let (name, value) = line.split_once(": ").expect("name: value");
        (name.to_owned(), value.to_owned())
    });
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().expect("text").to_owned()))
        .chain(lines)
        .map(|(name, value)| match name.as_str() {
            "traceparent" if !value.starts_with("00-4bf92f") => (name, "new".to_owned()),
            _ => (name, value),
        })
        .collect();
    all.sort();
    all
}

#[test]
fn headers_added_apart_are_those_the_map_would_get() {
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let correlation_id = HeaderValue::from_static("3f2b8c9e-5d1a");
    // Client headers, `setXForwardedHeaders`, the original path.
    type Row<'a, 'b> = (&'a [(&'b str, &'b str)], bool, &'b str);
    let table: &[Row<'_, '_>] = &[
        (&[("host", "app.example.com")], true, "/a/b"),
        (
            &[
                ("host", "app.example.com"),
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-host", "outer.example.com"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-path", "/outer"),
                ("x-correlationid", "theirs"),
                ("traceparent", valid),
                ("tracestate", "vendor=1"),
            ],
            true,
            "/a",
        ),
        (
            &[
                ("x-forwarded-for", " "),
                ("traceparent", "garbage"),
                ("tracestate", "vendor=1"),
                ("connection", "x-forwarded-host"),
                ("x-forwarded-host", "hop.example.com"),
            ],
            true,
            "/",
        ),
        (
            &[
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-host", "outer"),
                ("x-correlationid", "theirs"),
            ],
            false,
            "/a",
        ),
        // A path that makes no header value gets none.
        (&[], true, "/a\u{7f}"),
    ];
    for (index, (sent, set_x_forwarded, path)) in table.iter().enumerate() {
        let mut client = HeaderMap::new();
        for (name, value) in *sent {
            client.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let forwarding = Forwarding {
            peer: std::net::Ipv4Addr::new(10, 0, 0, 7).into(),
            scheme: "https",
            host: Some(HeaderValue::from_static("app.example.com")),
            original_path: path,
            set_x_forwarded: *set_x_forwarded,
            correlation_id: &correlation_id,
        };
        let mut inserted = client.clone();
        upstream_request(&mut inserted, &forwarding, TRUSTED);
        let mut apart = client.clone();
        let added = upstream_request_apart(&mut apart, &forwarding, TRUSTED);
        let mut written = Vec::new();
        added.write_to(&mut written);
        assert_eq!(written.len(), added.encoded_len(), "row {index}");
        assert_eq!(as_sent(&apart, &written), as_sent(&inserted, b""), "row {index}");
    }
    // The policy's own values where the client sent none or one it may not set.
    let mut headers = HeaderMap::new();
    headers.append("connection", HeaderValue::from_static("x-forwarded-host"));
    headers.append("x-forwarded-host", HeaderValue::from_static("hop.example.com"));
    headers.append("x-correlationid", HeaderValue::from_static("theirs"));
    upstream_request(
        &mut headers,
        &Forwarding {
            peer: std::net::Ipv4Addr::new(10, 0, 0, 7).into(),
            scheme: "https",
            host: Some(HeaderValue::from_static("app.example.com")),
            original_path: "/a",
            set_x_forwarded: true,
            correlation_id: &correlation_id,
        },
        TRUSTED,
    );
    assert_eq!(headers["x-forwarded-host"], "app.example.com");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.7");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-path"], "/a");
    assert_eq!(
        headers.get_all("x-correlationid").iter().collect::<Vec<_>>(),
        [&correlation_id]
    );
}

#[test]
fn connection_named_headers_are_removed() {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("X-Hop, keep-alive"));
    headers.insert("x-hop", HeaderValue::from_static("1"));
    headers.insert("X-Stay", HeaderValue::from_static("1"));
    headers.insert("Keep-Alive", HeaderValue::from_static("timeout=5"));
    remove_hop_by_hop(&mut headers);
    assert!(headers.get("x-hop").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert!(headers.get("connection").is_none());
    assert_eq!(headers.get("x-stay").unwrap(), "1");
}

#[test]
fn every_header_named_in_connection_goes_however_many() {
    let mut headers = HeaderMap::new();
    let named: Vec<String> = (0..12).map(|n| format!("x-hop-{n}")).collect();
    headers.insert("connection", HeaderValue::from_str(&named.join(", ")).unwrap());
    headers.append("connection", HeaderValue::from_static("x-late, keep-alive"));
    for name in named
        .iter()
        .map(String::as_str)
        .chain(["x-late", "keep-alive", "x-stay"])
    {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    remove_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["x-stay"]);
}
