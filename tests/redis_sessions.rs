//! Sessions shared by several routers through a real `redis-server`: login, logout and refresh
//! across instances, sealed values, secret rotation, and Redis outages.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use approuter::app::Options;
use approuter::idp::Clock;
use serde_json::{json, Value};
use support::idp::{dev_xsuaa, Browser};
use support::redis::RedisServer;
use support::{backend, client, gateway, Backend, Gateway};
use tokio::time::Instant;
use xsuaa_dev::DevXsuaa;

const SECRET: &str = "first-session-secret-0123456789";
const NEW_SECRET: &str = "second-session-secret-abcdefghij";

fn app() -> Value {
    json!({
        "logout": {"logoutEndpoint": "/logout"},
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

/// How a router finds Redis and its secrets.
enum Via {
    /// `EXT_SESSION_MGT` naming a `redis-cache` binding in `VCAP_SERVICES`.
    Binding,
    /// `REDIS_URL` and `SESSION_SECRET`.
    Url,
}

async fn router(
    dev: &DevXsuaa,
    backend: &Backend,
    redis: &RedisServer,
    secrets: Value,
    via: Via,
    options: Options,
) -> Gateway {
    let builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(dev, &dev.credentials())
        .env("PRESERVE_FRAGMENT", "false")
        .options(options);
    let builder = match via {
        Via::Binding => {
            let mut vcap: Value = serde_json::from_str(&dev.vcap_services(&dev.credentials())).unwrap();
            vcap["redis-cache"] = json!([{
                "name": "sessions", "label": "redis-cache",
                "credentials": {"hostname": "127.0.0.1", "port": redis.port, "password": "", "tls": false}
            }]);
            // Set after `.xsuaa(..)`: the later value wins.
            builder.env("VCAP_SERVICES", vcap.to_string()).env(
                "EXT_SESSION_MGT",
                json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": secrets}).to_string(),
            )
        }
        Via::Url => {
            let secret = match secrets {
                Value::String(secret) => secret,
                list => list.to_string(),
            };
            builder.env("REDIS_URL", redis.url()).env("SESSION_SECRET", secret)
        }
    };
    builder.start().await
}

/// Logs a new browser in through `router`; returns it with its session cookie value.
async fn login(dev: &DevXsuaa, router: &Gateway) -> (Browser, String) {
    let browser = Browser::new(dev);
    let (response, visited) = browser.navigate(&router.url("/api/login")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let cookie = browser.cookie(&router.url("/"), "JSESSIONID").expect("session cookie");
    (browser, cookie)
}

/// An API call (no redirects to the login) with the session cookie `cookie`.
async fn api(router: &Gateway, cookie: &str, path: &str) -> reqwest::Response {
    client()
        .get(router.url(path))
        .header("cookie", format!("JSESSIONID={cookie}"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap()
}

fn bearer(seen: &support::Seen) -> String {
    seen.headers["authorization"].to_str().unwrap().to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test]
async fn a_session_from_one_instance_works_on_another_until_logout_on_either() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let a = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, Options::default()).await;
    let b = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, Options::default()).await;

    let (browser, cookie) = login(&dev, &a).await;
    let authorizes = dev.stats().authorize_requests;
    let on_b = browser.client.get(b.url("/api/on-b")).send().await.unwrap();
    assert_eq!(on_b.status(), 200);
    assert_eq!(dev.stats().authorize_requests, authorizes, "no second login on B");
    let seen = backend.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/on-b");
    assert_eq!(
        bearer(last),
        bearer(&seen[seen.len() - 2]),
        "B forwards the token A obtained"
    );

    let logout = browser.client.get(b.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 302);
    for (name, instance) in [("A", &a), ("B", &b)] {
        assert_eq!(api(instance, &cookie, "/api/after").await.status(), 401, "{name}");
    }
    assert!(redis.dump("approuter:session:*").await.is_empty());
}

#[tokio::test]
async fn a_login_started_on_one_instance_completes_on_another() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let a = router(&dev, &backend, &redis, json!(SECRET), Via::Url, Options::default()).await;
    let b = router(&dev, &backend, &redis, json!(SECRET), Via::Url, Options::default()).await;
    let browser = Browser::new(&dev);

    // Follow the redirects by hand and send the identity provider's callback to B instead of A.
    let mut url = reqwest::Url::parse(&a.url("/api/start?x=1")).unwrap();
    let mut visited = Vec::new();
    let response = loop {
        assert!(visited.len() < 10, "redirect loop: {visited:?}");
        let response = browser.client.get(url.clone()).send().await.unwrap();
        if !response.status().is_redirection() {
            break response;
        }
        let location = response.headers()["location"].to_str().unwrap();
        let mut next = url.join(location).unwrap();
        if next.as_str().starts_with(&a.url("/login/callback?")) {
            next.set_port(Some(b.addr.port())).unwrap();
        }
        visited.push(next.to_string());
        url = next;
    };
    assert_eq!(response.status(), 200, "{visited:?}");
    let callback = visited
        .iter()
        .find(|v| v.starts_with(&b.url("/login/callback?")))
        .expect("callback on B")
        .clone();
    assert_eq!(url.as_str(), b.url("/api/start?x=1"));
    assert_eq!(dev.stats().token_requests_by_grant.get("authorization_code"), Some(&1));

    // The login attempt was taken out of Redis: replaying the callback on A fails.
    let replay = callback.replace(&b.addr.port().to_string(), &a.addr.port().to_string());
    assert_eq!(browser.client.get(&replay).send().await.unwrap().status(), 401);
    assert!(redis.dump("approuter:login:*").await.is_empty());
}

#[tokio::test]
async fn concurrent_refresh_on_two_instances_makes_one_token_request() {
    // 600 s tokens refresh 300 s before expiry (JWT_REFRESH default); routers whose clock runs
    // 400 s ahead find a fresh login due for refresh, and the refreshed token (200 s left by
    // their clock) next due 100 s later, so exactly one refresh is right.
    let dev = DevXsuaa::builder()
        .access_token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .unwrap();
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let login_router = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, Options::default()).await;
    let (_browser, cookie) = login(&dev, &login_router).await;
    let login_token = bearer(backend.seen().last().unwrap());

    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ahead = Options {
        clock: Clock::Tokio {
            start_unix: unix_now + 400,
            origin: Instant::now(),
        },
        ..Options::default()
    };
    let a = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, ahead).await;
    let b = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, ahead).await;
    let refreshes = || {
        dev.stats()
            .token_requests_by_grant
            .get("refresh_token")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(refreshes(), 0);
    let before = backend.seen().len();

    let instances = [&a, &b];
    let cookie = &cookie;
    let calls = (0..16).map(|n| {
        let instance = instances[n % 2];
        async move { api(instance, cookie, &format!("/api/call{n}")).await }
    });
    let responses = futures_util::future::join_all(calls).await;
    for response in &responses {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(refreshes(), 1, "one refresh across both instances");

    // Every request, on either instance, used the refreshed token: the loser re-read the session.
    let seen = backend.seen();
    let tokens: std::collections::BTreeSet<String> = seen[before..].iter().map(bearer).collect();
    assert_eq!(tokens.len(), 1, "one token for all 16 requests");
    assert!(!tokens.contains(&login_token), "the refreshed token, not the login's");
    assert_eq!(api(&login_router, cookie, "/api/later").await.status(), 200);
    assert_eq!(refreshes(), 1);
}

#[tokio::test]
async fn redis_outages_fail_closed_and_service_resumes() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut redis = RedisServer::start().await;
    let a = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, Options::default()).await;
    let (_browser, cookie) = login(&dev, &a).await;

    // Frozen: commands get no answer; the command timeout bounds the request.
    redis.freeze();
    let started = Instant::now();
    let frozen = api(&a, &cookie, "/api/frozen").await;
    assert_eq!(frozen.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(frozen.text().await.unwrap().contains("temporarily unavailable"));
    assert_eq!(client().get(a.url("/open/x")).send().await.unwrap().status(), 200);
    let navigation = client().get(a.url("/api/new-login")).send().await.unwrap();
    assert_eq!(navigation.status(), 503, "a login cannot start without the store");
    redis.thaw();
    assert_eq!(api(&a, &cookie, "/api/thawed").await.status(), 200);

    // Crashed (after a snapshot): fast 503s; public routes unaffected.
    redis.crash().await;
    let started = Instant::now();
    assert_eq!(api(&a, &cookie, "/api/down").await.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(client().get(a.url("/open/y")).send().await.unwrap().status(), 200);

    // Restarted on the same port with its data: the session works again, without a router restart.
    redis.restart().await;
    let restarted = Instant::now();
    loop {
        let status = api(&a, &cookie, "/api/back").await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(restarted.elapsed() < Duration::from_secs(5), "no recovery");
    }
    let recovery = restarted.elapsed();
    eprintln!(
        "service resumed {} ms after redis-server was ready",
        recovery.as_millis()
    );
    assert!(recovery < Duration::from_millis(1500), "{recovery:?}");
}

#[tokio::test]
async fn redis_holds_only_sealed_values_under_hashed_names() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let a = router(&dev, &backend, &redis, json!(SECRET), Via::Binding, Options::default()).await;
    let (browser, cookie) = login(&dev, &a).await;
    let token = bearer(backend.seen().last().unwrap());
    let token = token.strip_prefix("Bearer ").unwrap();

    let entries = redis.dump("*").await;
    assert_eq!(entries.len(), 1, "one session, no login attempt left: {entries:?}");
    let (key, value) = &entries[0];
    assert!(key.starts_with("approuter:session:"), "{key}");
    assert!(!key.contains(&cookie));
    for secret in [token.as_bytes(), cookie.as_bytes(), b"jane.doe", b"refresh"] {
        assert!(
            !contains(value, secret),
            "{:?} readable in Redis",
            String::from_utf8_lossy(secret)
        );
    }
    let mut connection = redis.connection().await;
    let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
    assert!(ttl > 890_000 && ttl <= 900_000, "TTL = idle timeout (15 min): {ttl}");

    // A value moved to another session's key does not open there (the key name is bound in).
    let (_other_browser, other_cookie) = login(&dev, &a).await;
    let entries = redis.dump("approuter:session:*").await;
    assert_eq!(entries.len(), 2);
    for (from, to) in [(0, 1), (1, 0)] {
        let _: () = redis::cmd("SET")
            .arg(&entries[to].0)
            .arg(&entries[from].1)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    assert_eq!(api(&a, &cookie, "/api/swapped").await.status(), 401);
    assert_eq!(api(&a, &other_cookie, "/api/swapped").await.status(), 401);

    // A corrupted value is no session: log in again.
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("garbage")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(api(&a, &cookie, "/api/corrupt").await.status(), 401);
    let (again, _) = browser.navigate(&a.url("/api/again")).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn secret_rotation_keeps_sessions_and_foreign_secrets_are_refused() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let old = router(&dev, &backend, &redis, json!(SECRET), Via::Url, Options::default()).await;
    let (_browser, cookie) = login(&dev, &old).await;

    let only_new = router(&dev, &backend, &redis, json!(NEW_SECRET), Via::Url, Options::default()).await;
    assert_eq!(
        api(&only_new, &cookie, "/api/x").await.status(),
        401,
        "another secret: log in again"
    );

    // Restarted with [new, old]: the session still works, and moves to the new secret.
    let rotated = router(
        &dev,
        &backend,
        &redis,
        json!([NEW_SECRET, SECRET]),
        Via::Url,
        Options::default(),
    )
    .await;
    assert_eq!(api(&rotated, &cookie, "/api/rotated").await.status(), 200);
    assert_eq!(api(&rotated, &cookie, "/api/rotated-again").await.status(), 200);
    assert_eq!(
        api(&only_new, &cookie, "/api/x").await.status(),
        200,
        "sealed with the new secret now"
    );
    assert_eq!(redis.dump("approuter:session:*").await.len(), 1, "moved, not copied");
    // Hence the two-step rotation: an instance that knows only the old secret no longer finds it.
    assert_eq!(api(&old, &cookie, "/api/x").await.status(), 401);
}

fn settings(redis: &RedisServer) -> approuter::config::RedisSettings {
    approuter::config::RedisSettings {
        url: redis.url(),
        cluster: false,
        sentinel: None,
        secrets: vec![SECRET.to_string()],
        reconnect_min_delay: Duration::from_millis(50),
        reconnect_max_delay: Duration::from_millis(500),
        command_timeout: Duration::from_secs(1),
        origin: "test".to_string(),
    }
}

#[tokio::test]
async fn the_store_touches_locks_and_never_resurrects() {
    use approuter::session::redis_store::RedisStore;
    use approuter::session::{Session, SessionId, SessionStore, User};
    use std::sync::Arc;

    let redis = RedisServer::start().await;
    let idle = Duration::from_secs(60);
    let store = |namespace: &str| RedisStore::new(&settings(&redis), namespace, idle, idle, &[]).unwrap();
    let (a, b) = (store("app"), store("app"));
    let session = Arc::new(Session {
        user: User {
            name: "jane".into(),
            ..User::default()
        },
        access_token: "token".into(),
        refresh_token: None,
        expires_at: 0,
        refresh_at: 0,
        csrf_secret: None,
        backend_cookies: Vec::new(),
        login_at: 0,
    });
    let id = SessionId::generate();
    a.save(&id, session.clone()).await.unwrap();
    assert!(
        store("another-app").load(&id).await.unwrap().is_none(),
        "apps are kept apart"
    );

    // The first load on an instance extends the TTL (in the same round trip as the GET).
    let (key, _) = redis.dump("approuter:session:*").await.remove(0);
    let mut connection = redis.connection().await;
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(5_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(b.peek(&id).await.unwrap().is_some(), "a peek reads ...");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
    assert!(ttl <= 5_000, "... without extending the TTL: {ttl}");
    b.ping().await.expect("ping");
    assert!(b.load(&id).await.unwrap().is_some());
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
    assert!(ttl > 55_000, "touched back to the idle timeout: {ttl}");
    // Later loads within the touch interval only read.
    let before = redis.command_counts().await;
    for _ in 0..5 {
        assert!(b.load(&id).await.unwrap().is_some());
    }
    let after = redis.command_counts().await;
    assert_eq!(after["get"] - before["get"], 5);
    assert_eq!(after.get("pexpire"), before.get("pexpire"), "no write per read");

    // One refresher at a time across instances; the lock frees when its holder drops it.
    let held = a.lock_refresh(&id).await.unwrap().expect("free lock");
    assert!(b.lock_refresh(&id).await.unwrap().is_none());
    assert!(a.lock_refresh(&id).await.unwrap().is_none(), "not re-entrant either");
    drop(held);
    // The release runs in the background: a bounded wait for it, not a sleep.
    let mut taken = None;
    for _ in 0..200 {
        taken = b.lock_refresh(&id).await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(taken.is_some(), "released after drop");

    // An update after a logout on the other instance does not bring the session back.
    assert!(b.update(&id, session.clone()).await.unwrap());
    assert!(a.remove(&id).await.unwrap().is_some());
    assert!(!b.update(&id, session.clone()).await.unwrap());
    assert!(a.load(&id).await.unwrap().is_none());
    assert!(redis.dump("approuter:session:*").await.is_empty());
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, certificate PEM, key PEM).
fn redis_tls_files() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test Redis CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn rediss_works_with_a_trusted_server_and_fails_closed_otherwise() {
    let (ca, cert, key) = redis_tls_files();
    let redis = RedisServer::start_tls(&cert, &key).await;
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let files = tempfile::tempdir().unwrap();
    let (dev_ca, redis_ca) = (files.path().join("dev.pem"), files.path().join("redis.pem"));
    std::fs::write(&dev_ca, dev.ca_pem()).unwrap();
    std::fs::write(&redis_ca, ca).unwrap();
    let tls_router = |trusted: &[&std::path::Path]| {
        let paths: Vec<String> = trusted.iter().map(|p| p.display().to_string()).collect();
        gateway(app())
            .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
            .xsuaa(&dev, &dev.credentials())
            .env("PRESERVE_FRAGMENT", "false")
            .env("REDIS_URL", redis.tls_url())
            .env("SESSION_SECRET", SECRET)
            .env("XS_CACERT_PATH", paths.join(":"))
            .start()
    };
    let trusting = tls_router(&[&dev_ca, &redis_ca]).await;
    let (_browser, cookie) = login(&dev, &trusting).await;
    assert_eq!(api(&trusting, &cookie, "/api/over-tls").await.status(), 200);

    // Without the Redis CA the certificate is refused: protected routes 503, public ones work.
    let distrusting = tls_router(&[&dev_ca]).await;
    assert_eq!(api(&distrusting, &cookie, "/api/x").await.status(), 503);
    assert_eq!(
        client().get(distrusting.url("/open/x")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_redis_cluster_binding_works() {
    let redis = RedisServer::start_cluster().await;
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut vcap: Value = serde_json::from_str(&dev.vcap_services(&dev.credentials())).unwrap();
    vcap["redis-cache"] = json!([{
        "name": "sessions", "label": "redis-cache",
        "credentials": {"hostname": "127.0.0.1", "port": redis.port, "tls": false, "cluster_mode": true}
    }]);
    let ext = json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET});
    let cluster_router = || {
        gateway(app())
            .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
            .xsuaa(&dev, &dev.credentials())
            .env("PRESERVE_FRAGMENT", "false")
            .env("VCAP_SERVICES", vcap.to_string())
            .env("EXT_SESSION_MGT", ext.to_string())
            .start()
    };
    let (a, b) = (cluster_router().await, cluster_router().await);
    let (_browser, cookie) = login(&dev, &a).await;
    assert_eq!(api(&b, &cookie, "/api/on-b").await.status(), 200);
    assert_eq!(redis.dump("approuter:session:*").await.len(), 1);
    let commands = redis.command_counts().await;
    assert!(
        commands
            .keys()
            .any(|name| name == "cluster|slots" || name == "cluster|shards"),
        "the cluster client asked for the slot map: {commands:?}"
    );
}

/// Makes Redis forget session `key` as its TTL would, with its last touch long ago.
async fn expire(redis: &RedisServer, key: &str) {
    let mut connection = redis.connection().await;
    let digest = key.rsplit(':').next().unwrap();
    let indexes: Vec<String> = redis::cmd("KEYS")
        .arg("approuter:expiry:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let _: () = redis::cmd("DEL").arg(key).query_async(&mut connection).await.unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&indexes[0])
        .arg("XX")
        .arg(1)
        .arg(digest)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_session_is_reported_by_exactly_one_sweep() {
    use approuter::session::redis_store::RedisStore;
    use approuter::session::{Session, SessionId, SessionStore, User};
    use std::sync::Arc;

    let redis = RedisServer::start().await;
    let idle = Duration::from_secs(60);
    let store = || {
        RedisStore::new(&settings(&redis), "app", idle, idle, &[])
            .unwrap()
            .with_expiry_tracking()
    };
    let (a, b) = (store(), store());
    let session = |token: &str| {
        Arc::new(Session {
            user: User::default(),
            access_token: token.into(),
            refresh_token: None,
            expires_at: 0,
            refresh_at: 0,
            csrf_secret: None,
            backend_cookies: Vec::new(),
            login_at: 0,
        })
    };
    let (expired, logged_out, live) = (SessionId::generate(), SessionId::generate(), SessionId::generate());
    a.save(&expired, session("expired")).await.unwrap();
    let expired_key = redis.dump("approuter:session:*").await.remove(0).0;
    b.save(&logged_out, session("logged-out")).await.unwrap();
    b.save(&live, session("live")).await.unwrap();
    assert!(a.sweep().await.unwrap().is_empty(), "nothing idle yet");

    expire(&redis, &expired_key).await;
    assert!(a.remove(&logged_out).await.unwrap().is_some());
    // A session whose key lives on is not taken, however old its recorded touch.
    let mut connection = redis.connection().await;
    let index: String = redis::cmd("KEYS")
        .arg("approuter:expiry:*")
        .query_async::<Vec<String>>(&mut connection)
        .await
        .unwrap()
        .remove(0);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&index)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    for member in &members {
        let _: () = redis::cmd("ZADD")
            .arg(&index)
            .arg(1)
            .arg(member)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    assert_eq!(
        members.len(),
        2,
        "the expired and the live session (the logged-out one left)"
    );
    let (from_a, from_b) = tokio::join!(a.sweep(), b.sweep());
    let ended: Vec<String> = from_a
        .unwrap()
        .into_iter()
        .chain(from_b.unwrap())
        .map(|s| s.access_token.as_str().to_string())
        .collect();
    assert_eq!(ended, vec!["expired".to_string()]);
    assert!(
        a.sweep().await.unwrap().is_empty() && b.sweep().await.unwrap().is_empty(),
        "once"
    );
    assert!(a.load(&live).await.unwrap().is_some());
    assert!(
        redis.dump("approuter:ended:*").await.len() == 1,
        "only the live session's copy remains"
    );
}

#[tokio::test]
async fn idle_expiry_calls_the_backend_logout_once_across_instances() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let app = json!({
        "destinations": {"backend": {"logoutPath": "/backend-logout"}},
        "routes": [{"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}]
    });
    let fast_sweeps = Options {
        sweep_interval: Duration::from_millis(20),
        ..Options::default()
    };
    let instance = || {
        gateway(app.clone())
            .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
            .xsuaa(&dev, &dev.credentials())
            .env("PRESERVE_FRAGMENT", "false")
            .env("REDIS_URL", redis.url())
            .env("SESSION_SECRET", SECRET)
            .options(fast_sweeps)
            .start()
    };
    let (a, _b) = (instance().await, instance().await);
    let (_browser, _cookie) = login(&dev, &a).await;
    let token = bearer(backend.seen().last().unwrap());

    let (key, _) = redis.dump("approuter:session:*").await.remove(0);
    expire(&redis, &key).await;
    let call = tokio::time::timeout(
        Duration::from_secs(5),
        backend.next_matching(|seen| seen.uri == "/backend-logout"),
    )
    .await
    .expect("backend logout after expiry");
    assert_eq!(bearer(&call), token);
    // The claim (ZREM) precedes the call, and nothing is left that another sweep could claim.
    assert!(redis.dump("approuter:ended:*").await.is_empty());
    let mut connection = redis.connection().await;
    let indexes: Vec<String> = redis::cmd("KEYS")
        .arg("approuter:expiry:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    let left: i64 = match indexes.first() {
        Some(index) => redis::cmd("ZCARD")
            .arg(index)
            .query_async(&mut connection)
            .await
            .unwrap(),
        None => 0,
    };
    assert_eq!(left, 0);
    let calls = backend
        .seen()
        .iter()
        .filter(|seen| seen.uri == "/backend-logout")
        .count();
    assert_eq!(calls, 1);
}
