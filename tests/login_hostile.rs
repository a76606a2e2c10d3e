//! The login flow under attack, against a running router, the development XSUAA and a real
//! backend on loopback: forged, replayed, foreign and expired states; refused logins; codes of
//! another client; forged session cookies; open-redirect tricks in the return URL; cookie flags,
//! session fixation; and tokens never reaching the browser.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::HeaderMap;
use serde_json::json;
use support::idp::{login_page_target, param, Browser};
use support::{backend, gateway, Backend, Gateway};
use xsuaa_dev::DevXsuaa;

const BINDING: &str = "JSESSIONID_STATE";

fn app() -> serde_json::Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/(.*)$", "target": "/$1", "destination": "backend"}
        ]
    })
}

async fn router(dev: &DevXsuaa, backend: &Backend, extra: &[(&str, &str)]) -> Gateway {
    let mut builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(dev, &dev.credentials());
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    builder.start().await
}

async fn dev_xsuaa() -> DevXsuaa {
    DevXsuaa::builder().start().await.expect("development XSUAA")
}

/// One response, read whole.
#[derive(Debug)]
struct Answer {
    url: String,
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> Option<&str> {
        self.headers.get("location").map(|v| v.to_str().unwrap())
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The `Set-Cookie` that gives `name` a non-empty value.
    fn cookie_set(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&prefix) && !c[prefix.len()..].starts_with(';'))
    }

    /// The authorize URL this login answer sends the browser to (page or 302).
    fn authorize_target(&self) -> String {
        match self.status {
            200 => login_page_target(&self.body),
            302 => self.location().unwrap().to_string(),
            other => panic!("not a login answer: {other} {}", self.body),
        }
    }

    /// Everything the browser could read of this answer.
    fn visible_text(&self) -> String {
        let mut text = format!("{} {}\n", self.status, self.url);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        text.push_str(&self.body);
        text
    }
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    Answer {
        url: url.to_string(),
        status,
        headers,
        body,
    }
}

fn value_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// A browser starts a login at `path` and lets the IdP answer: returns the login answer and the
/// callback URL the IdP sends the browser to (not yet visited).
async fn begin(browser: &Browser, router: &Gateway, path: &str) -> (Answer, String) {
    let login = get(&browser.client, &router.url(path), &[]).await;
    let authorize = get(&browser.client, &login.authorize_target(), &[]).await;
    assert_eq!(authorize.status, 302, "{authorize:?}");
    let callback = authorize.location().unwrap().to_string();
    assert!(callback.starts_with(&router.url("/login/callback?")), "{callback}");
    (login, callback)
}

fn code_exchanges(dev: &DevXsuaa) -> u64 {
    dev.stats()
        .token_requests_by_grant
        .get("authorization_code")
        .copied()
        .unwrap_or(0)
}

/// 256 random bits as base64url: the shape of a real session id or state.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn xhr() -> [(&'static str, &'static str); 1] {
    [("x-requested-with", "XMLHttpRequest")]
}

