//! Range requests on `localDir` routes (RFC 9110 §14): one table of Range/If-Range headers against
//! files of known content, and parts of a large file compared byte for byte.

use std::collections::HashMap;

use serde_json::json;

use crate::support::gateway;
use crate::support::raw::{exchange, request};
use crate::SUB_INDEX;

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// What a range row expects of the body, as a slice of the requested file.
#[derive(Clone, Copy)]
enum Part {
    /// Bytes `start..end` of the file.
    Bytes(usize, usize),
    Whole,
    Empty,
    /// Not compared (compressed).
    Unchecked,
}

struct RangeRow {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    /// Request headers; `{etag}` and `{last-modified}` are the validators of `target`.
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    /// `Content-Range`; "" means absent.
    content_range: &'static str,
    /// `Content-Length`; "" means absent.
    content_length: &'static str,
    /// More response headers: "" means absent, "*" means present with any value.
    response_headers: &'static [(&'static str, &'static str)],
    body: Part,
}

/// The headers every 206 must share with the 200 of the same file.
const PARTIAL_HEADERS: &[(&str, &str)] = &[
    ("etag", "*"),
    ("last-modified", "*"),
    ("cache-control", "public, max-age=0"),
    ("content-type", "text/plain; charset=UTF-8"),
    ("accept-ranges", "bytes"),
];

const fn range_row(
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    content_range: &'static str,
    content_length: &'static str,
    body: Part,
) -> RangeRow {
    RangeRow {
        name,
        method: "GET",
        target: "/ui/letters.txt",
        headers,
        status,
        content_range,
        content_length,
        response_headers: &[],
        body,
    }
}

