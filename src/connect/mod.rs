//! Outbound connections: the rustls client configurations (trust, ALPN, client identity), TCP
//! options and connect timeouts, and tunnels through an HTTP proxy (`CONNECT`). Every client of
//! the router (upstream pool, websocket handshakes, identity provider) connects through it.

mod stream;
#[cfg(test)]
mod tests;
mod tls_config;
mod tunnel;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::Uri;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use self::stream::Stream;
pub use self::tls_config::{client_config, Identity, Protocols, Trust};
use crate::config::{Config, Destination};

/// How long opening a connection (name lookup, TCP, and a proxy's tunnel) may take unless set.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI has no host, or a scheme other than `http` and `https`.
    #[error("cannot connect to {0}: not an http or https URL with a host")]
    InvalidUri(String),
    /// The host name does not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    /// No address of the host (or of the proxy) accepted a TCP connection.
    #[error("cannot connect to {host}")]
    Tcp {
        host: String,
        #[source]
        source: io::Error,
    },
    /// Name lookup, TCP connect and tunnel took longer than the connect timeout.
    #[error("connecting timed out after {0:?}")]
    TimedOut(Duration),
    /// The proxy answered `CONNECT` with a status other than 2xx.
    #[error("proxy {proxy} refused the tunnel with status {status}")]
    TunnelRefused { proxy: String, status: u16 },
    /// The proxy's answer to `CONNECT` is not HTTP, too large, or followed by stray bytes.
    #[error("proxy {proxy} sent an invalid answer to CONNECT: {reason}")]
    TunnelInvalid { proxy: String, reason: &'static str },
    /// The proxy closed or broke the connection before the tunnel was open.
    #[error("proxy {proxy} closed the tunnel before it was open")]
    TunnelIo {
        proxy: String,
        #[source]
        source: io::Error,
    },
    /// An `https` URI for a forward proxy, which takes plain `http` requests only.
    #[error("{0}: the on-premise proxy takes http URLs only (TLS to the system is the Cloud Connector's)")]
    ForwardHttps(String),
    /// The host is not usable as a TLS server name.
    #[error("{0} is not a valid TLS server name")]
    ServerName(String),
    /// The TLS handshake failed (untrusted certificate, alert from the server, …).
    #[error("TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: io::Error,
    },
}

// === impl Connector ===

/// Opens connections to `http` and `https` URIs: TCP with `TCP_NODELAY` within a connect
/// timeout, through a proxy's `CONNECT` tunnel when it has one, then TLS for `https`. Cloning is
/// shallow: clones share the TLS configuration, so [`Connector::set_identity`] reaches them all.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<Tls>,
    /// The HTTP proxy that tunnels every connection (or, in `forward` mode, takes every request).
    proxy: Option<Authority>,
    /// Connections go to `proxy` itself, which gets each request in absolute form, without a
    /// tunnel and without TLS (the Connectivity service's on-premise proxy).
    forward: bool,
    connect_timeout: Duration,
}

struct Tls {
    trust: Trust,
    protocols: Protocols,
    config: ArcSwap<ClientConfig>,
    /// Counts [`Connector::set_identity`] calls, so that pools can tell connections opened with
    /// an earlier identity from those of the current one.
    generation: AtomicU64,
}

