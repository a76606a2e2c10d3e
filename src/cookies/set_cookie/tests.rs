use super::*;

fn spec<'a>(
    name: &'a str,
    max_age: Option<u64>,
    secure: bool,
    same_site: &'a str,
    partitioned: bool,
) -> CookieSpec<'a> {
    CookieSpec {
        name,
        value: "v",
        max_age,
        http_only: true,
        secure,
        same_site,
        partitioned,
    }
}

#[test]
fn attributes_are_the_ones_asked_for() {
    let rows: &[(CookieSpec<'_>, &[&str], &[&str])] = &[
        (
            spec("a", None, false, "Lax", false),
            &["a=v", "Path=/", "HttpOnly", "SameSite=Lax"],
            &["Secure", "Max-Age", "Partitioned"],
        ),
        (
            spec("a", Some(180), true, "Strict", false),
            &["Max-Age=180", "Secure", "SameSite=Strict"],
            &["Expires", "Partitioned"],
        ),
        (
            spec("a", Some(0), false, "Lax", false),
            &["Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"],
            &["Secure"],
        ),
        (
            spec("a", None, false, "None", false),
            &["SameSite=None", "Secure"],
            &["Partitioned"],
        ),
        (
            spec("a", None, false, "Lax", true),
            &["Partitioned", "Secure", "SameSite=Lax"],
            &[],
        ),
    ];
    for (spec, present, absent) in rows {
        let header = spec.header();
        let text = header.to_str().unwrap();
        let attributes: Vec<&str> = text.split("; ").collect();
        assert_eq!(attributes[0], format!("{}={}", spec.name, spec.value));
        for attribute in *present {
            assert!(attributes.contains(attribute), "{attribute} in {text}");
        }
        for attribute in *absent {
            assert!(!text.contains(attribute), "{attribute} not in {text}");
        }
        // What a browser's parser reads back.
        let parsed = Cookie::parse(text).unwrap();
        assert_eq!(parsed.partitioned().unwrap_or(false), spec.partitioned, "{text}");
        assert_eq!(parsed.http_only(), Some(true), "{text}");
    }
}

#[test]
fn partitioning_follows_the_agents_and_storage_access() {
    let rule = Partitioning::Agents {
        supported: Some(Regex::new("Chrome").unwrap()),
        unsupported: Some(Regex::new("Chrome/1[01][0-9]\\.").unwrap()),
    };
    let headers = |agent: &str, access: Option<&str>| {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::USER_AGENT, HeaderValue::from_str(agent).unwrap());
        if let Some(access) = access {
            headers.insert("sec-fetch-storage-access", HeaderValue::from_str(access).unwrap());
        }
        headers
    };
    let rows = [
        ("Chrome/130.0", None, true),
        ("Chrome/110.0", None, false),
        ("Firefox/130.0", None, false),
        ("Firefox/130.0", Some("inactive"), true),
        ("Firefox/130.0", Some("none"), true),
        ("Firefox/130.0", Some("active"), false),
    ];
    for (agent, access, expected) in rows {
        assert_eq!(rule.applies(&headers(agent, access)), expected, "{agent} {access:?}");
    }
    assert!(Partitioning::Always.applies(&HeaderMap::new()));
    assert!(!Partitioning::Never.applies(&headers("Chrome/130.0", Some("none"))));
}
