//! The Destination service's answer to "find destination", checked into a [`FoundDestination`]:
//! every property the router honours validated, errors naming the destination and the property.

use std::time::Duration;

use base64::Engine;
use http::{HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value};

use super::DestinationError;

/// `Authentication` of a destination: every type the Destination service knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    NoAuthentication,
    BasicAuthentication,
    OAuth2ClientCredentials,
    OAuth2UserTokenExchange,
    OAuth2JWTBearer,
    OAuth2SAMLBearerAssertion,
    OAuth2Password,
    OAuth2TechnicalUserPropagation,
    PrincipalPropagation,
    ClientCertificateAuthentication,
    SAMLAssertion,
    OAuth2RefreshToken,
    OAuth2AuthorizationCode,
    OAuth2TokenExchange,
}

impl Authentication {
    const ALL: [(&'static str, Authentication); 14] = [
        ("NoAuthentication", Authentication::NoAuthentication),
        ("BasicAuthentication", Authentication::BasicAuthentication),
        ("OAuth2ClientCredentials", Authentication::OAuth2ClientCredentials),
        ("OAuth2UserTokenExchange", Authentication::OAuth2UserTokenExchange),
        ("OAuth2JWTBearer", Authentication::OAuth2JWTBearer),
        ("OAuth2SAMLBearerAssertion", Authentication::OAuth2SAMLBearerAssertion),
        ("OAuth2Password", Authentication::OAuth2Password),
        (
            "OAuth2TechnicalUserPropagation",
            Authentication::OAuth2TechnicalUserPropagation,
        ),
        ("PrincipalPropagation", Authentication::PrincipalPropagation),
        (
            "ClientCertificateAuthentication",
            Authentication::ClientCertificateAuthentication,
        ),
        ("SAMLAssertion", Authentication::SAMLAssertion),
        ("OAuth2RefreshToken", Authentication::OAuth2RefreshToken),
        ("OAuth2AuthorizationCode", Authentication::OAuth2AuthorizationCode),
        ("OAuth2TokenExchange", Authentication::OAuth2TokenExchange),
    ];

    /// The type named `text`, exactly as the service spells it.
    pub fn from_name(text: &str) -> Option<Authentication> {
        Self::ALL.iter().find(|(name, _)| *name == text).map(|(_, auth)| *auth)
    }

    /// True when the service answers with the credentials in `authTokens` (a request without
    /// them would reach the backend unauthenticated).
    fn needs_auth_token(self) -> bool {
        !matches!(
            self,
            Authentication::NoAuthentication
                | Authentication::PrincipalPropagation
                | Authentication::ClientCertificateAuthentication
                | Authentication::BasicAuthentication
        )
    }
}

/// `ProxyType` of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyType {
    /// Straight to the URL.
    Internet,
    /// Through the Connectivity service's proxy.
    OnPremise,
    /// A private link endpoint; the only type that honours `TrustAll`.
    PrivateLink,
}