impl Connector {
    /// A direct connector verifying servers by `trust`, presenting `identity` if any, offering
    /// `protocols`, with [`CONNECT_TIMEOUT`].
    ///
    /// # Errors
    /// [`crate::tls::Error::Identity`] when the key does not fit the certificate.
    pub fn new(trust: Trust, identity: Option<Identity>, protocols: Protocols) -> Result<Connector, crate::tls::Error> {
        let config = client_config(&trust, identity, protocols)?;
        Ok(Connector {
            tls: Arc::new(Tls {
                trust,
                protocols,
                config: ArcSwap::from_pointee(config),
                generation: AtomicU64::new(0),
            }),
            proxy: None,
            forward: false,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// This connector, tunnelling through the HTTP proxy at `host:port`; the TLS configuration
    /// stays shared with `self`.
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when `host` is not a host name or IP address.
    pub fn through_proxy(&self, host: &str, port: u16) -> Result<Connector, Error> {
        let address = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let proxy = address.parse::<Authority>().map_err(|_| Error::InvalidUri(address))?;
        Ok(Connector {
            proxy: Some(proxy),
            forward: false,
            ..self.clone()
        })
    }

    /// A connector whose every connection is plain TCP to the forward proxy at `host:port`,
    /// which takes `http` requests in absolute form; `https` URIs are refused (the Connectivity
    /// service's proxy answers them 405).
    ///
    /// # Errors
    /// [`Error::InvalidUri`] when `host` is not a host name or IP address.
    pub fn forward_proxy(&self, host: &str, port: u16) -> Result<Connector, Error> {
        Ok(Connector {
            forward: true,
            ..self.through_proxy(host, port)?
        })
    }

    /// Whether connections go straight to the origin (not through a proxy).
    pub fn is_direct(&self) -> bool {
        self.proxy.is_none()
    }

    /// Whether requests on this connector's connections name their target in absolute form (a
    /// forward proxy's connections).
    pub fn is_forward_proxy(&self) -> bool {
        self.forward
    }

    /// This connector with another limit for opening a connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Connector {
        self.connect_timeout = timeout;
        self
    }

    /// Presents `identity` (a rotated client certificate) on the connections opened from now on,
    /// by this connector and its clones; open connections keep the one they were opened with.
    ///
    /// # Errors
    /// [`crate::tls::Error::Identity`] when the key does not fit the certificate; the previous
    /// identity stays.
    pub fn set_identity(&self, identity: Option<Identity>) -> Result<(), crate::tls::Error> {
        self.prepare_identity(identity)?.install();
        Ok(())
    }

    /// The TLS configuration presenting `identity`, ready to [`PreparedIdentity::install`]: when
    /// several connectors change identity together, all are prepared before any is changed.
    ///
    /// # Errors
    /// [`crate::tls::Error::Identity`] when the key does not fit the certificate.
    pub fn prepare_identity(&self, identity: Option<Identity>) -> Result<PreparedIdentity<'_>, crate::tls::Error> {
        let config = client_config(&self.tls.trust, identity, self.tls.protocols)?;
        Ok(PreparedIdentity {
            tls: &self.tls,
            config: Arc::new(config),
        })
    }

    /// How many times the identity was replaced ([`Connector::set_identity`]); a connection opened
    /// under an older generation presents an identity no longer in use.
    pub fn identity_generation(&self) -> u64 {
        self.tls.generation.load(Ordering::Acquire)
    }

    /// Opens a connection to `uri`'s origin (`http`: port 80, `https`: 443 and TLS).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn connect(&self, uri: &Uri) -> Result<Stream, Error> {
        let invalid = || Error::InvalidUri(uri.to_string());
        let tls = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return Err(invalid()),
        };
        let authority = uri.authority().ok_or_else(invalid)?;
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if self.forward {
            let proxy = self.proxy.as_ref().ok_or_else(invalid)?;
            if tls {
                return Err(Error::ForwardHttps(uri.to_string()));
            }
            let opening = tcp(proxy.host(), proxy.port_u16().unwrap_or(80), self.connect_timeout);
            let stream = tokio::time::timeout(self.connect_timeout, opening)
                .await
                .map_err(|_elapsed| Error::TimedOut(self.connect_timeout))??;
            return Ok(Stream::plain(stream));
        }
        let opening = async {
            match &self.proxy {
                Some(proxy) => {
                    let mut stream = tcp(proxy.host(), proxy.port_u16().unwrap_or(80), self.connect_timeout).await?;
                    tunnel::tunnel(&mut stream, proxy, authority, port).await?;
                    Ok(stream)
                }
                None => tcp(authority.host(), port, self.connect_timeout).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, opening)
            .await
            .map_err(|_elapsed| Error::TimedOut(self.connect_timeout))??;
        if !tls {
            return Ok(Stream::plain(stream));
        }
        let host = unbracketed(authority.host());
        let server_name = ServerName::try_from(host.to_string()).map_err(|_| Error::ServerName(host.to_string()))?;
        let stream = TlsConnector::from(self.tls.config.load_full())
            .connect(server_name, stream)
            .await
            .map_err(|source| Error::Tls {
                host: host.to_string(),
                source,
            })?;
        Ok(Stream::tls(stream))
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = Error;
    // Boxed like hyper's own connectors: connecting is rare next to reusing a connection.
    type Future = Pin<Box<dyn Future<Output = Result<Stream, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect(&uri).await })
    }
}

/// A host without the brackets of an IPv6 literal.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
}

