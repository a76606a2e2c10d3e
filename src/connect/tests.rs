//! The connector against real sockets on loopback: TLS servers with certificates made here, and a
//! `CONNECT` proxy that accepts, refuses, answers garbage, hangs up or stays silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    roots: Arc<RootCertStore>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            roots: Arc::new(roots),
        }
    }

    /// A certificate for 127.0.0.1 named `name`, with its key.
    fn issue(&self, name: &str) -> Identity {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(86_400)).into();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (vec![cert.der().clone()], key)
    }
}

/// A TLS server on loopback offering `alpn`, accepting (not requiring) client certificates from
/// `ca`; it reports each client's leaf certificate, writes `hello` and closes.
async fn tls_server(ca: &Ca, alpn: &[&[u8]]) -> (SocketAddr, mpsc::UnboundedReceiver<Option<Vec<u8>>>) {
    let (chain, key) = ca.issue("server");
    let verifier = WebPkiClientVerifier::builder_with_provider(ca.roots.clone(), crate::tls::provider())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (clients_tx, clients) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                continue;
            };
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| leaf.to_vec());
            let _ = clients_tx.send(leaf);
            let _ = tls.write_all(b"hello").await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, clients)
}

/// A plain TCP server that writes `hello` to each connection and closes it.
async fn plain_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"hello").await;
        }
    });
    addr
}

#[derive(Clone, Copy)]
enum ProxyAnswer {
    Tunnel,
    Status(u16),
    Garbage,
    HangUp,
    Silent,
}

/// A proxy on loopback answering every `CONNECT` as told; reports each request head.
async fn proxy(answer: ProxyAnswer) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads_tx, heads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let heads_tx = heads_tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let Ok(byte) = client.read_u8().await else { return };
                    head.push(byte);
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split(' ').nth(1).unwrap().to_string();
                let _ = heads_tx.send(head);
                match answer {
                    ProxyAnswer::Tunnel => {
                        let mut upstream = TcpStream::connect(target).await.unwrap();
                        client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    ProxyAnswer::Status(status) => {
                        let answer = format!("HTTP/1.1 {status} No\r\ncontent-length: 0\r\n\r\n");
                        let _ = client.write_all(answer.as_bytes()).await;
                    }
                    ProxyAnswer::Garbage => {
                        let _ = client.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
                    }
                    ProxyAnswer::HangUp => {}
                    ProxyAnswer::Silent => {
                        // Holds the connection open without a word until the client gives up.
                        let _ = client.read_u8().await;
                    }
                }
            });
        }
    });
    (addr, heads)
}

async fn read_all(stream: Stream) -> Vec<u8> {
    let mut io = TokioIo::new(stream);
    let mut read = Vec::new();
    io.read_to_end(&mut read).await.unwrap();
    read
}

fn uri(text: &str) -> Uri {
    text.parse().unwrap()
}

#[tokio::test]
async fn https_verifies_the_server_and_reports_alpn() {
    let ca = Ca::new("test CA");
    let (addr, _clients) = tls_server(&ca, &[b"h2", b"http/1.1"]).await;
    let target = uri(&format!("https://127.0.0.1:{}/", addr.port()));

    let both = Connector::new(Trust::Roots(ca.roots.clone()), None, Protocols::Http1AndH2).unwrap();
    let stream = both.connect(&target).await.unwrap();
    assert!(stream.is_tls());
    assert_eq!(stream.alpn(), Some(&b"h2"[..]));
    assert!(stream.connected().is_negotiated_h2());
    assert_eq!(read_all(stream).await, b"hello");

    let http1 = Connector::new(Trust::Roots(ca.roots.clone()), None, Protocols::Http1).unwrap();
    let stream = http1.connect(&target).await.unwrap();
    assert_eq!(stream.alpn(), Some(&b"http/1.1"[..]));
    assert!(!stream.connected().is_negotiated_h2());
}

#[tokio::test]
async fn untrusted_server_is_refused_unless_any_server_is_trusted() {
    let ca = Ca::new("test CA");
    let (addr, _clients) = tls_server(&ca, &[]).await;
    let target = uri(&format!("https://127.0.0.1:{}/", addr.port()));

    let other = Ca::new("another CA");
    let strict = Connector::new(Trust::Roots(other.roots.clone()), None, Protocols::Http1).unwrap();
    let error = strict.connect(&target).await.err().unwrap();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");

    let insecure = Connector::new(Trust::AnyServer, None, Protocols::Http1).unwrap();
    let stream = insecure.connect(&target).await.unwrap();
    assert_eq!(stream.alpn(), None, "the server offers no ALPN");
    assert_eq!(read_all(stream).await, b"hello");
}

#[tokio::test]
async fn client_identity_is_presented_and_swapped_for_new_connections() {
    let ca = Ca::new("test CA");
    let (addr, mut clients) = tls_server(&ca, &[]).await;
    let target = uri(&format!("https://127.0.0.1:{}/", addr.port()));
    let first = ca.issue("first client");
    let second = ca.issue("second client");
    let (first_leaf, second_leaf) = (first.0[0].to_vec(), second.0[0].to_vec());

    let connector = Connector::new(Trust::Roots(ca.roots.clone()), Some(first), Protocols::Http1).unwrap();
    let open = connector.connect(&target).await.unwrap();
    assert_eq!(clients.recv().await.unwrap(), Some(first_leaf));

    // A clone shares the configuration: swapping through it reaches the original.
    connector.clone().set_identity(Some(second)).unwrap();
    read_all(connector.connect(&target).await.unwrap()).await;
    assert_eq!(clients.recv().await.unwrap(), Some(second_leaf));
    assert_eq!(read_all(open).await, b"hello", "an open connection is not disturbed");

    connector.set_identity(None).unwrap();
    read_all(connector.connect(&target).await.unwrap()).await;
    assert_eq!(clients.recv().await.unwrap(), None);

    // A key that does not belong to the certificate is refused; the identity stays.
    let (chain, _) = ca.issue("third client");
    let (_, other_key) = ca.issue("fourth client");
    let error = connector.set_identity(Some((chain, other_key))).err().unwrap();
    assert!(matches!(error, crate::tls::Error::Identity(_)), "{error:?}");
}

