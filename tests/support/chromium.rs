//! A real headless Chromium (Debian's `/usr/bin/chromium`) driven over the DevTools protocol:
//! launched with its own empty profile, asked to navigate, and read back (the final URL with its
//! fragment, the DOM) once the page it should end on has loaded.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
// `SinkExt` needs futures-util's "sink" feature, which tokio-tungstenite turns on.
use futures_util::{SinkExt as _, StreamExt as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Debian's package (and so CI's `apt-get install chromium`) puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A running headless Chromium with a DevTools connection to its browser target.
pub struct Chromium {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Messages read while waiting for a command's answer.
    pending: VecDeque<Value>,
    log: Arc<Mutex<Vec<String>>>,
    /// Every document request of the current visit (redirect hops included), fragment included.
    pub documents: Vec<String>,
    _profile: tempfile::TempDir,
}

/// The page as the browser shows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PageState {
    /// `location.href`, with the fragment.
    pub href: String,
    /// `document.contentType`.
    pub content_type: String,
    /// The text of the page (for a JSON document, the JSON).
    pub text: String,
    /// `document.documentElement.outerHTML`: what `--dump-dom` would print.
    pub dom: String,
}

impl Chromium {
    /// Starts Chromium with a new empty profile and `extra` flags; fails with a clear message
    /// when the browser is not installed (CI installs it, so a missing browser is an error).
    pub async fn launch(extra: &[String]) -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: this test needs Debian's chromium package (`apt-get install chromium`, \
             as .ci/run does)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));

        // Chromium announces its DevTools endpoint on stderr; the rest of stderr is kept for
        // failure messages.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (endpoint_tx, endpoint_rx) = tokio::sync::oneshot::channel::<String>();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let keep = log.clone();
        tokio::spawn(async move {
            let mut endpoint_tx = Some(endpoint_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = endpoint_tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
                keep.lock().expect("log").push(line);
            }
        });
        let endpoint = match endpoint_rx.await {
            Ok(endpoint) => endpoint,
            Err(_) => {
                let status = child.wait().await;
                panic!(
                    "Chromium exited ({status:?}) without a DevTools endpoint:\n{}",
                    log.lock().expect("log").join("\n")
                );
            }
        };
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools connection to {endpoint}: {e}"));
        Chromium {
            child,
            socket,
            next_id: 0,
            pending: VecDeque::new(),
            log,
            documents: Vec::new(),
            _profile: profile,
        }
    }

    /// What Chromium wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Sends a DevTools command (to a page session, or to the browser when `session` is None)
    /// and returns its result; events read meanwhile are kept for [`Chromium::event`].
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        loop {
            let message = self.read().await;
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.pending.push_back(message);
        }
    }

    /// The next DevTools event.
    pub async fn event(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(event) => event,
            None => self.read().await,
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("DevTools JSON"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("DevTools connection: {e}\n{}", self.log()),
                None => panic!("DevTools connection closed\n{}", self.log()),
            }
        }
    }

    /// Opens a new tab, navigates it to `url` and follows it (redirects, script navigations)
    /// until a loaded page satisfies `done`; returns that page. [`Chromium::documents`] lists
    /// every document request on the way. Bound it with a timeout.
    pub async fn visit(&mut self, url: &str, done: impl Fn(&PageState) -> bool) -> PageState {
        self.documents.clear();
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await["targetId"]
            .clone();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"].as_str().expect("sessionId").to_string();
        let session = Some(session.as_str());
        self.call(session, "Network.enable", json!({})).await;
        self.call(session, "Page.enable", json!({})).await;
        let navigation = self.call(session, "Page.navigate", json!({"url": url})).await;
        assert!(
            navigation.get("errorText").is_none(),
            "navigation to {url}: {navigation}"
        );
        loop {
            let event = self.event().await;
            if event["sessionId"].as_str() != session {
                continue;
            }
            let params = &event["params"];
            match event["method"].as_str() {
                Some("Network.requestWillBeSent") if params["type"] == "Document" => {
                    let request = &params["request"];
                    let url = request["url"].as_str().unwrap_or_default();
                    let fragment = request["urlFragment"].as_str().unwrap_or_default();
                    self.documents.push(format!("{url}{fragment}"));
                }
                Some("Page.loadEventFired") => {
                    // The page may already be replaced by the next one (or be between two):
                    // whatever is loaded now is checked, and an unfinished one is waited out.
                    let answer = self
                        .call(
                            session,
                            "Runtime.evaluate",
                            json!({
                                "expression": "JSON.stringify({href: location.href, content_type: document.contentType, \
                                    text: document.body ? document.body.innerText : '', \
                                    dom: document.documentElement.outerHTML})",
                                "returnByValue": true,
                            }),
                        )
                        .await;
                    let Some(state) = answer["result"]["value"].as_str() else {
                        continue;
                    };
                    let state: PageState = serde_json::from_str(state).expect("page state");
                    assert!(
                        !state.href.starts_with("chrome-error:"),
                        "Chromium shows an error page: {}\ndocuments requested: {:#?}",
                        state.text,
                        self.documents
                    );
                    if done(&state) {
                        return state;
                    }
                }
                _ => {}
            }
        }
    }

    /// Closes the browser and waits (10 s at most) for it to exit; it is killed otherwise.
    pub async fn close(mut self) {
        self.next_id += 1;
        let close = json!({"id": self.next_id, "method": "Browser.close"});
        let _ = self.socket.send(Message::text(close.to_string())).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `--ignore-certificate-errors-spki-list=…` for the HTTPS server at `https_url`: the base64
/// SHA-256 of its leaf certificate's SubjectPublicKeyInfo, read from a TLS handshake that
/// verifies the server against `ca_pem` (so only that server's own key is trusted).
pub async fn trust_spki_of(https_url: &str, ca_pem: &str) -> String {
    let url = url::Url::parse(https_url).expect("https url");
    let host = url.host_str().expect("host").to_string();
    let port = url.port_or_known_default().expect("port");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect((host.as_str(), port)).await.expect("connect");
    let name = ServerName::try_from(host.clone()).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the development XSUAA");
    let leaf = tls.get_ref().1.peer_certificates().expect("server certificate")[0].clone();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject_public_key_info(&leaf));
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    format!("--ignore-certificate-errors-spki-list={hash}")
}

/// The DER of `subjectPublicKeyInfo` in an X.509 certificate (RFC 5280 §4.1).
fn subject_public_key_info(cert: &[u8]) -> &[u8] {
    let certificate = der_content(cert);
    let tbs = der_element(certificate).1;
    let mut rest = der_content(tbs);
    if rest[0] == 0xa0 {
        rest = der_element(rest).0; // [0] version
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = der_element(rest).0;
    }
    let (after, _) = der_element(rest);
    assert_eq!(rest[0], 0x30, "subjectPublicKeyInfo is a SEQUENCE");
    &rest[..rest.len() - after.len()]
}

/// Splits off the first TLV: (what follows it, the whole TLV).
fn der_element(input: &[u8]) -> (&[u8], &[u8]) {
    let (header, length) = der_header(input);
    (&input[header + length..], &input[..header + length])
}

/// The content of one TLV.
fn der_content(element: &[u8]) -> &[u8] {
    let (header, length) = der_header(element);
    &element[header..header + length]
}

/// (header length, content length) of the TLV at the start of `input`.
fn der_header(input: &[u8]) -> (usize, usize) {
    let first = input[1] as usize;
    if first < 0x80 {
        return (2, first);
    }
    let count = first & 0x7f;
    let length = input[2..2 + count].iter().fold(0usize, |n, b| (n << 8) | *b as usize);
    (2 + count, length)
}