/// `localhost` and every name under it are the loopback address (RFC 6761 §6.3), without asking
/// the resolver, as browsers do: `tenant.auth.localhost` works on machines whose resolver knows
/// only `localhost` itself.
fn loopback_name(host: &str) -> Option<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let under = host.len() > ".localhost".len()
        && host
            .get(host.len() - ".localhost".len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"));
    (host.eq_ignore_ascii_case("localhost") || under).then_some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// A TCP connection with `TCP_NODELAY` to the first address of `host` that accepts one, each of
/// several addresses tried for its share of `timeout`. The inline HTTP/1.1 client's plain
/// connections come from here too, so that every outbound connection follows one rule.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Tcp`].
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Error> {
    let literal = unbracketed(host);
    let failed = |source| Error::Tcp {
        host: format!("{host}:{port}"),
        source,
    };
    let stream = match literal.parse::<IpAddr>().ok().or_else(|| loopback_name(literal)) {
        Some(ip) => TcpStream::connect((ip, port)).await.map_err(failed)?,
        None => {
            let addresses = tokio::net::lookup_host((literal, port))
                .await
                .map_err(|source| Error::Resolve {
                    host: literal.to_string(),
                    source,
                })?;
            let addresses: Vec<_> = addresses.collect();
            // Each address gets its share of the time, as in hyper-util's connector: an address
            // that swallows packets (a broken IPv6 route) leaves time for the next one.
            let share = timeout / u32::try_from(addresses.len()).unwrap_or(u32::MAX).max(1);
            let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
            let mut connected = None;
            for address in addresses {
                match tokio::time::timeout(share, TcpStream::connect(address)).await {
                    Ok(Ok(stream)) => {
                        connected = Some(stream);
                        break;
                    }
                    Ok(Err(error)) => last = error,
                    Err(_elapsed) => last = io::ErrorKind::TimedOut.into(),
                }
            }
            connected.ok_or_else(|| failed(last))?
        }
    };
    stream.set_nodelay(true).map_err(failed)?;
    Ok(stream)
}

/// A connector's new identity, built and not yet in use ([`Connector::prepare_identity`]).
pub struct PreparedIdentity<'c> {
    tls: &'c Tls,
    config: Arc<ClientConfig>,
}

impl PreparedIdentity<'_> {
    /// New connections present the identity from now on; pooled ones opened before are not
    /// reused (the generation moves on).
    pub fn install(self) {
        self.tls.config.store(self.config);
        self.tls.generation.fetch_add(1, Ordering::Release);
    }
}

// === impl PerDestination ===

/// One value per kind of connection a configuration's destinations need: strict or insecure
/// TLS, direct or through each destination's proxy, with or without the XSUAA binding's client
/// certificate (`forwardAuthCertificates`).
#[derive(Clone)]
pub struct PerDestination<T> {
    strict: T,
    insecure: T,
    /// Strict and insecure, presenting the XSUAA binding's certificate; `None` when the binding
    /// has none (secret credentials, or no binding).
    client_certificate: Option<(T, T)>,
    /// By proxy host, port, `strictSSL` and client certificate; a handful at most, so a scan
    /// beats hashing (and finds a destination's entry without building a key).
    proxied: Vec<(ProxyKey, T)>,
    /// The Connectivity service's on-premise proxy, when bound: a forward proxy.
    on_premise: Option<T>,
}

/// A proxied connector's kind: proxy host and port, `strictSSL`, client certificate.
type ProxyKey = (String, u16, bool, bool);

/// The XSUAA binding's certificate chain and key when it has both (`XSUAA_PRIVATE_KEY` already
/// applied to the key), for destinations with `forwardAuthCertificates`.
///
/// # Errors
/// When the PEM text cannot be read.
pub fn binding_identity(config: &Config) -> Result<Option<Identity>, crate::tls::Error> {
    let Some(credentials) = config.xsuaa.as_ref().filter(|credentials| credentials.is_x509()) else {
        return Ok(None);
    };
    match (&credentials.certificate, &credentials.key) {
        (Some(certificate), Some(key)) => Ok(Some((
            crate::tls::certificates(certificate)?,
            crate::tls::private_key(key)?,
        ))),
        _ => Ok(None),
    }
}