#[tokio::test]
async fn callback_without_or_with_unknown_state_is_refused() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);
    // The browser has a real login attempt, so a binding cookie is present.
    let _ = begin(&browser, &router, "/api/x").await;

    for (case, query, status) in [
        ("no state", "?code=abc", 400),
        ("empty state", "?code=abc&state=", 400),
        ("nothing", "", 400),
        (
            "unknown state",
            &format!("?code=abc&state={}", random_id()) as &str,
            401,
        ),
        ("unknown state with error", "?error=access_denied&state=made-up", 401),
    ] {
        let answer = get(&browser.client, &router.url(&format!("/login/callback{query}")), &[]).await;
        assert_eq!(answer.status, status, "{case}: {}", answer.body);
        assert!(
            answer.body.contains("could not be completed"),
            "{case}: {}",
            answer.body
        );
        assert!(
            answer.headers["cache-control"].to_str().unwrap().contains("no-store"),
            "{case}"
        );
        assert_eq!(answer.cookie_set("JSESSIONID"), None, "{case}: no session");
    }
    assert_eq!(code_exchanges(&dev), 0, "no code was exchanged");
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn a_state_works_once() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);
    let (_, callback) = begin(&browser, &router, "/api/status/200").await;

    let first = get(&browser.client, &callback, &[]).await;
    assert_eq!(first.status, 302, "{first:?}");
    assert_eq!(first.location(), Some("/api/status/200"));
    assert!(first.cookie_set("JSESSIONID").is_some());
    assert_eq!(code_exchanges(&dev), 1);

    // The same callback again, from the same browser and from another one.
    let again = get(&browser.client, &callback, &[]).await;
    assert_eq!(again.status, 401, "{again:?}");
    assert_eq!(again.cookie_set("JSESSIONID"), None);
    let thief = Browser::new(&dev);
    let stolen = get(&thief.client, &callback, &[]).await;
    assert_eq!(stolen.status, 401);
    assert_eq!(stolen.cookie_set("JSESSIONID"), None);
    assert_eq!(code_exchanges(&dev), 1, "the replays never reached the token endpoint");
    assert!(backend.seen().is_empty());

    // The first login did work.
    let api = get(&browser.client, &router.url("/api/status/200"), &xhr()).await;
    assert_eq!(api.status, 200);
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn a_state_started_in_another_browser_is_refused() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let victim = Browser::new(&dev);
    let attacker = Browser::new(&dev);
    let (_, victims_callback) = begin(&victim, &router, "/api/x").await;
    let _ = begin(&attacker, &router, "/api/x").await;
    assert_ne!(
        victim.cookie(&router.url("/"), BINDING),
        attacker.cookie(&router.url("/"), BINDING)
    );

    // The attacker (own binding cookie) and a cookie-less client present the victim's callback.
    let with_other_cookie = get(&attacker.client, &victims_callback, &[]).await;
    assert_eq!(with_other_cookie.status, 401, "{with_other_cookie:?}");
    assert_eq!(with_other_cookie.cookie_set("JSESSIONID"), None);
    assert_eq!(
        code_exchanges(&dev),
        0,
        "no session was created: the code was never exchanged"
    );
    let attacker_api = get(&attacker.client, &router.url("/api/x"), &xhr()).await;
    assert_eq!(attacker_api.status, 401);

    // The state is single-use even when a check fails: the victim starts over.
    let victim_late = get(&victim.client, &victims_callback, &[]).await;
    assert_eq!(victim_late.status, 401);
    assert!(backend.seen().is_empty());

    // Without any binding cookie.
    let (_, callback) = begin(&victim, &router, "/api/x").await;
    let bare = get(&support::client(), &callback, &[]).await;
    assert_eq!(bare.status, 401);
    assert_eq!(bare.cookie_set("JSESSIONID"), None);
    assert_eq!(code_exchanges(&dev), 0);
}

/// Moves tokio's clock forward by `by` at once, without sleeping.
///
/// Not `start_paused`: with the clock paused, tokio auto-advances to the next timer every time the
/// runtime waits for I/O, even loopback I/O that is already there, so every TLS round trip to the
/// IdP would skip minutes (and fire the router's timeouts). Pausing only for the jump keeps the
/// clock running normally while requests are in flight.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// The attempt TTL (`STATE_CACHE` seconds) runs on tokio time.
#[tokio::test]
async fn an_expired_state_is_refused() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[("STATE_CACHE", "5")]).await;
    let browser = Browser::new(&dev);

    let (_, late) = begin(&browser, &router, "/api/x").await;
    jump(Duration::from_secs(6)).await;
    let answer = get(
        &support::client(),
        &late,
        &[("cookie", &binding_header(&browser, &router))],
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.cookie_set("JSESSIONID"), None);
    assert_eq!(code_exchanges(&dev), 0);

    // Control: within the TTL the same steps log in.
    let (_, in_time) = begin(&browser, &router, "/api/x").await;
    jump(Duration::from_secs(3)).await;
    let answer = get(
        &support::client(),
        &in_time,
        &[("cookie", &binding_header(&browser, &router))],
    )
    .await;
    assert_eq!(answer.status, 302, "{answer:?}");
    assert!(answer.cookie_set("JSESSIONID").is_some());
    assert!(backend.seen().is_empty());
}

fn binding_header(browser: &Browser, router: &Gateway) -> String {
    format!(
        "{BINDING}={}",
        browser.cookie(&router.url("/"), BINDING).expect("binding cookie")
    )
}

