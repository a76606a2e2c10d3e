//! An HTTP proxy on `127.0.0.1:0` that opens `CONNECT` tunnels (or refuses them) and reports each
//! request line it was sent.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// The next request line the proxy was sent (`CONNECT host:port HTTP/1.1`).
    pub async fn next_request(&mut self) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.requests.recv())
            .await
            .expect("proxy request in time")
            .expect("proxy running")
    }
}

/// A proxy that answers `CONNECT` with 200 and relays bytes to the target.
pub async fn connect_proxy() -> Proxy {
    start(None).await
}

/// A proxy that answers every request with `status` and closes.
pub async fn refusing_proxy(status: u16) -> Proxy {
    start(Some(status)).await
}

async fn start(refuse: Option<u16>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (requests_tx, requests) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let requests_tx = requests_tx.clone();
            tokio::spawn(async move {
                let _ = serve(stream, refuse, requests_tx).await;
            });
        }
    });
    Proxy { addr, requests, task }
}

async fn serve(
    mut client: TcpStream,
    refuse: Option<u16>,
    requests: mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    // Byte by byte: nothing past the head may be taken from the client.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = client.read_u8().await?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    let _ = requests.send(line.clone());
    if let Some(status) = refuse {
        let answer = format!("HTTP/1.1 {status} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return client.write_all(answer.as_bytes()).await;
    }
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        return client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
    };
    let mut upstream = match TcpStream::connect(target).await {
        Ok(upstream) => upstream,
        Err(_) => return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await,
    };
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
