//! Sessions in a Redis Sentinel deployment of real processes (a master, its replica and a
//! sentinel): the router finds the master through the sentinel, keeps the session when the master
//! dies and the sentinel promotes the replica, and fails closed while no master is reachable.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::idp::{dev_xsuaa, Browser};
use support::redis::{poll, SentinelGroup, MASTER_NAME};
use support::{backend, client, gateway, Backend, Gateway};
use tokio::time::Instant;
use xsuaa_dev::DevXsuaa;

const SECRET: &str = "sentinel-session-secret-0123456789";

fn app() -> Value {
    json!({
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/open/(.*)$", "target": "/$1", "destination": "backend", "authenticationType": "none"}
        ]
    })
}

/// How a router finds the sentinels.
enum Via {
    /// `EXT_SESSION_MGT` naming a binding with redis-operator's Sentinel fields, whose
    /// `sentinelHost` lists a sentinel that is not running before the real one.
    Binding,
    /// `REDIS_URL=redis+sentinel://…` and `SESSION_SECRET`.
    Url,
}

async fn router(dev: &DevXsuaa, backend: &Backend, group: &SentinelGroup, via: Via) -> Gateway {
    let builder = gateway(app())
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(dev, &dev.credentials());
    let builder = match via {
        Via::Binding => {
            // A port nobody listens on: connections to it are refused, and the next sentinel is asked.
            let dead = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("free port")
                .port();
            let mut vcap: Value = serde_json::from_str(&dev.vcap_services(&dev.credentials())).unwrap();
            vcap["redis-cache"] = json!([{
                "name": "sessions", "label": "redis-cache",
                "credentials": {
                    "sentinelEnabled": "true",
                    "sentinelHost": format!("127.0.0.1:{dead},127.0.0.1:{}", group.sentinel.port),
                    "masterName": MASTER_NAME,
                    "password": group.password,
                    "host": "127.0.0.1", "port": "6379"
                }
            }]);
            builder.env("VCAP_SERVICES", vcap.to_string()).env(
                "EXT_SESSION_MGT",
                json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET}).to_string(),
            )
        }
        Via::Url => builder
            .env(
                "REDIS_URL",
                format!(
                    "redis+sentinel://:{}@127.0.0.1:{}/{MASTER_NAME}",
                    group.password, group.sentinel.port
                ),
            )
            .env("SESSION_SECRET", SECRET),
    };
    builder.start().await
}

/// Logs a new browser in through `router`; returns its session cookie value.
async fn login(dev: &DevXsuaa, router: &Gateway) -> String {
    try_login(dev, router).await.expect("login")
}

/// A login that may fail (a store that changes master between its two requests); the session
/// cookie when it succeeded.
async fn try_login(dev: &DevXsuaa, router: &Gateway) -> Option<String> {
    let browser = Browser::new(dev);
    let (response, visited) = browser.navigate(&router.url("/api/login")).await;
    if response.status() != 200 {
        eprintln!("login: {} after {visited:?}", response.status());
        return None;
    }
    browser.cookie(&router.url("/"), "JSESSIONID")
}

/// An API call (401 instead of a login redirect) with the session cookie `cookie`.
async fn api(router: &Gateway, cookie: &str, path: &str) -> u16 {
    client()
        .get(router.url(path))
        .header("cookie", format!("JSESSIONID={cookie}"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Calls `path` until it answers 200, for at most `within`; every other answer must be a 503.
async fn until_ok(router: &Gateway, cookie: &str, path: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match api(router, cookie, path).await {
            200 => return started.elapsed(),
            503 => assert!(started.elapsed() < within, "no recovery within {within:?}"),
            other => panic!("{path}: {other} while waiting for the master"),
        }
    }
}

#[tokio::test]
async fn a_session_survives_the_failover_to_the_replica() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut group = SentinelGroup::start().await;
    let router = router(&dev, &backend, &group, Via::Binding).await;

    let cookie = login(&dev, &router).await;
    assert_eq!(api(&router, &cookie, "/api/before").await, 200);
    assert_eq!(group.master.dump("approuter:session:*").await.len(), 1, "on the master");

    group.kill_master().await;
    // Requests that meet the dead connection or the search for the master answer 503; service
    // resumes without a restart, on the new master.
    let recovery = until_ok(&router, &cookie, "/api/after", Duration::from_secs(5)).await;
    eprintln!(
        "the session worked again {} ms after the failover",
        recovery.as_millis()
    );

    // Writes go to the new master: a new login works and lands there.
    let second = login(&dev, &router).await;
    assert_eq!(api(&router, &second, "/api/second").await, 200);
    assert_eq!(
        group.replica.dump("approuter:session:*").await.len(),
        2,
        "on the new master"
    );
    assert_eq!(api(&router, "not-a-session", "/api/forged").await, 401);
}

#[tokio::test]
async fn a_manual_failover_moves_the_router_before_the_old_master_is_demoted() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let group = SentinelGroup::start().await;
    let router = router(&dev, &backend, &group, Via::Url).await;
    let cookie = login(&dev, &router).await;
    assert_eq!(api(&router, &cookie, "/api/before").await, 200);
    group.wait_for_listeners(1).await;

    // The old master keeps answering as master after the failover: only the sentinel's
    // announcement tells the router to move.
    group.fail_over().await;
    let switched = Instant::now();
    // A login that spans the move may fail (its attempt written to the old master); the next works.
    poll("a new login to land on the new master", || async {
        let Some(fresh) = try_login(&dev, &router).await else {
            return false;
        };
        api(&router, &fresh, "/api/fresh").await == 200 && group.replica.dump("approuter:session:*").await.len() >= 2
    })
    .await;
    eprintln!(
        "writes reached the new master {} ms after the failover",
        switched.elapsed().as_millis()
    );
    assert_eq!(group.old_master_role().await, "master", "moved before the demotion");
    assert_eq!(api(&router, &cookie, "/api/after").await, 200, "the first session too");
}

#[tokio::test]
async fn protected_routes_answer_503_while_no_master_is_reachable() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut group = SentinelGroup::start().await;
    let router = router(&dev, &backend, &group, Via::Url).await;
    let cookie = login(&dev, &router).await;
    assert_eq!(api(&router, &cookie, "/api/before").await, 200);

    // Master and replica down (the master after a snapshot): the sentinel names no usable master.
    group.replica.crash().await;
    group.master.crash().await;
    for path in ["/api/down", "/api/still-down"] {
        let started = Instant::now();
        assert_eq!(api(&router, &cookie, path).await, 503, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    let navigation = client().get(router.url("/api/new-login")).send().await.unwrap();
    assert_eq!(navigation.status(), 503, "a login cannot start without a master");
    assert_eq!(client().get(router.url("/open/x")).send().await.unwrap().status(), 200);

    // The master comes back with its data; once the sentinel sees it up, the session works again.
    group.master.restart().await;
    let master_port = group.master.port;
    poll("the sentinel to name the restarted master", || async {
        group.master_port().await == master_port
    })
    .await;
    until_ok(&router, &cookie, "/api/back", Duration::from_secs(10)).await;
}