#[tokio::test]
async fn a_refused_login_is_a_clear_403_without_session() {
    let dev = DevXsuaa::builder().deny_login(true).start().await.unwrap();
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);
    let (_, callback) = begin(&browser, &router, "/api/x").await;
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));

    let answer = get(&browser.client, &callback, &[]).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{answer:?}"
    );
    assert!(answer.body.contains("did not log you in"), "{}", answer.body);
    assert!(!answer.body.contains('<'), "plain text: {}", answer.body);
    assert_eq!(answer.cookie_set("JSESSIONID"), None);
    assert_eq!(dev.stats().token_requests_by_grant.values().sum::<u64>(), 0);
    assert_eq!(get(&browser.client, &router.url("/api/x"), &xhr()).await.status, 401);
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_refused_at_the_token_endpoint() {
    let dev = dev_xsuaa().await;
    let other = DevXsuaa::builder().client_id("sb-other!t2").start().await.unwrap();
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);

    // The router's own authorize request, replayed at another client's IdP: that IdP issues a
    // code for its client and sends the browser to our callback with our valid state.
    let login = get(&browser.client, &router.url("/api/x"), &[]).await;
    let ours = reqwest::Url::parse(&login.authorize_target()).unwrap();
    let mut foreign = reqwest::Url::parse(&format!("{}/oauth/authorize", other.url())).unwrap();
    for (key, value) in ours.query_pairs() {
        let value = if key == "client_id" {
            "sb-other!t2".into()
        } else {
            value
        };
        foreign.query_pairs_mut().append_pair(&key, &value);
    }
    let other_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(other.ca_pem().as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let authorize = get(&other_client, foreign.as_str(), &[]).await;
    assert_eq!(authorize.status, 302, "{authorize:?}");
    let callback = authorize.location().unwrap().to_string();
    assert!(param(&callback, "code").is_some());

    let answer = get(&browser.client, &callback, &[]).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.body.contains("could not be completed"), "{}", answer.body);
    assert!(!answer.body.contains("invalid_grant"), "no internals: {}", answer.body);
    assert_eq!(answer.cookie_set("JSESSIONID"), None);
    assert_eq!(code_exchanges(&dev), 1);
    assert_eq!(dev.stats().token_requests_refused, 1);
    assert_eq!(code_exchanges(&other), 0);
    assert_eq!(get(&browser.client, &router.url("/api/x"), &xhr()).await.status, 401);
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn forged_session_cookies_never_reach_the_backend() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let client = support::client();
    let forged = [
        "garbage".to_string(),
        String::new(),
        random_id(),
        format!("{}A", random_id()),
        "s%3Ak3Yb1mXr0sZQ8V9a5Jm2cLxT.Zm9yZ2VkLXNpZ25hdHVyZS1vZi10aGUtbm9kZS1mb3JtYXQ".to_string(),
        "s:k3Yb1mXr0sZQ8V9a5Jm2cLxT.c2ln".to_string(),
        "../../etc/passwd".to_string(),
    ];
    for value in &forged {
        let cookie = format!("JSESSIONID={value}");
        let navigation = get(&client, &router.url("/api/x"), &[("cookie", &cookie)]).await;
        assert_eq!(navigation.status, 200, "{value}: {navigation:?}");
        assert!(
            navigation
                .authorize_target()
                .starts_with(&format!("{}/oauth/authorize?", dev.url())),
            "{value}: the login page"
        );
        assert_eq!(navigation.cookie_set("JSESSIONID"), None, "{value}");
        for (what, headers) in [
            ("xhr", vec![("cookie", cookie.as_str()), xhr()[0]]),
            ("fetch", vec![("cookie", cookie.as_str()), ("sec-fetch-mode", "cors")]),
        ] {
            let answer = get(&client, &router.url("/api/x"), &headers).await;
            assert_eq!(answer.status, 401, "{value} {what}");
        }
        let post = client
            .post(router.url("/api/x"))
            .header("cookie", &cookie)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 401, "{value} POST");
    }
    assert!(backend.seen().is_empty(), "{:?}", backend.seen());
}