/// A destination as the Destination service describes it, checked.
#[derive(Clone)]
pub struct FoundDestination {
    /// `Name`, as asked for.
    pub name: String,
    /// `URL`: absolute `http` or `https`.
    pub url: url::Url,
    /// `ProxyType`.
    pub proxy_type: ProxyType,
    /// `Authentication`.
    pub authentication: Authentication,
    /// The header to set on backend requests: `authTokens[0].http_header`, or `Basic` built from
    /// `User`/`Password`.
    pub auth_header: Option<(HeaderName, HeaderValue)>,
    /// `authTokens[0].expires_in`: how long the header is good for.
    pub auth_expires_in: Option<Duration>,
    /// `HTML5.Timeout`.
    pub timeout: Option<Duration>,
    /// `HTML5.ForwardAuthToken`.
    pub forward_auth_token: bool,
    /// `HTML5.ForwardAuthCertificates`: the XSUAA binding's certificate toward the backend.
    pub forward_auth_certificates: bool,
    /// `HTML5.DynamicDestination`.
    pub dynamic: bool,
    /// `HTML5.PreserveHostHeader`.
    pub preserve_host_header: bool,
    /// `HTML5.SetXForwardedHeaders` (default true).
    pub set_x_forwarded_headers: bool,
    /// `HTML5.StrictConnectionMode`.
    pub strict_connection_mode: bool,
    /// `TrustAll` (PrivateLink only; false for every other proxy type).
    pub trust_all: bool,
    /// `URL.headers.<name>`: headers added to backend requests.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `sap-client`.
    pub sap_client: Option<HeaderValue>,
    /// `CloudConnectorLocationId` (OnPremise).
    pub cloud_connector_location_id: Option<HeaderValue>,
    /// The `TrustStoreLocation` certificates: trust roots for the backend.
    pub trust_store: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for FoundDestination {
    // The credentials never reach a log line through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundDestination")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("proxy_type", &self.proxy_type)
            .field("authentication", &self.authentication)
            .field("has_auth_header", &self.auth_header.is_some())
            .field("auth_expires_in", &self.auth_expires_in)
            .finish_non_exhaustive()
    }
}

