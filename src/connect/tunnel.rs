//! The `CONNECT` tunnel through an HTTP proxy: the request, and the proxy's answer read and
//! checked before the origin's bytes flow.

use std::io;

use http::uri::Authority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Error;

/// The largest answer head a proxy may send to `CONNECT`.
const MAX_TUNNEL_HEAD: usize = 8 * 1024;
const MAX_TUNNEL_HEADERS: usize = 64;

/// Asks the proxy on `stream` for a tunnel to `authority`'s host at `port` and reads its answer.
pub(super) async fn tunnel(
    stream: &mut TcpStream,
    proxy: &Authority,
    authority: &Authority,
    port: u16,
) -> Result<(), Error> {
    let broken = |source| Error::TunnelIo {
        proxy: proxy.to_string(),
        source,
    };
    let invalid = |reason| Error::TunnelInvalid {
        proxy: proxy.to_string(),
        reason,
    };
    let target = format!("{}:{port}", authority.host());
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(broken)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_TUNNEL_HEAD {
            return Err(invalid("answer head too large"));
        }
        let read = (&mut *stream)
            .take((MAX_TUNNEL_HEAD - buf.len()) as u64)
            .read_buf(&mut buf)
            .await
            .map_err(broken)?;
        if read == 0 {
            return Err(broken(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_TUNNEL_HEADERS];
        let mut answer = httparse::Response::new(&mut headers);
        match answer.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(end)) => {
                let status = answer.code.unwrap_or(0);
                if !(200..300).contains(&status) {
                    return Err(Error::TunnelRefused {
                        proxy: proxy.to_string(),
                        status,
                    });
                }
                // The origin speaks only after the router did, so nothing may follow yet.
                if end != buf.len() {
                    return Err(invalid("bytes after the answer"));
                }
                return Ok(());
            }
            Err(_) => return Err(invalid("not an HTTP/1.1 answer")),
        }
    }
}