#[tokio::test]
async fn return_urls_stay_on_this_origin() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;

    // Repeated slashes are merged before anything sees the path, so the return path is the one
    // path the request was for, on this origin; an encoded `//` never gets this far (400).
    for (target, expected) in [
        ("//evil.example/x", "/evil.example/x"),
        ("///evil.example/x", "/evil.example/x"),
        ("/api/a?next=//evil.example", "/api/a?next=//evil.example"),
    ] {
        let browser = Browser::new(&dev);
        let (_, callback) = begin(&browser, &router, target).await;
        let answer = get(&browser.client, &callback, &[]).await;
        assert_eq!(answer.status, 302, "{target}: {answer:?}");
        let location = answer.location().unwrap();
        assert_same_origin(location, target);
        assert_eq!(location, expected, "{target}");
        let resolved = reqwest::Url::parse(&router.url("/")).unwrap().join(location).unwrap();
        assert_eq!(resolved.host_str(), Some("127.0.0.1"), "{target}");
        assert_eq!(resolved.port(), Some(router.addr.port()), "{target}");
    }
}

#[tokio::test]
async fn backslash_return_urls_are_refused_or_dropped() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let host = |router: &Gateway| format!("127.0.0.1:{}", router.addr.port());
    let raw_get = |router: &Gateway, target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host(router)
        )
        .into_bytes()
    };

    // With path validation (the default), a backslash never gets as far as the login.
    let strict = router(&dev, &backend, &[]).await;
    for target in ["/\\evil.example", "/%5Cevil.example", "/%5C%5Cevil.example/x"] {
        let answer = support::raw::exchange(strict.addr, &raw_get(&strict, target)).await;
        assert_eq!(answer.status, 400, "{target}");
        assert!(answer.header("set-cookie").is_none(), "{target}");
    }

    // Without it, the login starts but the return URL falls back to "/".
    let lax = router(&dev, &backend, &[("DISABLE_PATHNAME_VALIDATION", "true")]).await;
    let browser = Browser::new(&dev);
    for target in ["/\\evil.example", "/\\/evil.example/x"] {
        let login = support::raw::exchange(lax.addr, &raw_get(&lax, target)).await;
        assert_eq!(login.status, 200, "{target}: {}", login.text());
        let binding = login
            .headers
            .iter()
            .find(|(name, value)| name.eq_ignore_ascii_case("set-cookie") && value.starts_with(BINDING))
            .map(|(_, value)| value.split(';').next().unwrap().to_string())
            .expect("binding cookie");
        let authorize = get(&browser.client, &login_page_target(&login.text()), &[]).await;
        let callback = authorize.location().unwrap().to_string();
        let answer = get(&support::client(), &callback, &[("cookie", &binding)]).await;
        assert_eq!(answer.status, 302, "{target}: {answer:?}");
        assert_eq!(answer.location(), Some("/"), "{target}");
    }
    assert!(backend.seen().is_empty());
}

fn assert_same_origin(location: &str, case: &str) {
    assert!(location.starts_with('/'), "{case}: {location}");
    assert!(!location.starts_with("//"), "{case}: {location}");
    assert!(!location.starts_with("/\\"), "{case}: {location}");
    assert!(!location.contains('\\'), "{case}: {location}");
}

