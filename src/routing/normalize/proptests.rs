//! Property tests of path normalisation: on any text it never panics and never grows the path; what
//! it accepts is its own normal form and decodes to what the input decodes to with its slashes
//! merged; what it refuses holds an encoded slash or an encoding of an encoding.

use proptest::prelude::*;

use super::*;

/// One round of percent-decoding, as bytes.
fn decode(bytes: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(bytes).collect()
}

/// Runs of `/` made one.
fn merge_slashes(bytes: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if !(byte == b'/' && out.last() == Some(&b'/')) {
            out.push(byte);
        }
    }
    out
}

/// Pieces that matter: slashes, escapes of unreserved and reserved bytes (nested too), stray `%`.
fn path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", "//", "a", "F", "2", "5", "6", "1", ".", "~", "%", "%61", "%7E", "%7e", "%2e", "%2F", "%2f", "%25",
        "%2561", "%252F", "%20", "%C3%A9", "\u{e9}", "%zz", "%4", ";", "?",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_normal_form_decodes_as_the_input_does(
        path in prop_oneof![path(), any::<String>()],
        allow_encoded_slash in any::<bool>(),
    ) {
        match normalize_path(&path, allow_encoded_slash) {
            Ok(normal) => {
                prop_assert!(normal.len() <= path.len());
                prop_assert!(!normal.contains("//"), "{:?} -> {:?}", path, normal);
                // A fixed point: normalising again changes nothing.
                let again = normalize_path(&normal, allow_encoded_slash);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(text)) if text == normal), "{:?} -> {:?}", path, normal);
                // The same path for a backend that decodes once. With encoded slashes allowed, a
                // `%2F` beside a `/` decodes to slashes that were never merged: compare up to that.
                if !allow_encoded_slash {
                    prop_assert_eq!(decode(normal.as_bytes()), merge_slashes(&decode(path.as_bytes())), "{:?}", path);
                }
            }
            Err(Error::EncodedSlash) => {
                prop_assert!(!allow_encoded_slash);
                prop_assert!(path.to_ascii_lowercase().contains("%2f") || decode(path.as_bytes()).windows(3).any(|w| w.eq_ignore_ascii_case(b"%2f")));
            }
            Err(Error::NestedEncoding) => prop_assert!(path.contains('%')),
            Err(other) => prop_assert!(false, "{:?}: unexpected {:?}", path, other),
        }
    }

    #[test]
    fn paths_without_escapes_only_lose_repeated_slashes(path in "[/a-z0-9._~;-]{0,40}") {
        let normal = normalize_path(&path, false).expect("no escapes, nothing to refuse");
        prop_assert_eq!(normal.as_bytes(), &merge_slashes(path.as_bytes())[..]);
    }
}
