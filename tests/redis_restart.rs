//! A Redis restart costs no request: two routers share one real `redis-server` (alone, a
//! one-node Cluster, or a Sentinel-watched master); Redis is killed (after a snapshot) and started
//! again on its port; the instance that stayed idle through the outage logs the browser out with
//! its first request, and the busy one then refuses the session. Neither instance answers an
//! error once Redis has been back for a second. A command is sent again only after its connection
//! broke, so it may have run: a relay that loses a reply shows that the refresh lock stays with
//! the instance that took it.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use approuter::app::Options;
use approuter::idp::Clock;

use serde_json::{json, Value};
use support::idp::{dev_xsuaa, Browser};
use support::redis::{RedisServer, SentinelGroup, MASTER_NAME};
use support::{backend, client, gateway, Backend, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use xsuaa_dev::DevXsuaa;

const SECRET: &str = "restart-session-secret-0123456789";

/// How long Redis has been back before no request may fail.
const GRACE: Duration = Duration::from_secs(1);

fn app() -> Value {
    json!({
        "logout": {"logoutEndpoint": "/logout"},
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"}
        ]
    })
}

/// Where the routers find Redis.
enum Store<'a> {
    Server(&'a RedisServer),
    Cluster(&'a RedisServer),
    Sentinel(&'a SentinelGroup),
}

async fn router(dev: &DevXsuaa, backend: &Backend, store: &Store<'_>) -> Gateway {
    router_with(dev, backend, store, Options::default()).await
}

async fn router_with(dev: &DevXsuaa, backend: &Backend, store: &Store<'_>, options: Options) -> Gateway {
    let builder = gateway(app())
        .options(options)
        .destination_entries(json!([{"name": "backend", "url": backend.url(), "forwardAuthToken": true}]))
        .xsuaa(dev, &dev.credentials())
        .env("SESSION_SECRET", SECRET);
    let builder = match store {
        Store::Server(redis) => builder.env("REDIS_URL", redis.url()),
        Store::Cluster(redis) => {
            let mut vcap: Value = serde_json::from_str(&dev.vcap_services(&dev.credentials())).unwrap();
            vcap["redis-cache"] = json!([{
                "name": "sessions", "label": "redis-cache",
                "credentials": {"hostname": "127.0.0.1", "port": redis.port, "tls": false, "cluster_mode": true}
            }]);
            builder.env("VCAP_SERVICES", vcap.to_string()).env(
                "EXT_SESSION_MGT",
                json!({"instanceName": "sessions", "storageType": "redis", "sessionSecret": SECRET}).to_string(),
            )
        }
        Store::Sentinel(group) => builder.env(
            "REDIS_URL",
            format!(
                "redis+sentinel://:{}@127.0.0.1:{}/{MASTER_NAME}",
                group.password, group.sentinel.port
            ),
        ),
    };
    builder.start().await
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

/// Two routers, a login on A, and one request of the session on B, so that B holds a connection
/// to Redis that the outage breaks. Returns the browser and its session cookie.
async fn two_routers_and_a_session(dev: &DevXsuaa, a: &Gateway, b: &Gateway) -> (Browser, String) {
    let browser = Browser::new(dev);
    let (response, visited) = browser.navigate(&a.url("/api/login")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let cookie = browser.cookie(&a.url("/"), "JSESSIONID").expect("session cookie");
    assert_eq!(api(b, &cookie, "/api/on-b").await, 200);
    (browser, cookie)
}

/// B (idle through the outage) logs out with its first request after Redis is `back`; A (busy
/// through it) then refuses the session. Only A may answer 503, and only to a request that
/// started within [`GRACE`] of `back`.
async fn logout_on_the_idle_instance(a: &Gateway, b: &Gateway, browser: &Browser, cookie: &str, back: Instant) {
    let logout = browser.client.get(b.url("/logout")).send().await.unwrap();
    assert_eq!(
        logout.status(),
        302,
        "the idle instance's first request after the restart: {:?}",
        logout.text().await
    );
    let logged_out = back.elapsed();
    assert_eq!(api(b, cookie, "/api/after-logout").await, 401, "ended on B");
    let mut answered = 0;
    while answered < 3 {
        let started = back.elapsed();
        match api(a, cookie, "/api/on-a").await {
            401 => answered += 1,
            503 if started < GRACE && answered == 0 => {}
            other => panic!("A answered {other} {started:?} after Redis was back (answered {answered})"),
        }
    }
    eprintln!(
        "idle instance logged out {} ms after Redis was back; busy instance answered within {} ms",
        logged_out.as_millis(),
        back.elapsed().as_millis()
    );
}

#[tokio::test]
async fn an_idle_instance_logs_out_at_once_after_a_redis_restart() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut redis = RedisServer::start().await;
    let a = router(&dev, &backend, &Store::Server(&redis)).await;
    let b = router(&dev, &backend, &Store::Server(&redis)).await;
    let (browser, cookie) = two_routers_and_a_session(&dev, &a, &b).await;

    redis.crash().await;
    assert_eq!(api(&a, &cookie, "/api/down").await, 503, "busy through the outage");
    redis.restart().await;
    logout_on_the_idle_instance(&a, &b, &browser, &cookie, Instant::now()).await;
    assert!(redis.dump("approuter:session:*").await.is_empty());
}

#[tokio::test]
async fn an_idle_instance_logs_out_at_once_after_a_redis_cluster_node_restart() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut redis = RedisServer::start_cluster().await;
    let a = router(&dev, &backend, &Store::Cluster(&redis)).await;
    let b = router(&dev, &backend, &Store::Cluster(&redis)).await;
    let (browser, cookie) = two_routers_and_a_session(&dev, &a, &b).await;

    redis.crash().await;
    assert_eq!(api(&a, &cookie, "/api/down").await, 503, "busy through the outage");
    // A restarted cluster node refuses commands until it calls its cluster state ok (about two
    // seconds, by design); it is back from then.
    redis.restart().await;
    logout_on_the_idle_instance(&a, &b, &browser, &cookie, Instant::now()).await;
    assert!(redis.dump("approuter:session:*").await.is_empty());
}

#[tokio::test]
async fn an_idle_instance_logs_out_at_once_after_the_sentinels_master_restarts() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let mut group = SentinelGroup::start().await;
    let a = router(&dev, &backend, &Store::Sentinel(&group)).await;
    let b = router(&dev, &backend, &Store::Sentinel(&group)).await;
    let (browser, cookie) = two_routers_and_a_session(&dev, &a, &b).await;

    // The replica goes first, so that the sentinel has nothing to promote: the master comes back
    // on its port, as the master.
    group.replica.crash().await;
    group.master.crash().await;
    assert_eq!(api(&a, &cookie, "/api/down").await, 503, "busy through the outage");
    group.master.restart().await;
    logout_on_the_idle_instance(&a, &b, &browser, &cookie, Instant::now()).await;
    assert!(group.master.dump("approuter:session:*").await.is_empty());
}

#[tokio::test]
async fn a_logout_that_cannot_reach_redis_answers_503_and_the_session_lives_on() {
    let dev = dev_xsuaa().await;
    let backend = backend().await;
    let redis = RedisServer::start().await;
    let a = router(&dev, &backend, &Store::Server(&redis)).await;
    let b = router(&dev, &backend, &Store::Server(&redis)).await;
    let (browser, cookie) = two_routers_and_a_session(&dev, &a, &b).await;

    // Frozen: the delete gets no answer, so the logout must not claim to have ended the session.
    redis.freeze();
    let logout = browser.client.get(b.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 503);
    assert!(logout.headers().get("location").is_none());
    redis.thaw();
    assert_eq!(
        api(&a, &cookie, "/api/still-there").await,
        200,
        "the session was not ended"
    );
    let logout = browser.client.get(b.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 302);
    assert_eq!(api(&a, &cookie, "/api/after-logout").await, 401);
}

#[tokio::test]
async fn an_idle_instance_refreshes_a_token_with_its_first_request_after_a_redis_restart() {
    // 600 s tokens refresh 300 s before expiry; B's clock runs 400 s ahead, so B finds the
    // session due for refresh and takes the refresh lock (a script, which a restarted Redis no
    // longer knows) on the connection the restart broke.
    let dev = DevXsuaa::builder()
        .access_token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .unwrap();
    let backend = backend().await;
    let mut redis = RedisServer::start().await;
    let a = router(&dev, &backend, &Store::Server(&redis)).await;
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ahead = Options {
        clock: Clock::Tokio {
            start_unix: unix_now + 400,
            origin: Instant::now(),
        },
        ..Options::default()
    };
    let b = router_with(&dev, &backend, &Store::Server(&redis), ahead).await;
    let browser = Browser::new(&dev);
    let (response, visited) = browser.navigate(&a.url("/api/login")).await;
    assert_eq!(response.status(), 200, "{visited:?}");
    let cookie = browser.cookie(&a.url("/"), "JSESSIONID").expect("session cookie");
    // B reads the store once (a public call would not), without a refresh: the ping of readiness.
    b.state.auth.as_ref().expect("auth").store.ping().await.expect("ping");
    let refreshes = || {
        dev.stats()
            .token_requests_by_grant
            .get("refresh_token")
            .copied()
            .unwrap_or(0)
    };

    redis.crash().await;
    redis.restart().await;
    assert_eq!(api(&b, &cookie, "/api/refreshed").await, 200);
    assert_eq!(
        refreshes(),
        1,
        "refreshed under the lock, not served with the old token"
    );
    assert_eq!(api(&a, &cookie, "/api/on-a").await, 200);
    assert_eq!(refreshes(), 1);
}

/// A loopback relay in front of Redis that, once armed, cuts the next connection whose reply it
/// is about to pass on, without passing it: a command that ran but whose answer was lost.
struct LosingRelay {
    port: u16,
    armed: Arc<AtomicBool>,
}

impl LosingRelay {
    async fn start(redis: &RedisServer) -> LosingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let upstream_port = redis.port;
        let relay_armed = Arc::clone(&armed);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut upstream_write).await });
                let armed = Arc::clone(&relay_armed);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let read = match upstream_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => read,
                        };
                        // Dropping the write half closes the client's side: it reads end of stream.
                        if armed.swap(false, Ordering::SeqCst) {
                            return;
                        }
                        if client_write.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LosingRelay { port, armed }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_refresh_lock_whose_reply_was_lost_is_still_held_by_its_taker() {
    use approuter::session::redis_store::RedisStore;
    use approuter::session::{SessionId, SessionStore};

    let redis = RedisServer::start().await;
    let relay = LosingRelay::start(&redis).await;
    let settings = approuter::config::RedisSettings {
        url: format!("redis://127.0.0.1:{}", relay.port),
        cluster: false,
        sentinel: None,
        secrets: vec![SECRET.to_string()],
        reconnect_min_delay: Duration::from_millis(50),
        reconnect_max_delay: Duration::from_millis(500),
        command_timeout: Duration::from_secs(1),
        origin: "test".to_string(),
    };
    let idle = Duration::from_secs(60);
    let store = RedisStore::new(&settings, "app", idle, idle, &[]).unwrap();
    let other = RedisStore::new(&settings, "app", idle, idle, &[]).unwrap();
    // Taken once elsewhere (and held, so that its release sends nothing), so that the server
    // knows the lock's script before the cut.
    let _first = store.lock_refresh(&SessionId::generate()).await.unwrap();

    let id = SessionId::generate();
    relay.arm();
    let held = store.lock_refresh(&id).await.unwrap();
    assert!(held.is_some(), "the second try finds the lock its first try took");
    assert!(!relay.armed.load(Ordering::SeqCst), "a reply was lost");
    assert!(
        other.lock_refresh(&id).await.unwrap().is_none(),
        "and nobody else holds it"
    );
}