#[tokio::test]
async fn session_cookie_flags_and_a_new_id_at_every_login() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);

    // A planted id (session fixation) is never adopted.
    let planted = random_id();
    browser.jar.add_cookie_str(
        &format!("JSESSIONID={planted}; Path=/"),
        &reqwest::Url::parse(&router.url("/")).unwrap(),
    );

    // Two tabs of the same browser log in at the same time.
    let (_, tab1) = begin(&browser, &router, "/api/status/201").await;
    let (_, tab2) = begin(&browser, &router, "/api/status/202").await;
    assert_ne!(param(&tab1, "state"), param(&tab2, "state"));

    let first = get(&browser.client, &tab1, &[]).await;
    assert_eq!(first.status, 302, "{first:?}");
    assert_eq!(first.location(), Some("/api/status/201"));
    let cookie = first.cookie_set("JSESSIONID").expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.to_ascii_lowercase().contains("max-age"),
        "a browser-session cookie: {cookie}"
    );
    assert!(
        !cookie.to_ascii_lowercase().contains("expires"),
        "a browser-session cookie: {cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http without X-Forwarded-Proto: {cookie}"
    );
    let s1 = value_of(&cookie);
    assert_eq!(s1.len(), 43, "256 bits, base64url");
    assert_ne!(s1, planted, "fixation");

    let second = get(&browser.client, &tab2, &[]).await;
    assert_eq!(second.status, 302, "the second tab's login completes too: {second:?}");
    assert_eq!(second.location(), Some("/api/status/202"));
    let s2 = value_of(&second.cookie_set("JSESSIONID").expect("session cookie"));
    assert_ne!(s1, s2, "a new id at every login");
    assert_eq!(browser.cookie(&router.url("/"), "JSESSIONID"), Some(s2.clone()));

    let client = support::client();
    for (id, status) in [(&planted, 401), (&s1, 401), (&s2, 200)] {
        let cookie = format!("JSESSIONID={id}");
        let answer = get(
            &client,
            &router.url("/api/status/200"),
            &[("cookie", &cookie), xhr()[0]],
        )
        .await;
        assert_eq!(answer.status, status, "{id}");
    }
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    // Behind a trusted proxy that terminates TLS.
    let router = router(
        &dev,
        &backend,
        &[("PRESERVE_FRAGMENT", "false"), ("CLIENT_IP_FORWARDED_HOPS", "1")],
    )
    .await;
    let client = support::client();
    let https = ("x-forwarded-proto", "https");

    let login = get(&client, &router.url("/api/status/200"), &[https]).await;
    assert_eq!(login.status, 302, "{login:?}");
    let binding = login.cookie_set(BINDING).expect("binding cookie");
    assert!(
        binding.contains("; Secure") && binding.contains("HttpOnly"),
        "{binding}"
    );
    let authorize_url = login.authorize_target();
    let redirect_uri = param(&authorize_url, "redirect_uri").unwrap();
    assert_eq!(
        redirect_uri,
        format!("https://127.0.0.1:{}/login/callback", router.addr.port())
    );

    let browser = Browser::new(&dev);
    let authorize = get(&browser.client, &authorize_url, &[]).await;
    let callback = authorize.location().unwrap().replacen("https://", "http://", 1);
    let cookie = format!("{BINDING}={}", value_of(&binding));
    let answer = get(&client, &callback, &[https, ("cookie", &cookie)]).await;
    assert_eq!(answer.status, 302, "{answer:?}");
    let session = answer.cookie_set("JSESSIONID").expect("session cookie");
    assert!(session.contains("; Secure"), "{session}");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    for deletion in answer.set_cookies() {
        assert!(deletion.contains("; Secure"), "every cookie is Secure: {deletion}");
    }
    assert!(backend.seen().is_empty());
}

/// `COOKIES.Partitioned` reaches the `Set-Cookie` of every router cookie for the browsers it names
/// (or that say their storage access is off), with the `Secure` a partitioned cookie needs.
#[tokio::test]
async fn partitioned_cookies_follow_the_cookies_variable() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let cookies = r#"{"SameSite":"None","Partitioned":{"supportedPartitionAgents":"Chrome/","unsupportedPartitionAgents":"Chrome/1[01][0-9]\\."}}"#;
    let router = router(&dev, &backend, &[("PRESERVE_FRAGMENT", "false"), ("COOKIES", cookies)]).await;
    let client = support::client();
    let chrome = ("user-agent", "Mozilla/5.0 Chrome/131.0.0.0 Safari/537.36");

    let login = get(&client, &router.url("/api/status/200"), &[chrome]).await;
    assert_eq!(login.status, 302, "{login:?}");
    let binding = login.cookie_set(BINDING).expect("binding cookie");
    assert!(
        binding.contains("; Partitioned") && binding.contains("; Secure"),
        "{binding}"
    );

    let browser = Browser::new(&dev);
    let authorize = get(&browser.client, &login.authorize_target(), &[]).await;
    let callback = authorize.location().unwrap().to_string();
    let cookie = format!("{BINDING}={}", value_of(&binding));
    let answer = get(&client, &callback, &[chrome, ("cookie", &cookie)]).await;
    assert_eq!(answer.status, 302, "{answer:?}");
    let session = answer.cookie_set("JSESSIONID").expect("session cookie");
    for attribute in ["; Partitioned", "; Secure", "SameSite=None", "HttpOnly"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }

    // Browsers the variable excludes get unpartitioned cookies, unless their storage access is off.
    let rows = [
        ("Mozilla/5.0 Chrome/115.0.0.0", None, false),
        ("Mozilla/5.0 Firefox/133.0", None, false),
        ("Mozilla/5.0 Firefox/133.0", Some("inactive"), true),
    ];
    for (agent, access, partitioned) in rows {
        let mut headers = vec![("user-agent", agent)];
        headers.extend(access.map(|access| ("sec-fetch-storage-access", access)));
        let login = get(&client, &router.url("/api/status/200"), &headers).await;
        let binding = login.cookie_set(BINDING).expect("binding cookie");
        assert_eq!(
            binding.contains("Partitioned"),
            partitioned,
            "{agent} {access:?}: {binding}"
        );
        // The binding cookie is `Lax`: over plain HTTP only partitioning makes it `Secure`.
        assert_eq!(binding.contains("; Secure"), partitioned, "{binding}");
    }
    assert!(backend.seen().is_empty());
}

