use super::*;

#[test]
fn json_lines_are_valid_json_with_escaped_fields() {
    let capture = Arc::new(Mutex::new(Vec::new()));
    let sink = capture.clone();
    let make = move || CaptureWriter(sink.clone());
    let subscriber = subscriber(true, EnvFilter::new("trace"), make);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "access", text = "quote \" backslash \\ newline \n tab \t bell \u{7} é", count = 3u64, negative = -2i64, ok = true, ratio = 0.5f64, "a message");
        tracing::warn!(debug = ?Some("x"), error = %std::io::Error::other("broken \"pipe\""), "second");
    });
    let text = String::from_utf8(capture.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["text"], "quote \" backslash \\ newline \n tab \t bell \u{7} é");
    assert_eq!(lines[0]["count"], 3);
    assert_eq!(lines[0]["negative"], -2);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["ratio"], 0.5);
    assert_eq!(lines[0]["message"], "a message");
    assert_eq!(lines[0]["target"], "access");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[1]["debug"], "Some(\"x\")");
    assert_eq!(lines[1]["error"], "broken \"pipe\"");
    assert_eq!(lines[1]["level"], "WARN");
    let timestamp = lines[0]["timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), 27, "{timestamp}");
    assert!(
        timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "{timestamp}"
    );
}

#[test]
fn direct_access_lines_equal_the_subscribers_lines() {
    let correlation_id = http::HeaderValue::from_static("corr-1");
    let records = [
        AccessRecord {
            method: &http::Method::GET,
            path: "/plain",
            status: 200,
            route: Some(0),
            correlation_id: &correlation_id,
            duration_us: 1234,
            upstream_us: Some(987),
        },
        AccessRecord {
            method: &http::Method::from_bytes(b"PROPFIND").unwrap(),
            path: "/a \"b\"\\ é\u{7}",
            status: 404,
            route: None,
            correlation_id: &correlation_id,
            duration_us: 0,
            upstream_us: None,
        },
    ];
    for layout in [Layout::Text, Layout::Json] {
        for record in &records {
            let capture = Arc::new(Mutex::new(Vec::new()));
            let sink = capture.clone();
            let make = move || CaptureWriter(sink.clone());
            let subscriber = subscriber(layout == Layout::Json, EnvFilter::new("info"), make);
            tracing::subscriber::with_default(subscriber, || access(record));
            let expected = String::from_utf8(capture.lock().unwrap().clone()).unwrap();
            let mut direct = String::new();
            write_access(&mut direct, layout, SystemTime::now(), record).unwrap();
            // The timestamps differ; everything else is the same.
            let cut = |line: &str| {
                let at = line.find('Z').unwrap();
                (
                    line[..at].chars().filter(|c| !c.is_ascii_digit()).collect::<String>(),
                    line[at..].to_string(),
                )
            };
            assert_eq!(cut(&direct), cut(&expected), "{layout:?}");
            assert!(direct.ends_with('\n') && direct.matches('\n').count() == 1, "{direct}");
        }
    }
}

#[test]
fn text_lines_keep_the_plain_layout_with_quoted_strings() {
    let capture = Arc::new(Mutex::new(Vec::new()));
    let sink = capture.clone();
    let make = move || CaptureWriter(sink.clone());
    let subscriber = subscriber(false, EnvFilter::new("trace"), make);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "access", path = "/a \"b\"\nc", status = 200u64, route = Some(3usize), ok = true, "request");
        tracing::error!(error = %std::io::Error::other("refused"), delta = -4i64, "request failed");
    });
    let text = String::from_utf8(capture.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let (timestamp, rest) = lines[0].split_at(27);
    assert!(
        timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "{timestamp}"
    );
    assert_eq!(
        rest,
        r#"  INFO access: request path="/a \"b\"\nc" status=200 route=3 ok=true"#
    );
    assert!(
        lines[1].ends_with(" ERROR approuter::logging::tests: request failed error=refused delta=-4"),
        "{}",
        lines[1]
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    let table: &[(u64, u32, &str)] = &[
        (0, 0, "1970-01-01T00:00:00.000000Z"),
        (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
        (1_795_999_999, 123_456, "2026-11-30T00:53:19.123456Z"),
        (4_107_542_400, 999_999, "2100-03-01T00:00:00.999999Z"),
        // In order on one thread: the same second again (its date and time reused), the next
        // one, and an earlier one.
        (4_107_542_400, 7, "2100-03-01T00:00:00.000007Z"),
        (4_107_542_401, 0, "2100-03-01T00:00:01.000000Z"),
        (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
    ];
    for (secs, micros, expected) in table {
        let time = UNIX_EPOCH + Duration::from_secs(*secs) + Duration::from_micros(u64::from(*micros));
        let mut text = String::new();
        write_timestamp(&mut text, time).unwrap();
        assert_eq!(text, *expected);
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_levels_take_the_node_names() {
    for (level, expected) in [
        ("none", "off"),
        ("ERROR", "error"),
        ("fatal", "error"),
        ("warning", "warn"),
        ("Info", "info"),
        ("path", "debug"),
        ("debug", "debug"),
        ("verbose", "trace"),
    ] {
        let filter = filter_for(None, Some(level)).unwrap_or_else(|error| panic!("{level}: {error}"));
        assert_eq!(filter.to_string(), expected, "{level}");
    }
    assert_eq!(filter_for(None, None).expect("default").to_string(), "info");
    assert_eq!(
        filter_for(Some("access=off"), Some("debug"))
            .expect("RUST_LOG wins")
            .to_string(),
        "access=off"
    );
    assert!(filter_for(None, Some("approuter=debug")).is_ok());
    let error = filter_for(None, Some("loud")).expect_err("unknown");
    assert!(error.starts_with("XS_APP_LOG_LEVEL: unknown level \"loud\""), "{error}");
}