#[tokio::test]
async fn plain_and_tls_connections_go_through_the_proxy_tunnel() {
    let ca = Ca::new("test CA");
    let (tls_addr, _clients) = tls_server(&ca, &[b"h2", b"http/1.1"]).await;
    let plain_addr = plain_server().await;
    let (proxy_addr, mut heads) = proxy(ProxyAnswer::Tunnel).await;
    let direct = Connector::new(Trust::Roots(ca.roots.clone()), None, Protocols::Http1AndH2).unwrap();
    let tunnelled = direct.through_proxy("127.0.0.1", proxy_addr.port()).unwrap();

    let stream = tunnelled
        .connect(&uri(&format!("http://127.0.0.1:{}/x", plain_addr.port())))
        .await
        .unwrap();
    assert!(!stream.is_tls());
    assert_eq!(read_all(stream).await, b"hello");
    let target = format!("127.0.0.1:{}", plain_addr.port());
    assert_eq!(
        heads.recv().await.unwrap(),
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    );

    let stream = tunnelled
        .connect(&uri(&format!("https://127.0.0.1:{}/", tls_addr.port())))
        .await
        .unwrap();
    assert_eq!(
        stream.alpn(),
        Some(&b"h2"[..]),
        "TLS and ALPN run end to end through the tunnel"
    );
    assert_eq!(read_all(stream).await, b"hello");
    assert!(heads
        .recv()
        .await
        .unwrap()
        .starts_with(&format!("CONNECT 127.0.0.1:{} ", tls_addr.port())));

    // Without a port, the scheme's default goes into the CONNECT line.
    let (refusing_addr, mut heads) = proxy(ProxyAnswer::Status(403)).await;
    let refusing = direct.through_proxy("127.0.0.1", refusing_addr.port()).unwrap();
    let _ = refusing.connect(&uri("https://localhost/")).await;
    assert!(heads
        .recv()
        .await
        .unwrap()
        .starts_with("CONNECT localhost:443 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn proxy_failures_are_reported_as_such() {
    let direct = Connector::new(Trust::AnyServer, None, Protocols::Http1).unwrap();
    let target = uri("http://127.0.0.1:9/");

    let (refusing, _heads) = proxy(ProxyAnswer::Status(407)).await;
    let error = direct
        .through_proxy("127.0.0.1", refusing.port())
        .unwrap()
        .connect(&target)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::TunnelRefused { status: 407, .. }), "{error:?}");

    let (garbage, _heads) = proxy(ProxyAnswer::Garbage).await;
    let error = direct
        .through_proxy("127.0.0.1", garbage.port())
        .unwrap()
        .connect(&target)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::TunnelInvalid { .. }), "{error:?}");

    let (hanging_up, _heads) = proxy(ProxyAnswer::HangUp).await;
    let error = direct
        .through_proxy("127.0.0.1", hanging_up.port())
        .unwrap()
        .connect(&target)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::TunnelIo { .. }), "{error:?}");

    let (silent, _heads) = proxy(ProxyAnswer::Silent).await;
    let error = direct
        .through_proxy("127.0.0.1", silent.port())
        .unwrap()
        .with_connect_timeout(Duration::from_millis(200))
        .connect(&target)
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::TimedOut(_)), "{error:?}");

    let error = direct.through_proxy("not a host", 8080).err().unwrap();
    assert!(matches!(error, Error::InvalidUri(_)), "{error:?}");
}

#[tokio::test]
async fn closed_ports_and_unusable_uris_fail_to_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let connector = Connector::new(Trust::AnyServer, None, Protocols::Http1).unwrap();
    let error = connector
        .connect(&uri(&format!("http://{closed}/")))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, Error::Tcp { .. }), "{error:?}");
    for text in ["ftp://127.0.0.1/", "/relative"] {
        let error = connector.connect(&uri(text)).await.err().unwrap();
        assert!(matches!(error, Error::InvalidUri(_)), "{text}: {error:?}");
    }
}

#[tokio::test]
async fn hyper_util_client_connects_through_it() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let connector = Connector::new(Trust::AnyServer, None, Protocols::Http1).unwrap();
    let client: Client<Connector, Empty<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let response = client
        .get(uri(&format!("http://127.0.0.1:{}/", addr.port())))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test]
async fn host_names_are_resolved_and_each_address_tried() {
    // `localhost` may resolve to `::1` first, where nothing listens: the next address is tried.
    let addr = plain_server().await;
    let connector = Connector::new(Trust::AnyServer, None, Protocols::Http1).unwrap();
    let stream = connector
        .connect(&uri(&format!("http://localhost:{}/", addr.port())))
        .await
        .unwrap();
    assert_eq!(read_all(stream).await, b"hello");
}

#[tokio::test]
async fn names_under_localhost_are_the_loopback_address() {
    let server = plain_server().await;
    for host in ["tenant-a.auth.localhost", "LOCALHOST", "x.Localhost."] {
        tcp(host, server.port(), Duration::from_secs(5))
            .await
            .unwrap_or_else(|error| panic!("{host}: {error}"));
    }
    assert_eq!(loopback_name("localhost.example.org"), None);
    assert_eq!(loopback_name("notlocalhost"), None);
    assert_eq!(loopback_name(".localhost"), None);
}
