//! Property tests of the chunked decoder against a plain reference decoder that reads the whole
//! input at once: on any bytes, split anywhere, the decoder never panics, yields the same data and
//! ends the same way (done, error, or waiting for more), and never yields more than it was given.

use proptest::prelude::*;

use super::*;

/// How the reference decoder stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The body ended; this many bytes of the input were the body.
    Done(usize),
    Error,
    /// More input is needed.
    Incomplete,
}

/// The line starting at `at` (up to, without, its `\n`) when it ends within `limit` bytes.
fn line(input: &[u8], at: usize, limit: usize) -> Result<Option<&[u8]>, ()> {
    let rest = &input[at..];
    match rest.iter().position(|byte| *byte == b'\n') {
        Some(length) if length <= limit => Ok(Some(&rest[..length])),
        Some(_) => Err(()),
        None if rest.len() > limit => Err(()),
        None => Ok(None),
    }
}

/// RFC 9112 §7.1 read straight off the grammar: `chunk-size [BWS] *(";" ext) CRLF`, data, CRLF,
/// ..., `0` line, trailer lines, CRLF.
fn reference(input: &[u8]) -> (Vec<u8>, End) {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let size_line = match line(input, at, MAX_SIZE_LINE) {
            Ok(Some(text)) => text,
            Ok(None) => return (data, End::Incomplete),
            Err(()) => return (data, End::Error),
        };
        let Some(text) = size_line.strip_suffix(b"\r") else {
            return (data, End::Error);
        };
        let digits: Vec<u8> = text.iter().copied().take_while(u8::is_ascii_hexdigit).collect();
        let Some(size) = std::str::from_utf8(&digits)
            .ok()
            .filter(|digits| !digits.is_empty())
            .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        else {
            return (data, End::Error);
        };
        let after: Vec<u8> = text[digits.len()..]
            .iter()
            .copied()
            .skip_while(|byte| *byte == b' ' || *byte == b'\t')
            .collect();
        let extension_ok = after.is_empty()
            || (after[0] == b';'
                && after
                    .iter()
                    .all(|byte| *byte == b'\t' || *byte >= b' ' && *byte != 0x7f));
        if !extension_ok {
            return (data, End::Error);
        }
        at += size_line.len() + 1;
        if size == 0 {
            break;
        }
        let available = (input.len() - at) as u64;
        if available < size {
            data.extend_from_slice(&input[at..]);
            return (data, End::Incomplete);
        }
        data.extend_from_slice(&input[at..at + size as usize]);
        at += size as usize;
        match &input[at..] {
            [] | [b'\r'] => return (data, End::Incomplete),
            [b'\r', b'\n', ..] => at += 2,
            _ => return (data, End::Error),
        }
    }
    let mut seen = 0;
    loop {
        let trailer = match line(input, at, MAX_TRAILERS.saturating_sub(seen)) {
            Ok(Some(text)) => text,
            Ok(None) => return (data, End::Incomplete),
            Err(()) => return (data, End::Error),
        };
        if trailer.last() != Some(&b'\r') {
            return (data, End::Error);
        }
        at += trailer.len() + 1;
        if trailer == b"\r" {
            return (data, End::Done(at));
        }
        seen += trailer.len() + 1;
    }
}

/// Feeds `input` to the decoder in pieces cut at `cuts` and checks it against the reference.
fn check(input: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    'feed: for cut in cuts {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            if decoder.advance(&mut buf).is_err() {
                failed = true;
                break 'feed;
            }
            match decoder.data(&mut buf) {
                Some(piece) => {
                    prop_assert!(!piece.is_empty(), "empty data is never yielded");
                    data.extend_from_slice(&piece);
                }
                None => break,
            }
        }
    }
    prop_assert!(data.len() <= input.len(), "more data than input");
    let (expected, end) = reference(input);
    prop_assert_eq!(&data, &expected, "data differs; reference ended {:?}", end);
    match end {
        End::Done(length) => {
            prop_assert!(decoder.is_done() && !failed, "the reference read the whole body");
            prop_assert_eq!(&buf[..], &input[length..], "what follows the body stays");
        }
        End::Error => prop_assert!(failed, "the reference refused the body"),
        End::Incomplete => prop_assert!(!failed && !decoder.is_done(), "the reference waits for more"),
    }
    Ok(())
}

/// A valid chunked body of `chunks`, with extensions, size spellings and trailers varied, and
/// what comes after it on the connection.
fn body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..40),
        prop::sample::select(vec!["", "", ";a=b", " ;x", "\t;q=\"v w\"", ";\u{e9}"]),
        any::<bool>(),
        0usize..3,
    );
    (
        prop::collection::vec(chunk, 0..6),
        prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(chunks, trailers, after)| {
            let mut out = Vec::new();
            let mut data = Vec::new();
            for (bytes, extension, upper, zeros) in chunks {
                let size = format!("{}{:x}", "0".repeat(zeros), bytes.len());
                let size = if upper { size.to_ascii_uppercase() } else { size };
                out.extend_from_slice(format!("{size}{extension}\r\n").as_bytes());
                out.extend_from_slice(&bytes);
                out.extend_from_slice(b"\r\n");
                data.extend_from_slice(&bytes);
            }
            out.extend_from_slice(b"0\r\n");
            for trailer in trailers {
                out.extend_from_slice(format!("{trailer}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&after);
            (out, data)
        })
}

/// Bytes drawn mostly from the chunked grammar's own alphabet.
fn framing_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => prop::sample::select(b"0123456789aAfF;= \t\r\n\r\nxz".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_bodies_decode_whole_at_any_split((input, data) in body(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        check(&input, &cuts)?;
        prop_assert_eq!(reference(&input).0, data);
    }

    #[test]
    fn any_bytes_decode_as_the_reference_at_any_split(input in framing_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        check(&input, &cuts)?;
    }

    #[test]
    fn a_changed_byte_in_a_valid_body_decodes_as_the_reference(
        (input, _data) in body(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = input;
        let at = at.index(input.len());
        input[at] = byte;
        check(&input, &cuts)?;
    }

    #[test]
    fn oversized_lines_are_errors_not_buffers(extra in 1usize..64, trailer in any::<bool>()) {
        let input = match trailer {
            false => format!("1;{}", "x".repeat(MAX_SIZE_LINE + extra)).into_bytes(),
            true => format!("0\r\nX: {}", "y".repeat(MAX_TRAILERS + extra)).into_bytes(),
        };
        check(&input, &[])?;
        prop_assert_eq!(reference(&input).1, End::Error);
    }
}