const RANGE_ROWS: &[RangeRow] = &[
    RangeRow {
        response_headers: &[("accept-ranges", "bytes")],
        ..range_row("no Range: whole file", &[], 200, "", "26", Part::Whole)
    },
    RangeRow {
        response_headers: PARTIAL_HEADERS,
        ..range_row(
            "first bytes",
            &[("range", "bytes=0-4")],
            206,
            "bytes 0-4/26",
            "5",
            Part::Bytes(0, 5),
        )
    },
    range_row(
        "middle",
        &[("range", "bytes=10-12")],
        206,
        "bytes 10-12/26",
        "3",
        Part::Bytes(10, 13),
    ),
    range_row(
        "one byte",
        &[("range", "bytes=25-25")],
        206,
        "bytes 25-25/26",
        "1",
        Part::Bytes(25, 26),
    ),
    range_row(
        "open-ended",
        &[("range", "bytes=20-")],
        206,
        "bytes 20-25/26",
        "6",
        Part::Bytes(20, 26),
    ),
    range_row(
        "suffix",
        &[("range", "bytes=-3")],
        206,
        "bytes 23-25/26",
        "3",
        Part::Bytes(23, 26),
    ),
    range_row(
        "suffix larger than the file",
        &[("range", "bytes=-100")],
        206,
        "bytes 0-25/26",
        "26",
        Part::Whole,
    ),
    range_row(
        "end beyond the size is clamped",
        &[("range", "bytes=20-100")],
        206,
        "bytes 20-25/26",
        "6",
        Part::Bytes(20, 26),
    ),
    range_row(
        "unit is case-insensitive",
        &[("range", "Bytes=1-2")],
        206,
        "bytes 1-2/26",
        "2",
        Part::Bytes(1, 3),
    ),
    range_row(
        "start at the size",
        &[("range", "bytes=26-")],
        416,
        "bytes */26",
        "*",
        Part::Unchecked,
    ),
    range_row(
        "start beyond the size",
        &[("range", "bytes=100-200")],
        416,
        "bytes */26",
        "*",
        Part::Unchecked,
    ),
    range_row(
        "empty suffix",
        &[("range", "bytes=-0")],
        416,
        "bytes */26",
        "*",
        Part::Unchecked,
    ),
    range_row("invalid syntax", &[("range", "bytes=abc")], 200, "", "26", Part::Whole),
    range_row(
        "last before first",
        &[("range", "bytes=5-2")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    range_row("another unit", &[("range", "items=0-4")], 200, "", "26", Part::Whole),
    range_row(
        "several ranges",
        &[("range", "bytes=0-1,5-6")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    range_row(
        "more ranges than parsed",
        &[(
            "range",
            "bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,16-16",
        )],
        200,
        "",
        "26",
        Part::Whole,
    ),
    range_row(
        "If-Range with the Last-Modified date",
        &[("range", "bytes=0-4"), ("if-range", "{last-modified}")],
        206,
        "bytes 0-4/26",
        "5",
        Part::Bytes(0, 5),
    ),
    range_row(
        "If-Range with another date",
        &[("range", "bytes=0-4"), ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    range_row(
        "If-Range with a stale ETag",
        &[("range", "bytes=0-4"), ("if-range", "\"1a-0\"")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    // The ETag is weak (as the reference's), and If-Range compares strongly (RFC 9110 §13.1.5).
    range_row(
        "If-Range with the current weak ETag",
        &[("range", "bytes=0-4"), ("if-range", "{etag}")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    range_row(
        "If-Range not matching ignores an unsatisfiable range",
        &[("range", "bytes=100-"), ("if-range", "\"1a-0\"")],
        200,
        "",
        "26",
        Part::Whole,
    ),
    RangeRow {
        method: "HEAD",
        response_headers: PARTIAL_HEADERS,
        ..range_row(
            "HEAD with a range",
            &[("range", "bytes=2-5")],
            206,
            "bytes 2-5/26",
            "4",
            Part::Empty,
        )
    },
    RangeRow {
        method: "HEAD",
        ..range_row(
            "HEAD with an unsatisfiable range",
            &[("range", "bytes=30-")],
            416,
            "bytes */26",
            "*",
            Part::Empty,
        )
    },
    range_row(
        "If-None-Match 304 wins over Range",
        &[("range", "bytes=0-4"), ("if-none-match", "{etag}")],
        304,
        "",
        "",
        Part::Empty,
    ),
    range_row(
        "If-Modified-Since 304 wins over Range",
        &[("range", "bytes=0-4"), ("if-modified-since", "{last-modified}")],
        304,
        "",
        "",
        Part::Empty,
    ),
    RangeRow {
        target: "/ui/empty.txt",
        ..range_row(
            "empty file",
            &[("range", "bytes=0-")],
            416,
            "bytes */0",
            "*",
            Part::Unchecked,
        )
    },
    RangeRow {
        target: "/ui/empty.txt",
        ..range_row(
            "empty file, suffix",
            &[("range", "bytes=-1")],
            416,
            "bytes */0",
            "*",
            Part::Unchecked,
        )
    },
    RangeRow {
        target: "/ui/empty.txt",
        ..range_row("empty file without a range", &[], 200, "", "0", Part::Empty)
    },
    RangeRow {
        target: "/cached/letters.txt",
        response_headers: &[("cache-control", "public, max-age=60")],
        ..range_row(
            "cacheControl of the route",
            &[("range", "bytes=0-0")],
            206,
            "bytes 0-0/26",
            "1",
            Part::Bytes(0, 1),
        )
    },
    RangeRow {
        target: "/ui/sub",
        ..range_row(
            "folder redirect ignores Range",
            &[("range", "bytes=0-0")],
            301,
            "",
            "*",
            Part::Unchecked,
        )
    },
    RangeRow {
        target: "/ui/sub/",
        ..range_row(
            "folder index",
            &[("range", "bytes=4-6")],
            206,
            "bytes 4-6/12",
            "3",
            Part::Bytes(4, 7),
        )
    },
    // The control for the next row: this file is compressed when served whole.
    RangeRow {
        target: "/ui/long.txt",
        response_headers: &[("content-encoding", "gzip"), ("accept-ranges", "")],
        ..range_row(
            "whole compressible file is compressed",
            &[("accept-encoding", "gzip")],
            200,
            "",
            "",
            Part::Unchecked,
        )
    },
    RangeRow {
        target: "/ui/long.txt",
        response_headers: &[("content-encoding", "")],
        ..range_row(
            "a part is never compressed",
            &[("range", "bytes=100-4195"), ("accept-encoding", "gzip")],
            206,
            "bytes 100-4195/8000",
            "4096",
            Part::Bytes(100, 4196),
        )
    },
];

/// A compressible text file of 8000 bytes.
fn long_text() -> Vec<u8> {
    (0..8000u32).map(|i| b"0123456789 line\n"[(i % 16) as usize]).collect()
}

/// Five MiB of bytes that repeat nowhere near a chunk boundary.
fn large_content() -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..5 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

async fn start_ranges() -> crate::support::Gateway {
    let xs_app = json!({
        "authenticationMethod": "none",
        "routes": [
            {"source": "^/ui/(.*)$", "target": "/$1", "localDir": "webapp"},
            {"source": "^/cached/(.*)$", "target": "/$1", "localDir": "webapp", "cacheControl": "public, max-age=60"}
        ]
    });
    gateway(xs_app)
        .file("webapp/letters.txt", LETTERS)
        .file("webapp/empty.txt", "")
        .file("webapp/long.txt", long_text())
        .file("webapp/sub/index.html", SUB_INDEX)
        .file("webapp/large.bin", large_content())
        .start()
        .await
}

#[tokio::test]
async fn range_requests_table() {
    let router = start_ranges().await;
    let files: HashMap<&str, Vec<u8>> = HashMap::from([
        ("/ui/letters.txt", LETTERS.as_bytes().to_vec()),
        ("/cached/letters.txt", LETTERS.as_bytes().to_vec()),
        ("/ui/empty.txt", Vec::new()),
        ("/ui/long.txt", long_text()),
        ("/ui/sub/", SUB_INDEX.as_bytes().to_vec()),
        ("/ui/sub", Vec::new()),
    ]);
    let mut failures = Vec::new();
    for row in RANGE_ROWS {
        let first = exchange(router.addr, &request("GET", row.target, &[])).await;
        let etag = first.header("etag").unwrap_or_default().to_string();
        let last_modified = first.header("last-modified").unwrap_or_default().to_string();
        let headers: Vec<(&str, String)> = row
            .headers
            .iter()
            .map(|(name, value)| {
                let value = value
                    .replace("{etag}", &etag)
                    .replace("{last-modified}", &last_modified);
                (*name, value)
            })
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let response = exchange(router.addr, &request(row.method, row.target, &headers)).await;
        if response.status != row.status {
            failures.push(format!("{}: status {} != {}", row.name, response.status, row.status));
        }
        let expected = [
            ("content-range", row.content_range),
            ("content-length", row.content_length),
        ];
        for (name, want) in expected.iter().chain(row.response_headers) {
            let got = response.header(name);
            let ok = match *want {
                "" => got.is_none(),
                "*" => got.is_some(),
                want => got == Some(want),
            };
            if !ok {
                failures.push(format!("{}: header {name} = {got:?}, want {want:?}", row.name));
            }
        }
        let file = &files[row.target];
        let want: Option<&[u8]> = match row.body {
            Part::Bytes(start, end) => Some(&file[start..end]),
            Part::Whole => Some(file),
            Part::Empty => Some(&[]),
            Part::Unchecked => None,
        };
        if let Some(want) = want {
            if response.body != want {
                failures.push(format!(
                    "{}: body {:?}, want {:?}",
                    row.name,
                    preview(&response.body),
                    preview(want)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "range rows failed:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn large_file_ranges_send_exactly_the_part() {
    let router = start_ranges().await;
    let content = large_content();
    let length = content.len();
    // Unaligned starts and lengths spanning many read chunks; the first and the last byte.
    let rows: &[(&str, usize, usize)] = &[
        ("bytes=1500001-3700000", 1_500_001, 3_700_001),
        ("bytes=65535-131072", 65_535, 131_073),
        ("bytes=-70001", length - 70_001, length),
        ("bytes=5242879-", length - 1, length),
        ("bytes=0-0", 0, 1),
    ];
    for (range, start, end) in rows {
        let response = exchange(router.addr, &request("GET", "/ui/large.bin", &[("range", range)])).await;
        assert_eq!(response.status, 206, "{range}");
        let content_range = format!("bytes {start}-{}/{length}", end - 1);
        assert_eq!(
            response.header("content-range"),
            Some(content_range.as_str()),
            "{range}"
        );
        let content_length = (end - start).to_string();
        assert_eq!(
            response.header("content-length"),
            Some(content_length.as_str()),
            "{range}"
        );
        assert!(
            response.body == content[*start..*end],
            "{range}: body differs from the file's bytes"
        );
    }
}

/// The start of a body, for failure messages.
fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
}
