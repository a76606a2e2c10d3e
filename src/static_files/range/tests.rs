use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, IF_RANGE, RANGE};

use super::*;

const WEAK_ETAG: &str = "W/\"1a-18f\"";
const STRONG_ETAG: &str = "\"1a-18f\"";

fn modified() -> SystemTime {
    // 2024-05-01T12:00:00Z and a fraction, as a file system reports it.
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_714_564_800_250)
}

#[test]
fn parse_table() {
    use Spec::{FromTo, Suffix};
    let rows: &[(&str, Option<&[Spec]>)] = &[
        (
            "bytes=0-0",
            Some(&[FromTo {
                first: 0,
                last: Some(0),
            }]),
        ),
        (
            "bytes=0-499",
            Some(&[FromTo {
                first: 0,
                last: Some(499),
            }]),
        ),
        ("bytes=500-", Some(&[FromTo { first: 500, last: None }])),
        ("bytes=-500", Some(&[Suffix(500)])),
        ("bytes=-0", Some(&[Suffix(0)])),
        (
            "Bytes=1-2",
            Some(&[FromTo {
                first: 1,
                last: Some(2),
            }]),
        ),
        (
            "BYTES=1-2",
            Some(&[FromTo {
                first: 1,
                last: Some(2),
            }]),
        ),
        (
            "bytes=0-1, 5-6",
            Some(&[
                FromTo {
                    first: 0,
                    last: Some(1),
                },
                FromTo {
                    first: 5,
                    last: Some(6),
                },
            ]),
        ),
        (
            "bytes=0-1,,\t-3 ,",
            Some(&[
                FromTo {
                    first: 0,
                    last: Some(1),
                },
                Suffix(3),
            ]),
        ),
        (
            "bytes=0-99999999999999999999999",
            Some(&[FromTo {
                first: 0,
                last: Some(u64::MAX),
            }]),
        ),
        (
            "bytes=99999999999999999999999-",
            Some(&[FromTo {
                first: u64::MAX,
                last: None,
            }]),
        ),
        ("bytes=5-4", None),
        ("bytes=", None),
        ("bytes=,", None),
        ("bytes=-", None),
        ("bytes=1", None),
        ("bytes=a-b", None),
        ("bytes=+1-2", None),
        ("bytes=1-+2", None),
        ("bytes=1--2", None),
        ("bytes=-1-2", None),
        ("bytes=0x1-2", None),
        ("bytes=１-2", None),
        ("bytes=0-1,x", None),
        ("bytes 0-1", None),
        ("bytes =0-1", None),
        ("items=0-1", None),
        ("=0-1", None),
        ("", None),
    ];
    for (value, want) in rows {
        assert_eq!(parse(value).as_deref(), *want, "Range: {value}");
    }
}

#[test]
fn parse_caps_the_number_of_ranges() {
    let sixteen = vec!["0-0"; MAX_RANGES].join(",");
    assert_eq!(
        parse(&format!("bytes={sixteen}")).map(|specs| specs.len()),
        Some(MAX_RANGES)
    );
    let seventeen = vec!["0-0"; MAX_RANGES + 1].join(",");
    assert_eq!(parse(&format!("bytes={seventeen}")), None);
    let hostile = format!("bytes={}", "1-2,".repeat(100_000));
    assert_eq!(parse(&hostile), None);
}

#[test]
fn select_table() {
    use Spec::{FromTo, Suffix};
    let rows: &[(Spec, u64, Plan)] = &[
        (
            FromTo {
                first: 0,
                last: Some(4),
            },
            26,
            Plan::Part { start: 0, end: 4 },
        ),
        (
            FromTo {
                first: 10,
                last: Some(12),
            },
            26,
            Plan::Part { start: 10, end: 12 },
        ),
        (FromTo { first: 20, last: None }, 26, Plan::Part { start: 20, end: 25 }),
        (
            FromTo {
                first: 20,
                last: Some(1000),
            },
            26,
            Plan::Part { start: 20, end: 25 },
        ),
        (
            FromTo {
                first: 25,
                last: Some(25),
            },
            26,
            Plan::Part { start: 25, end: 25 },
        ),
        (
            FromTo {
                first: 0,
                last: Some(u64::MAX),
            },
            26,
            Plan::Part { start: 0, end: 25 },
        ),
        (FromTo { first: 26, last: None }, 26, Plan::Unsatisfiable),
        (
            FromTo {
                first: 27,
                last: Some(30),
            },
            26,
            Plan::Unsatisfiable,
        ),
        (
            FromTo {
                first: u64::MAX,
                last: None,
            },
            26,
            Plan::Unsatisfiable,
        ),
        (Suffix(3), 26, Plan::Part { start: 23, end: 25 }),
        (Suffix(26), 26, Plan::Part { start: 0, end: 25 }),
        (Suffix(1000), 26, Plan::Part { start: 0, end: 25 }),
        (Suffix(u64::MAX), 26, Plan::Part { start: 0, end: 25 }),
        (Suffix(0), 26, Plan::Unsatisfiable),
        (FromTo { first: 0, last: None }, 0, Plan::Unsatisfiable),
        (
            FromTo {
                first: 0,
                last: Some(0),
            },
            0,
            Plan::Unsatisfiable,
        ),
        (Suffix(5), 0, Plan::Unsatisfiable),
    ];
    for (spec, length, want) in rows {
        assert_eq!(select(*spec, *length), *want, "{spec:?} of {length} bytes");
    }
}

