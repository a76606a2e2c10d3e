//! The public security settings of a subaccount (`GET
//! /sap/rest/authorization/v2/securitySettings/public?subdomain=`): its trusted framing domains,
//! which the router turns into a frame-ancestors CSP. Unknown subdomains get 404, a missing one
//! 400, and a forced status stands in for an outage.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::json;

use crate::endpoints::parse_query;
use crate::http::{self as resp, Resp};
use crate::state::State;
use crate::util::lock;

/// The path of the endpoint, on the main listener (the binding's `apiurl`).
pub(crate) const PATH: &str = "/sap/rest/authorization/v2/securitySettings/public";

/// Trusted domains by subdomain, and a forced answer; changed at run time.
#[derive(Debug, Default)]
pub(crate) struct SecuritySettings {
    pub(crate) iframe_domains: HashMap<String, String>,
    pub(crate) failure: Option<StatusCode>,
    pub(crate) requests: u64,
}

pub(crate) fn public(state: &State, query: Option<&str>) -> Resp {
    let mut settings = lock(&state.security_settings);
    settings.requests += 1;
    if let Some(status) = settings.failure {
        return resp::json(status, &json!({"error": "unavailable"}));
    }
    let Some(subdomain) = parse_query(query).remove("subdomain").filter(|s| !s.is_empty()) else {
        return resp::json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "subdomain is required"}),
        );
    };
    if state.zone_by_subdomain(&subdomain).is_none() {
        return resp::json(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "error_description": format!("no subaccount with subdomain {subdomain}")}),
        );
    }
    let body = match settings.iframe_domains.get(&subdomain) {
        Some(domains) => json!({"iframeDomains": domains}),
        None => json!({}),
    };
    resp::json(StatusCode::OK, &body)
}