/// Checks a find-destination answer for destination `name`; `connectivity_bound` says whether an
/// OnPremise destination can be reached.
///
/// # Errors
/// [`DestinationError::Malformed`] for an answer that is not a destination,
/// [`DestinationError::Invalid`] naming the bad property, [`DestinationError::AuthToken`] for a
/// token the service could not get, [`DestinationError::UnsupportedAuthentication`],
/// [`DestinationError::NotYetSupported`].
pub fn parse_destination(
    name: &str,
    bytes: &[u8],
    connectivity_bound: bool,
) -> Result<FoundDestination, DestinationError> {
    let malformed = |reason: String| DestinationError::Malformed {
        name: name.to_string(),
        reason,
    };
    let answer: Value = serde_json::from_slice(bytes).map_err(|error| malformed(format!("not JSON: {error}")))?;
    let configuration = answer
        .get("destinationConfiguration")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("no destinationConfiguration object".into()))?;
    let properties = Properties {
        name,
        map: configuration,
    };

    match properties.text("Type")? {
        Some("HTTP") => {}
        Some(other) => return Err(properties.invalid("Type", format!("must be HTTP, got {other:?}"))),
        None => return Err(properties.invalid("Type", "is required".into())),
    }
    let url = match properties.text("URL")? {
        Some(text) => match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()) => url,
            _ => return Err(properties.invalid("URL", "must be an absolute http(s) URL".into())),
        },
        None => return Err(properties.invalid("URL", "is required".into())),
    };
    let proxy_type = match properties.text("ProxyType")? {
        Some("Internet") => ProxyType::Internet,
        Some("OnPremise") => ProxyType::OnPremise,
        Some("PrivateLink") => ProxyType::PrivateLink,
        Some(other) => {
            return Err(properties.invalid(
                "ProxyType",
                format!("must be OnPremise, Internet or PrivateLink, got {other:?}"),
            ))
        }
        None => return Err(properties.invalid("ProxyType", "is required".into())),
    };
    if proxy_type == ProxyType::OnPremise && !connectivity_bound {
        return Err(properties.invalid("ProxyType", "OnPremise needs a connectivity binding".into()));
    }
    let authentication = match properties.text("Authentication")? {
        None => Authentication::NoAuthentication,
        Some(text) => Authentication::from_name(text).ok_or_else(|| DestinationError::UnsupportedAuthentication {
            name: name.to_string(),
            authentication: text.chars().take(64).collect(),
        })?,
    };
    let user = properties.text("User")?;
    let password = properties.text("Password")?;
    if user.is_some() != password.is_some() {
        let missing = if user.is_none() { "User" } else { "Password" };
        return Err(properties.invalid(missing, "User and Password come as a pair".into()));
    }
    let timeout = match properties.text("HTML5.Timeout")? {
        None => None,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ms) if ms >= 1 => Some(Duration::from_millis(ms)),
            _ => {
                return Err(properties.invalid(
                    "HTML5.Timeout",
                    "must be a whole number of milliseconds, at least 1".into(),
                ))
            }
        },
    };
    let forward_auth_token = properties.flag("HTML5.ForwardAuthToken", false)?;
    if forward_auth_token && authentication != Authentication::NoAuthentication {
        return Err(properties.invalid(
            "HTML5.ForwardAuthToken",
            "is only allowed with Authentication NoAuthentication".into(),
        ));
    }
    if forward_auth_token && proxy_type == ProxyType::OnPremise {
        return Err(properties.invalid(
            "HTML5.ForwardAuthToken",
            "is not allowed with ProxyType OnPremise".into(),
        ));
    }

    let forward_auth_certificates = properties.flag("HTML5.ForwardAuthCertificates", false)?;
    let (auth_header, auth_expires_in) = auth_token(name, &answer)?;
    let auth_header = match (auth_header, authentication, user.zip(password)) {
        (Some(header), _, _) => Some(header),
        (None, Authentication::BasicAuthentication, Some((user, password))) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let value = HeaderValue::try_from(format!("Basic {encoded}"))
                .map_err(|_| properties.invalid("User", "not usable in a header".into()))?;
            Some((http::header::AUTHORIZATION, value))
        }
        (None, auth, _) if auth.needs_auth_token() || auth == Authentication::BasicAuthentication => {
            return Err(DestinationError::AuthToken {
                name: name.to_string(),
                reason: "the destination service returned no authTokens".into(),
            })
        }
        (None, _, _) => None,
    };

    let mut headers = Vec::new();
    for (key, value) in configuration {
        let Some(header) = key.strip_prefix("URL.headers.") else {
            continue;
        };
        let header_name =
            HeaderName::try_from(header).map_err(|_| properties.invalid(key, "not a header name".into()))?;
        let value = value
            .as_str()
            .and_then(|v| HeaderValue::try_from(v).ok())
            .ok_or_else(|| properties.invalid(key, "not a header value".into()))?;
        headers.push((header_name, value));
    }
    let header_value = |key: &str| -> Result<Option<HeaderValue>, DestinationError> {
        properties
            .text(key)?
            .map(|text| HeaderValue::try_from(text).map_err(|_| properties.invalid(key, "not a header value".into())))
            .transpose()
    };
    let sap_client = header_value("sap-client")?;
    let cloud_connector_location_id = header_value("CloudConnectorLocationId")?;
    let trust_all = properties.flag("TrustAll", false)? && proxy_type == ProxyType::PrivateLink;
    let trust_store = certificates(&properties, &answer, authentication)?;

    Ok(FoundDestination {
        name: name.to_string(),
        url,
        proxy_type,
        authentication,
        auth_header,
        auth_expires_in,
        timeout,
        forward_auth_token,
        forward_auth_certificates,
        dynamic: properties.flag("HTML5.DynamicDestination", false)?,
        preserve_host_header: properties.flag("HTML5.PreserveHostHeader", false)?,
        set_x_forwarded_headers: properties.flag("HTML5.SetXForwardedHeaders", true)?,
        strict_connection_mode: properties.flag("HTML5.StrictConnectionMode", false)?,
        trust_all,
        headers,
        sap_client,
        cloud_connector_location_id,
        trust_store,
    })
}

/// A header to set on backend requests.
type Header = (HeaderName, HeaderValue);

