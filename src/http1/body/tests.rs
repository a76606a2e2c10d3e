use bytes::BytesMut;

use super::*;

#[test]
fn chunk_sizes_are_lowercase_hex() {
    for (size, text) in [
        (0, "0\r\n"),
        (1, "1\r\n"),
        (15, "f\r\n"),
        (16, "10\r\n"),
        (4096, "1000\r\n"),
        (0xabcdef, "abcdef\r\n"),
    ] {
        let mut out = Vec::new();
        write_chunk_size(&mut out, size);
        assert_eq!(out, text.as_bytes(), "{size}");
    }
}

// === chunked bodies ===

/// Decoded data, or the error, and the bytes left after the body.
type Decoded = Result<(&'static str, &'static str), &'static str>;

#[test]
fn chunked_bodies_decode_the_same_at_every_split_point() {
    let long_extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(9000));
    let rows: &[(&str, &str, Decoded)] = &[
        ("one chunk", "5\r\nhello\r\n0\r\n\r\n", Ok(("hello", ""))),
        (
            "two chunks",
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            Ok(("hello world", "")),
        ),
        ("empty body", "0\r\n\r\n", Ok(("", ""))),
        ("upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", Ok(("0123456789", ""))),
        ("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", Ok(("hello", ""))),
        (
            "extensions",
            "5;name=value\r\nhello\r\n0;last\r\n\r\n",
            Ok(("hello", "")),
        ),
        (
            "spaces before extension",
            "5 \t; a=\"b c\"\r\nhello\r\n0\r\n\r\n",
            Ok(("hello", "")),
        ),
        (
            "trailers",
            "5\r\nhello\r\n0\r\nx-trailer: 1\r\nother: 2\r\n\r\n",
            Ok(("hello", "")),
        ),
        ("bytes after the body", "1\r\na\r\n0\r\n\r\nEXTRA", Ok(("a", "EXTRA"))),
        ("no size", "\r\nhello\r\n", Err("invalid chunk size")),
        ("not hex", "x\r\n", Err("invalid chunk size")),
        ("negative", "-5\r\n", Err("invalid chunk size")),
        ("0x prefix", "0x5\r\nhello\r\n", Err("invalid chunk size")),
        ("junk after size", "5x\r\nhello\r\n", Err("invalid chunk size")),
        (
            "bare LF",
            "5\nhello\r\n0\r\n\r\n",
            Err("chunk size line not ended by CRLF"),
        ),
        (
            "bare CR in extension",
            "5;a\rb\r\nhello\r\n",
            Err("invalid chunk extension"),
        ),
        ("too large", "10000000000000000\r\n", Err("chunk size too large")),
        (
            "data too long",
            "5\r\nhelloXX\r\n0\r\n\r\n",
            Err("chunk data not followed by CRLF"),
        ),
        (
            "data without LF",
            "5\r\nhello\rX0\r\n\r\n",
            Err("chunk data not followed by CRLF"),
        ),
        (
            "trailer with bare LF",
            "0\r\nx: 1\n\r\n",
            Err("trailer line not ended by CRLF"),
        ),
        ("size line too long", &long_extension, Err("chunk size line too long")),
    ];
    for (name, input, expected) in rows {
        let input = input.as_bytes();
        // Every split into two reads, then one byte per read.
        let feeds = (0..=input.len())
            .map(|split| vec![&input[..split], &input[split..]])
            .chain(std::iter::once(input.chunks(1).collect()));
        for feed in feeds {
            let got = decode(&feed);
            assert_eq!(
                &got,
                expected,
                "{name}, fed as {:?}",
                feed.iter().map(|piece| piece.len()).collect::<Vec<_>>()
            );
        }
    }
}

/// Feeds the pieces to a decoder as successive reads, taking all data after each.
fn decode(feed: &[&[u8]]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in feed {
        buf.extend_from_slice(piece);
        loop {
            decoder.advance(&mut buf)?;
            match decoder.data(&mut buf) {
                Some(chunk) => data.extend_from_slice(&chunk),
                None => break,
            }
        }
    }
    if !decoder.is_done() {
        return Err("not done");
    }
    let leak =
        |bytes: Vec<u8>| -> &'static str { Box::leak(String::from_utf8(bytes).expect("utf-8").into_boxed_str()) };
    Ok((leak(data), leak(buf.to_vec())))
}

// === body readers ===

#[test]
fn body_readers_yield_what_their_framing_covers() {
    // (framing, reads, data yielded, bytes left, done)
    let rows: &[(Framing, &[&str], &str, &str, bool)] = &[
        (Framing::Length(5), &["he", "llo next"], "hello", " next", true),
        (Framing::Length(5), &["hel"], "hel", "", false),
        (
            Framing::Chunked,
            &["3\r\nabc\r\n", "0\r\n\r\nnext"],
            "abc",
            "next",
            true,
        ),
        (Framing::Chunked, &["3\r\nab"], "ab", "", false),
        (Framing::Close, &["any", "thing"], "anything", "", false),
        (Framing::Empty, &[], "", "", false),
    ];
    for (framing, reads, data, left, done) in rows {
        let mut reader = BodyReader::new(*framing);
        let mut buf = BytesMut::new();
        let mut yielded = Vec::new();
        for read in *reads {
            buf.extend_from_slice(read.as_bytes());
            while let Some(piece) = reader.decode(&mut buf).expect("valid") {
                yielded.extend_from_slice(&piece);
            }
        }
        assert_eq!(yielded, data.as_bytes(), "{framing:?} {reads:?}");
        assert_eq!(&buf[..], left.as_bytes(), "{framing:?} {reads:?}");
        assert_eq!(reader.is_done(), *done, "{framing:?} {reads:?}");
    }
    let mut reader = BodyReader::new(Framing::Chunked);
    assert!(reader.decode(&mut BytesMut::from("x\r\n")).is_err());
}