#[test]
fn if_range_table() {
    let exact = httpdate::fmt_http_date(modified());
    let second_later = httpdate::fmt_http_date(modified() + Duration::from_secs(1));
    let second_earlier = httpdate::fmt_http_date(modified() - Duration::from_secs(1));
    let rows: &[(&str, &str, bool)] = &[
        // Strong comparison: equal strong tags only.
        (STRONG_ETAG, STRONG_ETAG, true),
        (" \"1a-18f\" ", STRONG_ETAG, true),
        ("\"1a-190\"", STRONG_ETAG, false),
        ("W/\"1a-18f\"", STRONG_ETAG, false),
        (STRONG_ETAG, WEAK_ETAG, false),
        (WEAK_ETAG, WEAK_ETAG, false),
        ("\"1a-18f\", \"x\"", STRONG_ETAG, false),
        ("*", STRONG_ETAG, false),
        // Dates: exactly the Last-Modified second, whatever the ETag.
        (&exact, WEAK_ETAG, true),
        ("Wed, 01 May 2024 12:00:00 GMT", WEAK_ETAG, true),
        ("Wednesday, 01-May-24 12:00:00 GMT", WEAK_ETAG, true),
        (&second_later, WEAK_ETAG, false),
        (&second_earlier, WEAK_ETAG, false),
        ("not a date", WEAK_ETAG, false),
        ("", WEAK_ETAG, false),
    ];
    for (value, etag, want) in rows {
        assert_eq!(
            if_range_matches(value, etag, modified()),
            *want,
            "If-Range: {value} against {etag}"
        );
    }
}

#[test]
fn plan_table() {
    let date = httpdate::fmt_http_date(modified());
    let rows: &[(&[(&str, &str)], Plan)] = &[
        (&[], Plan::Full),
        (&[("range", "bytes=1-2")], Plan::Part { start: 1, end: 2 }),
        (&[("range", "bytes=30-")], Plan::Unsatisfiable),
        (&[("range", "bytes=0-1,5-6")], Plan::Full),
        (&[("range", "bytes=30-,40-")], Plan::Full),
        (&[("range", "bytes=2-1")], Plan::Full),
        (&[("range", "lines=1-2")], Plan::Full),
        // Two Range fields are not a valid header.
        (&[("range", "bytes=1-2"), ("range", "bytes=3-4")], Plan::Full),
        (
            &[("range", "bytes=1-2"), ("if-range", &date)],
            Plan::Part { start: 1, end: 2 },
        ),
        (&[("range", "bytes=30-"), ("if-range", &date)], Plan::Unsatisfiable),
        (
            &[("range", "bytes=1-2"), ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT")],
            Plan::Full,
        ),
        (&[("range", "bytes=1-2"), ("if-range", WEAK_ETAG)], Plan::Full),
        (&[("if-range", &date)], Plan::Full),
    ];
    for (headers, want) in rows {
        let mut map = HeaderMap::new();
        for (name, value) in *headers {
            let name = if *name == "range" { RANGE } else { IF_RANGE };
            map.append(name, HeaderValue::from_str(value).expect("header value"));
        }
        assert_eq!(plan(&map, 26, WEAK_ETAG, modified()), *want, "{headers:?}");
    }
    // A strong current tag: If-Range with it applies the range.
    let mut map = HeaderMap::new();
    map.insert(RANGE, HeaderValue::from_static("bytes=-4"));
    map.insert(IF_RANGE, HeaderValue::from_static(STRONG_ETAG));
    assert_eq!(
        plan(&map, 26, STRONG_ETAG, modified()),
        Plan::Part { start: 22, end: 25 }
    );
    // Bytes that are not visible ASCII: ignored, not an error.
    let mut map = HeaderMap::new();
    map.insert(RANGE, HeaderValue::from_bytes(b"bytes=\xff-1").expect("opaque value"));
    assert_eq!(plan(&map, 26, WEAK_ETAG, modified()), Plan::Full);
}