#[tokio::test]
async fn tokens_never_reach_the_browser() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let router = router(&dev, &backend, &[]).await;
    let browser = Browser::new(&dev);
    let mut seen_by_browser: Vec<Answer> = Vec::new();

    // The whole flow by hand, keeping every answer of the router.
    let mut url = router.url("/api/status/200#frag");
    for _ in 0..10 {
        let answer = get(&browser.client, &url, &[]).await;
        let next = match answer.status {
            302 => Some(
                reqwest::Url::parse(&url)
                    .unwrap()
                    .join(answer.location().unwrap())
                    .unwrap()
                    .to_string(),
            ),
            200 if answer.headers.get("content-security-policy").is_some() => Some(login_page_target(&answer.body)),
            _ => None,
        };
        let from_router = url.starts_with(&router.url("/"));
        if from_router {
            seen_by_browser.push(answer);
        }
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    let last = seen_by_browser.last().unwrap();
    assert_eq!(last.status, 200, "{seen_by_browser:?}");
    assert_eq!(last.body, "status 200");
    for path in ["/api/status/201", "/api/x/status/204"] {
        let answer = get(&browser.client, &router.url(path), &xhr()).await;
        assert!(answer.status < 300, "{answer:?}");
        seen_by_browser.push(answer);
    }
    assert!(seen_by_browser.len() >= 4, "{seen_by_browser:?}");

    let requests = backend.seen();
    assert_eq!(requests.len(), 3);
    let bearer = requests[0].headers["authorization"].to_str().unwrap();
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let signature = token.rsplit('.').next().unwrap();
    assert!(signature.len() > 40);
    for answer in &seen_by_browser {
        let text = answer.visible_text();
        assert!(!text.contains(token), "access token leaked in {}", answer.url);
        assert!(!text.contains(signature), "token signature leaked in {}", answer.url);
        assert!(!text.to_ascii_lowercase().contains("bearer"), "{}", answer.url);
    }
    for request in &requests {
        let cookies = request
            .headers
            .get("cookie")
            .map(|c| c.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            !cookies.contains("JSESSIONID"),
            "the session cookie reached the backend: {cookies}"
        );
    }
}

#[tokio::test]
async fn the_redirect_uri_follows_forwarded_headers_only_from_a_trusted_proxy() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let client = support::client();
    let forged = [("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")];
    for (hops, expected_origin) in [("0", None), ("1", Some("https://evil.example"))] {
        let env = [("PRESERVE_FRAGMENT", "false"), ("CLIENT_IP_FORWARDED_HOPS", hops)];
        let router = router(&dev, &backend, &env).await;
        let login = get(&client, &router.url("/api/status/200"), &forged).await;
        assert_eq!(login.status, 302, "{login:?}");
        let redirect_uri = param(&login.authorize_target(), "redirect_uri").unwrap();
        let own = format!("http://127.0.0.1:{}", router.addr.port());
        let origin = expected_origin.unwrap_or(&own);
        assert_eq!(redirect_uri, format!("{origin}/login/callback"), "hops {hops}");
    }
}
