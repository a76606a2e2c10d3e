//! `ENABLE_FRAME_ANCESTORS_CSP_HEADERS` and `FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME`: where the
//! trusted framing domains of each subaccount are read (the XSUAA binding's `apiurl`) and how long
//! they are kept.

use std::time::Duration;

use super::env::{positive_integer, Env};
use super::error::Error;
use super::XsuaaCredentials;

/// How long fetched domains are kept unless `FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME` says.
pub const DEFAULT_CACHE_TIME: Duration = Duration::from_secs(300);

/// The frame-ancestors CSP, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAncestorsSettings {
    /// `<apiurl>/sap/rest/authorization/v2/securitySettings/public`.
    pub endpoint: String,
    /// The subdomain asked for when a request has no tenant: the binding's `identityzone`.
    pub own_subdomain: String,
    /// `FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME`, seconds.
    pub cache_time: Duration,
}

/// The settings, or `None` when the CSP is not enabled; a missing `apiurl` or `identityzone` is an
/// error naming the variable and the binding.
pub fn from_env(env: &Env, xsuaa: Option<&XsuaaCredentials>, errors: &mut Error) -> Option<FrameAncestorsSettings> {
    const ENABLE: &str = "ENABLE_FRAME_ANCESTORS_CSP_HEADERS";
    const CACHE_TIME: &str = "FRAME_ANCESTORS_CSP_HEADER_CACHE_TIME";
    let cache_time = env
        .get(CACHE_TIME)
        .and_then(|text| positive_integer(CACHE_TIME, text, errors))
        .map_or(DEFAULT_CACHE_TIME, Duration::from_secs);
    if env.flag(ENABLE, errors) != Some(true) {
        return None;
    }
    let Some(credentials) = xsuaa else {
        errors.push(
            ENABLE,
            "reads the trusted domains at the XSUAA binding's apiurl, but no XSUAA binding was found \
             in VCAP_SERVICES or SERVICE_BINDING_ROOT",
        );
        return None;
    };
    let api_url = credentials.apiurl.as_deref().filter(|url| url.starts_with("https://"));
    let own_subdomain = credentials.identityzone.as_deref().filter(|zone| !zone.is_empty());
    let (Some(api_url), Some(own_subdomain)) = (api_url, own_subdomain) else {
        let missing = if api_url.is_none() {
            "an https apiurl"
        } else {
            "identityzone"
        };
        errors.push(
            ENABLE,
            format!(
                "reads the trusted domains at the XSUAA binding's apiurl, but binding {:?} has no {missing}",
                credentials.name
            ),
        );
        return None;
    };
    Some(FrameAncestorsSettings {
        endpoint: format!(
            "{}/sap/rest/authorization/v2/securitySettings/public",
            api_url.trim_end_matches('/')
        ),
        own_subdomain: own_subdomain.to_string(),
        cache_time,
    })
}
