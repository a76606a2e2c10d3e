//! Redis Sentinel locations: the `redis+sentinel://` URL form and the Sentinel fields of a binding
//! (those of SAP's redis-operator: `sentinelEnabled`, `sentinelHost`, `sentinelPort`, `masterName`,
//! `password`, `tlsEnabled`, `caData`).

use percent_encoding::percent_decode_str;

use super::super::error::Error;

/// The port a sentinel listens on when none is given.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A Redis deployment watched by sentinels: the router asks them for the current master.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// The sentinels as `(host, port)`, asked in this order.
    pub nodes: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// TLS to the sentinels and to the master.
    pub tls: bool,
    /// ACL user name, for the master and the sentinels.
    pub username: Option<String>,
    /// Password, for the master and the sentinels.
    pub password: Option<String>,
    /// CA certificates (PEM) from the binding's `caData`; they replace the other trust roots.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for SentinelSettings {
    // No password and no certificate text in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSettings")
            .field("nodes", &self.nodes)
            .field("master_name", &self.master_name)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl SentinelSettings {
    /// `redis+sentinel://host:port,…/<master>` (or `rediss+`), without credentials, for logs.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls { "rediss+sentinel" } else { "redis+sentinel" };
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
            .collect();
        format!("{scheme}://{}/{}", nodes.join(","), self.master_name)
    }
}

/// Whether `text` uses one of the Sentinel URL schemes.
pub fn is_sentinel_url(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("redis+sentinel:") || lower.starts_with("rediss+sentinel:")
}

/// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/<master-name>`; `rediss+sentinel`
/// for TLS. A host without a port uses 26379.
pub fn parse_url(text: &str, path: &str, errors: &mut Error) -> Option<SentinelSettings> {
    let text = text.trim();
    let form = "expected redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>";
    let Some((scheme, rest)) = text.split_once("://") else {
        errors.push(path, format!("not a valid URL: {form}"));
        return None;
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "redis+sentinel" => false,
        "rediss+sentinel" => true,
        other => {
            errors.push(
                path,
                format!("scheme must be redis+sentinel or rediss+sentinel, got {other:?}"),
            );
            return None;
        }
    };
    if rest.contains(['?', '#']) {
        errors.push(path, "must not have a query or fragment (#insecure is not supported)");
        return None;
    }
    let Some((authority, master)) = rest.split_once('/') else {
        errors.push(path, format!("has no master name: {form}"));
        return None;
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let decode = |part: &str| percent_decode_str(part).decode_utf8().map(|s| s.into_owned());
            let Ok(user) = decode(user) else {
                errors.push(path, "the user name is not valid UTF-8 after percent-decoding");
                return None;
            };
            let password = match password.map(decode).transpose() {
                Ok(password) => password,
                Err(_) => {
                    errors.push(path, "the password is not valid UTF-8 after percent-decoding");
                    return None;
                }
            };
            (Some(user).filter(|u| !u.is_empty()), password.filter(|p| !p.is_empty()))
        }
    };
    let nodes = node_list(hosts, DEFAULT_SENTINEL_PORT, path, errors)?;
    let master_name = match percent_decode_str(master).decode_utf8() {
        Ok(name) if !name.is_empty() && !name.contains(['/', ' ']) => name.into_owned(),
        _ => {
            errors.push(
                path,
                format!("the path must be the master name alone (one segment, no spaces), got {master:?}"),
            );
            return None;
        }
    };
    Some(SentinelSettings {
        nodes,
        master_name,
        tls,
        username,
        password,
        ca_pem: None,
    })
}

/// The Sentinel fields of a binding, when `sentinelEnabled` is true; `text` reads a field as text.
pub fn from_credentials(
    text: &dyn Fn(&str) -> Option<String>,
    path: &str,
    errors: &mut Error,
) -> Option<SentinelSettings> {
    let default_port = match text("sentinelPort") {
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                errors.push(
                    format!("{path}.sentinelPort"),
                    format!("must be a port number, got {port:?}"),
                );
                return None;
            }
        },
        None => DEFAULT_SENTINEL_PORT,
    };
    let Some(hosts) = text("sentinelHost") else {
        errors.push(
            format!("{path}.sentinelHost"),
            "is required when sentinelEnabled is true (one host, or host:port,host:port,...)",
        );
        return None;
    };
    let nodes = node_list(&hosts, default_port, &format!("{path}.sentinelHost"), errors)?;
    let Some(master_name) = text("masterName") else {
        errors.push(
            format!("{path}.masterName"),
            "is required when sentinelEnabled is true (the name the sentinels monitor)",
        );
        return None;
    };
    // `tls` is this router's field for plain bindings; redis-operator writes `tlsEnabled`.
    let mut flag = |key: &str| match text(key).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            errors.push(format!("{path}.{key}"), format!("must be true or false, got {other:?}"));
            false
        }
    };
    let tls = flag("tlsEnabled") | flag("tls");
    let ca_pem = text("caData");
    if ca_pem.is_some() && !tls {
        errors.push(format!("{path}.caData"), "is given but tlsEnabled is not true");
        return None;
    }
    if let Some(pem) = &ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            errors.push(format!("{path}.caData"), "must hold PEM certificates");
            return None;
        }
    }
    Some(SentinelSettings {
        nodes,
        master_name,
        tls,
        username: text("username"),
        password: text("password"),
        ca_pem,
    })
}

/// `host[:port],host[:port],…`; IPv6 addresses in brackets.
fn node_list(text: &str, default_port: u16, path: &str, errors: &mut Error) -> Option<Vec<(String, u16)>> {
    let mut nodes = Vec::new();
    for (index, item) in text.split(',').enumerate() {
        match node(item.trim(), default_port) {
            Ok(node) => nodes.push(node),
            Err(reason) => {
                errors.push(path, format!("sentinel {} ({:?}): {reason}", index + 1, item.trim()));
                return None;
            }
        }
    }
    Some(nodes)
}

fn node(text: &str, default_port: u16) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err("no host".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("unclosed [".into());
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address in brackets".into());
        }
        match after {
            "" => (host, None),
            after => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("expected :port after ]".into()),
            },
        }
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err("an IPv6 address must be in brackets".into()),
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if !host.contains(':') && (url::Host::parse(host).is_err() || host.contains(['@', '/', '%'])) {
        return Err("not a valid host name".into());
    }
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("not a port number: {port:?}")),
        },
        None => default_port,
    };
    Ok((host.to_string(), port))
}
