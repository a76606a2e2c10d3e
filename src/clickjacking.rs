//! Clickjacking protection beyond `X-Frame-Options` (a configured response header): the allowlist
//! service of `whitelistService.endpoint`, which tells UI5's frame options whether a parent origin
//! may frame the app, from `CJ_PROTECT_WHITELIST`; and the frame-ancestors CSP of each
//! subaccount's trusted domains (`frame_ancestors`).

mod frame_ancestors;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response};
use serde::Serialize;

use crate::body::{self, Body};
use crate::config::Config;
use crate::origin::WebOrigin;

pub use self::frame_ancestors::FrameAncestors;

/// The service's answer, with the reference's keys in the reference's order.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub version: &'static str,
    /// False only when `CJ_PROTECT_WHITELIST` is unset (then framing is not controlled).
    pub active: bool,
    /// The `parentOrigin` as passed; absent when the allowlist is inactive or none was passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub framing: bool,
}

/// Answers `GET <whitelistService.endpoint>?parentOrigin=<url>`; any other request is not ours.
pub fn respond(config: &Config, parts: &Parts) -> Option<Response<Body>> {
    let endpoint = config.whitelist_endpoint.as_deref()?;
    if parts.method != Method::GET || parts.uri.path() != endpoint {
        return None;
    }
    let parent = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "parentOrigin")
        .map(|(_, value)| value.into_owned());
    let verdict = verdict(config.frame_allowlist.as_ref(), parent);
    let json = serde_json::to_string(&verdict).ok()?;
    let mut response = Response::new(body::full(json));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Some(response)
}

/// Whether `parent` may frame the app under `allowlist`.
pub fn verdict(allowlist: Option<&crate::origin::Allowlist>, parent: Option<String>) -> Verdict {
    match allowlist {
        None => Verdict {
            version: "1.0",
            active: false,
            origin: None,
            framing: true,
        },
        Some(list) => {
            let framing = parent
                .as_deref()
                .and_then(WebOrigin::parse)
                .is_some_and(|origin| list.matches(&origin));
            Verdict {
                version: "1.0",
                active: true,
                origin: parent,
                framing,
            }
        }
    }
}