/// `authTokens[0]`: its `error`, else its `http_header` and `expires_in`.
fn auth_token(name: &str, answer: &Value) -> Result<(Option<Header>, Option<Duration>), DestinationError> {
    let bad = |reason: &str| DestinationError::AuthToken {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let Some(first) = answer
        .get("authTokens")
        .and_then(Value::as_array)
        .and_then(|tokens| tokens.first())
    else {
        return Ok((None, None));
    };
    if let Some(error) = first.get("error") {
        let text: String = error
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| error.to_string())
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(bad(&format!("the destination service could not get the token: {text}")));
    }
    let header = first
        .get("http_header")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("authTokens[0].http_header is missing"))?;
    let key = header
        .get("key")
        .and_then(Value::as_str)
        .and_then(|key| HeaderName::try_from(key).ok())
        .ok_or_else(|| bad("authTokens[0].http_header.key is not a header name"))?;
    let value = header
        .get("value")
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .and_then(|value| HeaderValue::try_from(value).ok())
        .ok_or_else(|| bad("authTokens[0].http_header.value is not a header value"))?;
    let expires_in = match first.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => Some(
            number
                .as_u64()
                .ok_or_else(|| bad("authTokens[0].expires_in is not a number"))?,
        ),
        Some(Value::String(text)) => Some(
            text.trim()
                .parse::<u64>()
                .map_err(|_| bad("authTokens[0].expires_in is not a number"))?,
        ),
        Some(_) => return Err(bad("authTokens[0].expires_in is not a number")),
    };
    Ok((Some((key, value)), expires_in.map(Duration::from_secs)))
}

/// The trust store's certificates (`TrustStoreLocation`, a `.pem` entry of `certificates`); a
/// key store (`KeyStoreLocation`) for ClientCertificateAuthentication is refused until `.p12`
/// keystores can be read.
fn certificates(
    properties: &Properties<'_>,
    answer: &Value,
    authentication: Authentication,
) -> Result<Vec<CertificateDer<'static>>, DestinationError> {
    if authentication == Authentication::ClientCertificateAuthentication {
        let location = properties.text("KeyStoreLocation")?.ok_or_else(|| {
            properties.invalid(
                "KeyStoreLocation",
                "is required for ClientCertificateAuthentication".into(),
            )
        })?;
        return Err(DestinationError::NotYetSupported {
            name: properties.name.to_string(),
            what: format!("client certificate keystore {location:?} (PKCS#12)"),
        });
    }
    let Some(location) = properties.text("TrustStoreLocation")? else {
        return Ok(Vec::new());
    };
    if !location.ends_with(".pem") {
        return Err(properties.invalid("TrustStoreLocation", "must name a .pem certificate".into()));
    }
    let entries = answer
        .get("certificates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The service capitalises the keys; the original lower-cases them, so either is taken.
    let field = |entry: &Map<String, Value>, key: &str| -> Option<String> {
        entry
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_str().map(String::from))
    };
    let content = entries
        .iter()
        .filter_map(Value::as_object)
        .find(|entry| field(entry, "name").as_deref() == Some(location))
        .and_then(|entry| field(entry, "content"))
        .ok_or_else(|| properties.invalid("TrustStoreLocation", format!("no certificate named {location:?}")))?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(content.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| properties.invalid("TrustStoreLocation", "certificate content is not base64 of PEM".into()))?;
    let certificates = crate::tls::certificates(&pem)
        .map_err(|error| properties.invalid("TrustStoreLocation", format!("unusable certificate: {error}")))?;
    if certificates.is_empty() {
        return Err(properties.invalid("TrustStoreLocation", "holds no certificate".into()));
    }
    Ok(certificates)
}

/// The properties of `destinationConfiguration`, read with errors that name them.
struct Properties<'a> {
    name: &'a str,
    map: &'a Map<String, Value>,
}

impl Properties<'_> {
    fn invalid(&self, property: &str, reason: String) -> DestinationError {
        DestinationError::Invalid {
            name: self.name.to_string(),
            property: property.chars().take(100).collect(),
            reason,
        }
    }

    /// A string property; empty counts as unset.
    fn text(&self, key: &str) -> Result<Option<&str>, DestinationError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.invalid(key, "must be a string".into())),
        }
    }

    /// A boolean property: `true`/`false` as JSON or string (any case).
    fn flag(&self, key: &str, default: bool) -> Result<bool, DestinationError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(value)) => Ok(*value),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.invalid(key, "must be true or false".into())),
        }
    }
}
