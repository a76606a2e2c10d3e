use super::*;

#[test]
fn content_length_is_digits_only() {
    // (value, length)
    let rows: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("42", Some(42)),
        (" 7\t", Some(7)),
        ("0012", Some(12)),
        ("9999999999999999999", Some(9_999_999_999_999_999_999)),
        ("18446744073709551615", Some(u64::MAX)),
        ("18446744073709551616", None),
        ("", None),
        ("+5", None),
        ("-1", None),
        ("5 5", None),
        ("5, 5", None),
        ("0x10", None),
        ("1e3", None),
    ];
    for (value, length) in rows {
        assert_eq!(content_length(value.as_bytes()), *length, "{value:?}");
    }
}

/// The length a list gives, or why it gives none.
type Listed = Result<Option<u64>, &'static str>;

#[test]
fn content_length_lists_must_agree() {
    // (previous, value, result)
    let rows: &[(Option<u64>, &str, Listed)] = &[
        (None, "5", Ok(Some(5))),
        (None, "5, 5", Ok(Some(5))),
        (Some(5), "5", Ok(Some(5))),
        (None, "5, 6", Err("conflicting content-length")),
        (Some(4), "5", Err("conflicting content-length")),
        (None, "5,", Err("invalid content-length")),
        (None, "x", Err("invalid content-length")),
    ];
    for (previous, value, result) in rows {
        assert_eq!(content_length_list(*previous, value.as_bytes()), *result, "{value:?}");
    }
}

#[test]
fn token_lists_split_on_commas_and_ignore_case() {
    assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
    assert!(has_token(b" close ", b"close"));
    assert!(!has_token(b"closed", b"close"));
    assert!(!has_token(b"keep-alive;close", b"close"));
    let listed: Vec<&[u8]> = tokens(b"a, ,b").collect();
    assert_eq!(listed, [&b"a"[..], b"", b"b"]);
}

#[test]
fn heads_are_written_as_on_the_wire() {
    let mut out = Vec::new();
    write_status_line(&mut out, StatusCode::OK);
    write_status_line(&mut out, StatusCode::NOT_FOUND);
    write_request_line(&mut out, "GET", "a?b");
    write_field(&mut out, b"host", b"x");
    write_content_length(&mut out, 0);
    write_content_length(&mut out, u64::MAX);
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "HTTP/1.1 200 OK\r\nHTTP/1.1 404 Not Found\r\nGET /a?b HTTP/1.1\r\nhost: x\r\n\
         content-length: 0\r\ncontent-length: 18446744073709551615\r\n"
    );
}

#[test]
fn only_204_304_and_head_answers_have_no_body() {
    assert!(response_has_no_body(true, StatusCode::OK));
    assert!(response_has_no_body(false, StatusCode::NO_CONTENT));
    assert!(response_has_no_body(false, StatusCode::NOT_MODIFIED));
    assert!(!response_has_no_body(false, StatusCode::OK));
    assert!(!status_has_no_body(StatusCode::RESET_CONTENT));
}
