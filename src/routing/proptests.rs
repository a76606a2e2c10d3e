//! Property tests of path validation: on any text it never panics and agrees with a plain
//! reference of the rule (every percent-decoded form, up to five rounds, and the NFKC form of the
//! last, free of `.`/`..` segments, backslashes and NULs; nothing still encoded after five rounds);
//! a traversal is refused however its dots and slashes are spelled.

use proptest::prelude::*;

use super::*;

fn hides_traversal(form: &str) -> bool {
    form.contains('\\') || form.contains('\0') || form.split('/').any(|segment| segment == "." || segment == "..")
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn reference(path: &str) -> bool {
    let mut forms = vec![path.to_string()];
    for _ in 0..5 {
        let next = decode(forms.last().map_or("", String::as_str));
        if Some(&next) == forms.last() {
            break;
        }
        forms.push(next);
    }
    let last = forms.last().cloned().unwrap_or_default();
    if decode(&last) != last {
        return false;
    }
    let normalized: String = NFKC.normalize(&last).into_owned();
    !forms.iter().any(|form| hides_traversal(form)) && !hides_traversal(&normalized)
}

/// Paths built from pieces that matter to the rule: dots, slashes and their encodings (nested,
/// fullwidth, NFKC-equivalent), stray `%`, plain text.
fn path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/",
        "/",
        "a",
        "b.c",
        ".",
        "..",
        "...",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%252e",
        "%25252e",
        "%25",
        "%",
        "%zz",
        "%5c",
        "\\",
        "%00",
        "%",
        "\u{ff0e}",
        "\u{ff0f}",
        "\u{2025}",
        "\u{2024}",
        "\u{ff3c}",
        "%EF%BC%8E",
        "%E2%80%A5",
        "%C3%A9",
        "\u{e9}",
        "%ff",
        "%C3",
        "?",
        "#",
        " ",
    ]);
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// `.` spelled in one of the ways a client can hide it.
fn dot() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ".",
        "%2e",
        "%2E",
        "%252e",
        "%25252E",
        "\u{ff0e}",
        "%EF%BC%8E",
        "%25EF%25BC%258E",
    ])
}

fn slash() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["/", "%2f", "%2F", "%252f", "\u{ff0f}", "%EF%BC%8F", "\\", "%5c"])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_judged_as_the_reference_judges_it(path in prop_oneof![path(), any::<String>()]) {
        prop_assert_eq!(validate_path(&path).is_ok(), reference(&path), "{:?}", path);
    }

    #[test]
    fn a_traversal_is_refused_however_it_is_spelled(
        before in "[a-z0-9]{1,6}",
        after in "[a-z0-9]{0,6}",
        dots in prop::collection::vec(dot(), 1..=2),
        slashes in (slash(), slash()),
    ) {
        let path = format!("/{before}{}{}{}{after}", slashes.0, dots.concat(), slashes.1);
        prop_assert_eq!(validate_path(&path), Err(Error::PathTraversal), "{:?}", path);
    }

    #[test]
    fn plain_paths_pass(segments in prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}", 0..6), query in "[a-z=&]{0,8}") {
        let path = format!("/{}?{query}", segments.join("/"));
        prop_assert_eq!(validate_path(&path), Ok(()), "{:?}", path);
    }
}