impl PerDestination<Connector> {
    /// The connectors for `config`'s destinations, verifying servers against `roots` (or not, for
    /// `strictSSL: false`) and offering `protocols`; those for `forwardAuthCertificates` present
    /// the XSUAA binding's certificate.
    ///
    /// # Errors
    /// When a TLS configuration cannot be built.
    pub fn connectors(
        config: &Config,
        roots: Arc<RootCertStore>,
        protocols: Protocols,
    ) -> Result<PerDestination<Connector>, crate::tls::Error> {
        let strict = Connector::new(Trust::Roots(roots.clone()), None, protocols)?;
        let insecure = Connector::new(Trust::AnyServer, None, protocols)?;
        // Built whenever the binding has a certificate: a Destination-service destination may ask
        // for it at any time.
        let client_certificate = match binding_identity(config)? {
            Some((chain, key)) => Some((
                Connector::new(Trust::Roots(roots), Some((chain.clone(), key.clone_key())), protocols)?,
                Connector::new(Trust::AnyServer, Some((chain, key)), protocols)?,
            )),
            None => None,
        };
        let mut proxied: Vec<(ProxyKey, Connector)> = Vec::new();
        let mut seen = HashMap::new();
        for destination in config.destinations.values() {
            if let Some((host, port)) = &destination.proxy {
                let key = (
                    host.clone(),
                    *port,
                    destination.strict_ssl,
                    destination.forward_auth_certificates,
                );
                if seen.insert(key.clone(), ()).is_some() {
                    continue;
                }
                let direct = match (&client_certificate, destination.forward_auth_certificates) {
                    (Some((strict, insecure)), true) => match destination.strict_ssl {
                        true => strict,
                        false => insecure,
                    },
                    // The configuration refuses this destination without a certificate.
                    (None, true) => continue,
                    (_, false) => match destination.strict_ssl {
                        true => &strict,
                        false => &insecure,
                    },
                };
                let connector = direct
                    .through_proxy(host, *port)
                    .map_err(|error| crate::tls::Error::Root(format!("proxy {host}:{port}: {error}")))?;
                proxied.push((key, connector));
            }
        }
        let on_premise = match config.services.connectivity.as_ref().and_then(|c| c.proxy.as_ref()) {
            Some((host, port)) => Some(
                strict
                    .forward_proxy(host, *port)
                    .map_err(|error| crate::tls::Error::Root(format!("on-premise proxy {host}:{port}: {error}")))?,
            ),
            None => None,
        };
        Ok(PerDestination {
            strict,
            insecure,
            client_certificate,
            proxied,
            on_premise,
        })
    }

    /// The connectors that present the XSUAA binding's certificate, one per TLS configuration
    /// (the proxied ones share theirs): what a rotated certificate must reach.
    pub fn certificate_connectors(&self) -> Vec<Connector> {
        match &self.client_certificate {
            Some((strict, insecure)) => vec![strict.clone(), insecure.clone()],
            None => Vec::new(),
        }
    }
}

impl<T> PerDestination<T> {
    /// The value for `destination`'s connections; `None` for a destination with
    /// `forwardAuthCertificates` when the XSUAA binding has no certificate to present (never a
    /// connection without it).
    pub fn get(&self, destination: &Destination) -> Option<&T> {
        if let (true, Some(on_premise)) = (destination.on_premise, &self.on_premise) {
            // Plain HTTP to the proxy: TLS to the system is the Cloud Connector's.
            return Some(on_premise);
        }
        let certificate = destination.forward_auth_certificates;
        if let Some((host, port)) = &destination.proxy {
            let found = self.proxied.iter().find(|((proxy_host, proxy_port, strict, with), _)| {
                proxy_port == port && *strict == destination.strict_ssl && *with == certificate && proxy_host == host
            });
            if let Some((_, value)) = found {
                return Some(value);
            }
        }
        if certificate {
            let (strict, insecure) = self.client_certificate.as_ref()?;
            return Some(if destination.strict_ssl { strict } else { insecure });
        }
        Some(if destination.strict_ssl {
            &self.strict
        } else {
            &self.insecure
        })
    }

    /// Each value turned into another by `f`.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> PerDestination<U> {
        PerDestination {
            strict: f(&self.strict),
            insecure: f(&self.insecure),
            client_certificate: self
                .client_certificate
                .as_ref()
                .map(|(strict, insecure)| (f(strict), f(insecure))),
            proxied: self
                .proxied
                .iter()
                .map(|(key, value)| (key.clone(), f(value)))
                .collect(),
            on_premise: self.on_premise.as_ref().map(&mut f),
        }
    }
}
