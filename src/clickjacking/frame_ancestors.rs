//! `Content-Security-Policy: frame-ancestors <domains>;` from the trusted domains of each
//! subaccount (`ENABLE_FRAME_ANCESTORS_CSP_HEADERS`): fetched outside the requests, kept per
//! subdomain for `FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME`, one fetch at a time per subdomain.
//!
//! A request never waits for a fetch: it takes the value at hand (none before the first fetch of
//! its subdomain, or after a failed one), and an expired value starts the next fetch. Without the
//! header a browser applies `X-Frame-Options`, which is stricter, so a missing value never opens
//! framing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::FrameAncestorsSettings;
use crate::idp::xsuaa::IdpClient;
use crate::limits::Budget;

/// Subdomains kept at most: each tenant host of `TENANT_HOST_PATTERN` is one, and a client
/// choosing hosts must not grow the table without end.
const CAPACITY: usize = 10_000;
/// Subdomains not seen yet whose settings may be fetched per minute: any client can name a
/// tenant host, and each new one costs a request to the XSUAA API. Past it a response goes
/// without the header (`X-Frame-Options` applies) until the budget refills.
const NEW_SUBDOMAINS_PER_MINUTE: u32 = 60;

/// The frame-ancestors CSP of each subdomain, fetched at the XSUAA API.
pub struct FrameAncestors {
    settings: FrameAncestorsSettings,
    idp: Arc<IdpClient>,
    /// Replaced whole when a subdomain is added (once per subdomain); read lock-free.
    entries: ArcSwap<HashMap<Arc<str>, Arc<Entry>>>,
    /// Fetches finished (successful or not), for whoever waits for a new value.
    fetched: watch::Sender<u64>,
    /// New subdomains per minute ([`NEW_SUBDOMAINS_PER_MINUTE`]).
    new_subdomains: Budget,
}

struct Entry {
    cached: ArcSwap<Cached>,
    /// A fetch of this subdomain is under way.
    fetching: AtomicBool,
}

struct Cached {
    value: Option<HeaderValue>,
    expires: Instant,
}

impl FrameAncestors {
    /// Starts fetching the binding's own subdomain's domains at once. Must run inside a tokio
    /// runtime.
    pub fn start(settings: FrameAncestorsSettings, idp: Arc<IdpClient>) -> Arc<FrameAncestors> {
        let frames = Arc::new(FrameAncestors {
            settings,
            idp,
            entries: ArcSwap::from_pointee(HashMap::new()),
            fetched: watch::Sender::new(0),
            new_subdomains: Budget::new(NEW_SUBDOMAINS_PER_MINUTE),
        });
        let own = frames.settings.own_subdomain.clone();
        frames.add(&own);
        frames
    }

    /// The header for a response to `tenant`'s host (`None`: the binding's own subdomain), if its
    /// domains are known; an expired value starts a new fetch and is used until it ends.
    pub fn header(self: &Arc<Self>, tenant: Option<&str>) -> Option<HeaderValue> {
        let subdomain = tenant.unwrap_or(&self.settings.own_subdomain);
        let entries = self.entries.load();
        let Some(entry) = entries.get(subdomain) else {
            drop(entries);
            self.add(subdomain);
            return None;
        };
        let cached = entry.cached.load();
        if Instant::now() >= cached.expires && !entry.fetching.swap(true, Ordering::AcqRel) {
            self.spawn_fetch(subdomain.into(), entry.clone());
        }
        cached.value.clone()
    }

    /// Changes each time a fetch ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.fetched.subscribe()
    }

    fn add(self: &Arc<Self>, subdomain: &str) {
        if !self.new_subdomains.take() {
            return;
        }
        let subdomain: Arc<str> = subdomain.into();
        let entry = Arc::new(Entry {
            cached: ArcSwap::from_pointee(Cached {
                value: None,
                expires: Instant::now(),
            }),
            fetching: AtomicBool::new(true),
        });
        let mut added = false;
        self.entries.rcu(|entries| {
            added = false;
            if entries.contains_key(&subdomain) {
                return Arc::clone(entries);
            }
            let mut entries = HashMap::clone(entries);
            if entries.len() >= CAPACITY {
                // Full: subdomains without domains (made-up hosts, failed fetches) make room;
                // those with domains stay.
                entries
                    .retain(|_, entry| entry.fetching.load(Ordering::Acquire) || entry.cached.load().value.is_some());
                if entries.len() >= CAPACITY {
                    return Arc::new(entries);
                }
            }
            added = true;
            entries.insert(subdomain.clone(), entry.clone());
            Arc::new(entries)
        });
        if added {
            self.spawn_fetch(subdomain, entry);
        }
    }

    fn spawn_fetch(self: &Arc<Self>, subdomain: Arc<str>, entry: Arc<Entry>) {
        let frames = self.clone();
        tokio::spawn(async move {
            let value = match frames.fetch(&subdomain).await {
                Ok(value) => value,
                Err(reason) => {
                    tracing::warn!(
                        subdomain = %subdomain,
                        %reason,
                        "trusted frame domains unavailable: no frame-ancestors CSP (X-Frame-Options applies)"
                    );
                    None
                }
            };
            entry.cached.store(Arc::new(Cached {
                value,
                expires: Instant::now() + frames.settings.cache_time,
            }));
            entry.fetching.store(false, Ordering::Release);
            frames.fetched.send_modify(|count| *count += 1);
        });
    }

    /// The header for `subdomain`'s `iframeDomains`; `Ok(None)` when it has none.
    async fn fetch(&self, subdomain: &str) -> Result<Option<HeaderValue>, String> {
        let url = format!(
            "{}?{}",
            self.settings.endpoint,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("subdomain", subdomain)
                .finish()
        );
        let answer = self
            .idp
            .get_json(&url, None)
            .await
            .map_err(|error| crate::idp::xsuaa::error_chain(&error))?;
        let domains = match answer.get("iframeDomains") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(domains)) => domains,
            Some(_) => return Err("iframeDomains is not a string".into()),
        };
        csp(domains)
    }
}

/// `frame-ancestors <domains>;` from the space-separated `domains`; `Ok(None)` for none. A
/// domain that could end the directive or the header is refused whole: a policy other than the
/// one configured must not reach browsers.
fn csp(domains: &str) -> Result<Option<HeaderValue>, String> {
    let mut sources = Vec::new();
    for source in domains.split_ascii_whitespace() {
        let sane = source
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b';' | b',' | b'"'));
        if !sane {
            return Err(format!("iframeDomains holds an invalid source {source:?}"));
        }
        sources.push(source);
    }
    if sources.is_empty() {
        return Ok(None);
    }
    HeaderValue::try_from(format!("frame-ancestors {};", sources.join(" ")))
        .map(Some)
        .map_err(|_| "iframeDomains is not a header value".into())
}

#[cfg(test)]
mod tests {
    use super::csp;

    #[test]
    fn sources_become_one_directive_and_bad_ones_refuse_it() {
        let value = csp(" https://a.example  https://*.b.example\t'self' ").unwrap();
        assert_eq!(
            value.unwrap(),
            "frame-ancestors https://a.example https://*.b.example 'self';"
        );
        assert_eq!(csp("   ").unwrap(), None);
        for bad in ["https://a.example; script-src *", "a,b", "\"x\"", "é.example"] {
            assert!(csp(bad).is_err(), "{bad}");
        }
    }
}
