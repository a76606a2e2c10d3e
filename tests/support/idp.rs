//! The development XSUAA wired into test routers, and a cookie-keeping "browser" that follows
//! redirects across the router and the identity provider by hand.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use xsuaa_dev::DevXsuaa;

use super::GatewayBuilder;

impl GatewayBuilder {
    /// Binds `credentials` of `dev` through `VCAP_SERVICES` and trusts its CA (`XS_CACERT_PATH`).
    pub fn xsuaa(self, dev: &DevXsuaa, credentials: &Value) -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        let ca = folder.path().join("ca.pem");
        std::fs::write(&ca, dev.ca_pem()).expect("write ca");
        self.env("VCAP_SERVICES", dev.vcap_services(credentials))
            .env("XS_CACERT_PATH", ca.display().to_string())
            .keep(folder)
    }
}

impl GatewayBuilder {
    /// Binds XSUAA (`xsuaa` credentials) and `dev`'s Destination and Connectivity services
    /// (x509 credentials of their own clients) through `VCAP_SERVICES`, trusting `dev`'s CA.
    pub fn services(self, dev: &DevXsuaa, xsuaa: &Value) -> Self {
        let (destination, connectivity) = service_credentials(dev);
        self.services_with(dev, xsuaa, &destination, &connectivity)
    }

    /// As [`GatewayBuilder::services`], with these service credentials.
    pub fn services_with(self, dev: &DevXsuaa, xsuaa: &Value, destination: &Value, connectivity: &Value) -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        let ca = folder.path().join("ca.pem");
        std::fs::write(&ca, dev.ca_pem()).expect("write ca");
        self.env("VCAP_SERVICES", dev.vcap_services_all(xsuaa, destination, connectivity))
            .env("XS_CACERT_PATH", ca.display().to_string())
            .keep(folder)
    }
}

/// x509 credentials of `dev`'s Destination and Connectivity service clients.
pub fn service_credentials(dev: &DevXsuaa) -> (Value, Value) {
    let destination = dev
        .service_credentials(xsuaa_dev::ServiceKind::Destination)
        .expect("destination credentials");
    let connectivity = dev
        .service_credentials(xsuaa_dev::ServiceKind::Connectivity)
        .expect("connectivity credentials");
    (destination, connectivity)
}

/// A development XSUAA with default settings.
pub async fn dev_xsuaa() -> DevXsuaa {
    DevXsuaa::builder().start().await.expect("development XSUAA")
}

/// A client with a cookie jar that trusts the development CA and never follows redirects itself.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Browser {
    /// A new browser trusting `dev`'s CA.
    pub fn new(dev: &DevXsuaa) -> Browser {
        let jar = Arc::new(Jar::default());
        let ca = reqwest::Certificate::from_pem(dev.ca_pem().as_bytes()).expect("ca");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .add_root_certificate(ca)
            .no_proxy()
            .build()
            .expect("client");
        Browser { client, jar }
    }

    /// A browser trusting `dev`'s CA that resolves `dev`'s zone hosts and `hosts` (router host
    /// names under `localhost`) to loopback, as browsers do for names under `localhost`.
    pub fn resolving(dev: &DevXsuaa, hosts: &[&str]) -> Browser {
        let jar = Arc::new(Jar::default());
        let ca = reqwest::Certificate::from_pem(dev.ca_pem().as_bytes()).expect("ca");
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .add_root_certificate(ca)
            .no_proxy();
        for host in dev
            .zone_host_names()
            .iter()
            .map(String::as_str)
            .chain(hosts.iter().copied())
        {
            builder = builder.resolve(host, loopback);
        }
        Browser {
            client: builder.build().expect("client"),
            jar,
        }
    }

    /// GET `url`, then follow redirects (and the login page's script redirect) up to 10 hops.
    /// Returns the final response and every URL visited.
    pub async fn navigate(&self, url: &str) -> (Response, Vec<String>) {
        let mut current = reqwest::Url::parse(url).expect("url");
        let mut visited = vec![current.to_string()];
        for _ in 0..10 {
            let response = self.client.get(current.clone()).send().await.expect("request");
            let next = if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .expect("location")
                    .to_str()
                    .unwrap()
                    .to_string();
                current.join(&location).expect("redirect target")
            } else if response.status() == StatusCode::OK && is_login_page(&response) {
                let text = response.text().await.expect("body");
                reqwest::Url::parse(&login_page_target(&text)).expect("login page target")
            } else {
                return (response, visited);
            };
            visited.push(next.to_string());
            current = next;
        }
        panic!("redirect loop: {visited:?}");
    }

    /// The value of cookie `name` for `url`, if set.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

fn is_login_page(response: &Response) -> bool {
    response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("nonce-"))
}

/// The authorize URL inside the login page's `location.replace("…")`.
pub fn login_page_target(page: &str) -> String {
    let start = page.find("location.replace(").expect("login page script") + "location.replace(".len();
    let end = page[start..].find(')').expect("end of call") + start;
    serde_json::from_str::<String>(&page[start..end]).expect("JSON string literal")
}

/// The query parameters of a URL.
pub fn query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// One query parameter.
pub fn param(url: &str, name: &str) -> Option<String> {
    query(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A development XSUAA with the tenants `acme` and `beta` (zones `zone-acme`, `zone-beta`), and
/// a destination `erp` that only `acme` has, to `backend` with `x-tenant-destination: acme`.
pub async fn two_tenants(backend: &super::Backend) -> DevXsuaa {
    DevXsuaa::builder()
        .tenant("acme", "zone-acme")
        .tenant("beta", "zone-beta")
        .tenant_destination(
            "acme",
            "erp",
            [
                ("URL", backend.url().as_str()),
                ("ProxyType", "Internet"),
                ("Authentication", "NoAuthentication"),
                ("URL.headers.x-tenant-destination", "acme"),
            ],
        )
        .start()
        .await
        .expect("development XSUAA with two tenants")
}
