use super::*;

#[test]
fn paths_are_merged_and_decoded_to_one_form() {
    for (path, expected) in [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("//admin/x", "/admin/x"),
        ("///admin//x///", "/admin/x/"),
        ("/%61dmin/x", "/admin/x"),
        ("/%41%7a%30-%2D%2e%5F%7E", "/Az0--._~"),
        ("/a%20b", "/a%20b"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/a;jsessionid=1/b", "/a;jsessionid=1/b"),
        ("/100%", "/100%"),
        ("/%zz/%4", "/%zz/%4"),
        ("/%2520", "/%2520"),
        ("/%25", "/%25"),
        ("/%25zz", "/%25zz"),
        ("", ""),
        ("/é//x", "/é/x"),
    ] {
        assert_eq!(normalize_path(path, false).as_deref(), Ok(expected), "{path}");
    }
}

#[test]
fn encoded_slashes_are_refused_unless_allowed() {
    for path in ["/a%2Fb", "/a%2fb", "/%2F%2Fadmin"] {
        assert_eq!(normalize_path(path, false), Err(Error::EncodedSlash), "{path}");
    }
    assert_eq!(normalize_path("/a%2Fb//c", true).as_deref(), Ok("/a%2Fb/c"));
}

#[test]
fn encodings_of_encodings_are_refused() {
    for path in ["/%2561dmin", "/%252F", "/%25252F", "/x/%252e%252e/y", "/%2525"] {
        assert_eq!(normalize_path(path, true), Err(Error::NestedEncoding), "{path}");
    }
}

#[test]
fn the_normal_form_is_a_fixed_point() {
    for path in ["//a//%61%2e%7e/", "/%2520//x", "/a%2Fb//c", "/%%41", "/%%zz%41"] {
        let once = normalize_path(path, true).expect(path).into_owned();
        let twice = normalize_path(&once, true).expect(&once);
        assert_eq!(twice, once, "{path}");
        assert!(matches!(twice, Cow::Borrowed(_)), "{path}: normal form is borrowed");
    }
}

#[test]
fn escapes_completed_by_a_decoded_character_are_refused() {
    // Once decoded these read `%41`, `%2F` and `%61`: a second decode would change the path again.
    for path in ["/%%34%31", "/%%341", "/%%32F", "/%%36%31dmin", "/%255%61", "/%a%61"] {
        assert_eq!(normalize_path(path, false), Err(Error::NestedEncoding), "{path}");
    }
}
