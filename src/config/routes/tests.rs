use super::*;

/// Each row: source, target, URL, the rewritten URL (as JavaScript's `url.replace(source,
/// target)` gives it).
#[test]
fn targets_expand_like_string_replace() {
    let rows: &[(&str, &str, &str, &str)] = &[
        ("^/api/(.*)$", "/$1", "/api/a/b?c=d", "/a/b?c=d"),
        ("^/api/(.*)$", "/v1/$1a", "/api/x", "/v1/xa"),
        ("^/api/(.*)$", "/$&", "/api/x", "//api/x"),
        ("^/api/(.*)$", "/$$1", "/api/x", "/$1"),
        ("^/api/(.*)$", "/cost$", "/api/x", "/cost$"),
        ("^/api/(.*)$", "/$x", "/api/x", "/$x"),
        ("^/(?<rest>.*)$", "/n/$<rest>", "/q", "/n/q"),
        ("^/(?<rest>.*)$", "/n/$<other>!", "/q", "/n/!"),
        ("^/(?<rest>.*)$", "/n/$<rest", "/q", "/n/$<rest"),
        ("^/(.*)$", "/n/$<rest>", "/q", "/n/$<rest>"),
        // An optional group that did not take part adds nothing.
        ("^/a(/b)?(.*)$", "/[$1][$2]", "/a/c", "/[][/c]"),
        // Two digits name group 12 when there is one, else group 1 and a digit.
        ("^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)$", "/$12", "/abcdefghijkl", "/l"),
        ("^/(a)$", "/$12", "/a", "/a2"),
        // Only the match is replaced; the rest of the URL stays.
        ("/old/", "/new/", "/x/old/y", "/x/new/y"),
        ("ü/(.)", "ö$1", "/ü/z", "/öz"),
    ];
    for (source, target, url, expected) in rows {
        let regex = Regex::new(source).unwrap();
        let compiled = js_replacement(target, &regex).unwrap();
        let captures = regex.captures(url).unwrap();
        let whole = captures.get(0).unwrap().range();
        let out = compiled.rewrite(url, whole, |group| captures.get(group).map(|m| m.as_str()));
        assert_eq!(&out, expected, "source {source:?}, target {target:?}, url {url:?}");
    }
}

/// A prefix source says what its regex says, for every ASCII URL: match or not, and group 1.
#[test]
fn prefix_sources_match_and_split_as_their_regex_does() {
    let patterns = [
        ("^/api/(.*)$", true),
        ("^/api/(.*)$", false),
        ("^/UI/app\\.v1/(.*)$", false),
        ("^/(.*)$", true),
        ("^/x\\-y_z~1/(.*)$", true),
        ("^/sap/opu/odata/(.*)$", false),
        ("^(.*)$", true),
    ];
    let urls = [
        "/api/x",
        "/API/x?y=1",
        "/api",
        "/api/",
        "/apix",
        "/ui/APP.v1/z",
        "/ui/appXv1/z",
        "/",
        "",
        "/x-y_z~1/q",
        "/X-Y_Z~1/q",
        "/api/a\nb",
        "/Sap/OPU/odata/svc?$top=1",
        "/sap/opu/odata",
    ];
    for (pattern, match_case) in patterns {
        let prefix = Prefix::of(pattern, match_case).unwrap_or_else(|| panic!("{pattern} is a prefix"));
        let regex = regex::RegexBuilder::new(pattern)
            .case_insensitive(!match_case)
            .build()
            .unwrap();
        for url in urls {
            let expected = regex.captures(url).map(|c| c.get(1).map_or("", |m| m.as_str()));
            assert_eq!(
                prefix.rest(url),
                expected,
                "{pattern} (matchCase {match_case}) on {url:?}"
            );
        }
    }
    for other in [
        "^/a.b(.*)$",
        "^/api/(.*)",
        "/api/(.*)$",
        "^(?i)/api/(.*)$",
        "^/api/(.+)$",
        "^/api/(.*)$|^/x",
        "^/a|b(.*)$",
        "^/a[b](.*)$",
        "^/\\d(.*)$",
        "^/a b(.*)$",
        "^/ü/(.*)$",
    ] {
        assert_eq!(Prefix::of(other, true), None, "{other}");
    }
}

#[test]
fn targets_naming_missing_groups_or_unsupported_patterns_are_refused() {
    let regex = Regex::new("^/(a)$").unwrap();
    for (target, needle) in [
        ("/$2", "$2 names no capture group"),
        ("/$0", "$0 names no"),
        ("/$`", "not supported"),
        ("/$'", "not supported"),
    ] {
        let error = js_replacement(target, &regex).unwrap_err();
        assert!(error.contains(needle), "{target}: {error}");
    }
}
