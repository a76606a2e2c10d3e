//! The relay of an open websocket: `tokio::io::copy_bidirectional` between the client and the
//! destination, payloads never parsed. Only frame *headers* are followed in each direction, so that
//! when the user's session ends the relay can stop at a frame boundary and send a close frame
//! (1008 "Session ended!", as the reference does) instead of cutting a frame in half.
//!
//! Session end is found by checking the session store every `WS_SESSION_CHECK_INTERVAL` (default
//! 5 s): a websocket of a session that logs out, times out or is removed is closed within one
//! interval. Client traffic since the last check counts as use of the session (as client pings do
//! in the reference); an idle socket only looks, so it never keeps its session alive by itself.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::session::{SessionId, SessionStore};

/// Close code 1008 (policy violation) and the reference's reason.
const SESSION_ENDED: (u16, &str) = (1008, "Session ended!");
/// How long closing may take: writing the close frames and waiting for the client to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The session an open websocket belongs to, checked periodically.
pub struct SessionWatch {
    store: Arc<dyn SessionStore>,
    id: SessionId,
    interval: Duration,
}

impl SessionWatch {
    /// Watches session `id` in `store` every `interval`.
    pub fn new(store: Arc<dyn SessionStore>, id: SessionId, interval: Duration) -> SessionWatch {
        SessionWatch { store, id, interval }
    }

    /// Completes when the session is gone (or the store cannot say: fail closed).
    async fn ended(&self, client_bytes: &AtomicU64) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut seen = client_bytes.load(Ordering::Relaxed);
        loop {
            ticker.tick().await;
            let now = client_bytes.load(Ordering::Relaxed);
            let active = now != seen;
            seen = now;
            let found = if active {
                self.store.load(&self.id).await
            } else {
                self.store.peek(&self.id).await
            };
            match found {
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "session store unavailable; closing the websocket");
                    return;
                }
            }
        }
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum Outcome {
    /// One side closed; bytes copied client→destination and back.
    Closed { to_backend: u64, to_client: u64 },
    /// Copying failed (a reset connection, for example).
    Failed(io::Error),
    /// The session ended and the relay closed both sides.
    SessionEnded,
}

impl Outcome {
    /// Logs how the websocket to `destination` ended.
    pub fn log(&self, destination: &str) {
        match self {
            Outcome::Closed { to_backend, to_client } => {
                tracing::debug!(%destination, to_backend, to_client, "websocket closed")
            }
            Outcome::Failed(error) => tracing::debug!(%destination, %error, "websocket failed"),
            Outcome::SessionEnded => tracing::info!(%destination, "websocket closed: the session ended"),
        }
    }
}

/// Copies between `client` and `backend` until one side closes or `session` ends.
pub async fn relay<C, B>(client: C, backend: B, session: Option<SessionWatch>) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let client_bytes = Arc::new(AtomicU64::new(0));
    let mut client = Tracked::new(client, Some(client_bytes.clone()));
    let mut backend = Tracked::new(backend, None);
    let copied = match &session {
        None => Some(tokio::io::copy_bidirectional(&mut client, &mut backend).await),
        Some(watch) => tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => Some(copied),
            () = watch.ended(&client_bytes) => None,
        },
    };
    match copied {
        Some(Ok((to_backend, to_client))) => Outcome::Closed { to_backend, to_client },
        Some(Err(error)) => Outcome::Failed(error),
        None => {
            let _ = tokio::time::timeout(CLOSE_GRACE, close(&mut client, &mut backend)).await;
            Outcome::SessionEnded
        }
    }
}

/// Sends close frames where a frame boundary allows it, then closes both connections; waits for
/// the client to close its side so that its own close frame does not meet a reset.
async fn close<C, B>(client: &mut Tracked<C>, backend: &mut Tracked<B>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    // The client first: a destination that does not read must not keep the user from hearing.
    if client.frames.at_boundary() {
        let _ = client.inner.write_all(&close_frame(None)).await;
    }
    let _ = client.inner.shutdown().await;
    if backend.frames.at_boundary() {
        let _ = backend
            .inner
            .write_all(&close_frame(Some(crate::util::random_bytes::<4>())))
            .await;
    }
    let _ = backend.inner.shutdown().await;
    let mut sink = [0u8; 1024];
    while let Ok(read) = client.inner.read(&mut sink).await {
        if read == 0 {
            break;
        }
    }
}

/// A close frame with [`SESSION_ENDED`]; masked (as a client must) when `mask` is given.
fn close_frame(mask: Option<[u8; 4]>) -> Vec<u8> {
    let (code, reason) = SESSION_ENDED;
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    let mut frame = vec![0x88];
    match mask {
        Some(key) => {
            frame.push(0x80 | payload.len() as u8);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => {
            frame.push(payload.len() as u8);
            frame.extend_from_slice(&payload);
        }
    }
    frame
}

/// Follows frame headers in a byte stream: where the next frame starts, nothing more.
#[derive(Debug, Default)]
struct FrameTracker {
    header: [u8; 14],
    have: usize,
    need: usize,
    payload_left: u64,
}

impl FrameTracker {
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 2 {
                let extended = match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + extended + mask;
            }
            if self.have >= 2 && self.have == self.need {
                self.payload_left = match self.header[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                    127 => {
                        let mut length = [0u8; 8];
                        length.copy_from_slice(&self.header[2..10]);
                        u64::from_be_bytes(length)
                    }
                    short => u64::from(short),
                };
                self.have = 0;
                self.need = 0;
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }
}

/// One side of the relay: what was written to it is followed frame by frame, and what was read
/// from it is counted (for the client: use of the session).
struct Tracked<T> {
    inner: T,
    frames: FrameTracker,
    read_bytes: Option<Arc<AtomicU64>>,
}

impl<T> Tracked<T> {
    fn new(inner: T, read_bytes: Option<Arc<AtomicU64>>) -> Tracked<T> {
        Tracked {
            inner,
            frames: FrameTracker::default(),
            read_bytes,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(counter)) = (&polled, &self.read_bytes) {
            counter.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            self.frames.observe(&buf[..written]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(masked: bool, payload_len: usize) -> Vec<u8> {
        let mut frame = vec![0x82];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload_len {
            0..=125 => frame.push(mask_bit | payload_len as u8),
            126..=65535 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&[1, 2, 3, 4]);
        }
        frame.extend(std::iter::repeat_n(0xAA, payload_len));
        frame
    }

    #[test]
    fn frame_boundaries_are_found_in_any_chunking() {
        let mut stream = Vec::new();
        let mut boundaries = vec![0];
        for (masked, len) in [
            (false, 0),
            (true, 5),
            (false, 125),
            (true, 126),
            (false, 70_000),
            (true, 1),
        ] {
            stream.extend(frame(masked, len));
            boundaries.push(stream.len());
        }
        for chunk in [1, 2, 3, 7, 64, 4096, stream.len()] {
            let mut tracker = FrameTracker::default();
            let mut offset = 0;
            for piece in stream.chunks(chunk) {
                tracker.observe(piece);
                offset += piece.len();
                assert_eq!(
                    tracker.at_boundary(),
                    boundaries.contains(&offset),
                    "chunk {chunk} at {offset}"
                );
            }
        }
    }

    #[test]
    fn close_frames_carry_1008_and_the_reason() {
        let plain = close_frame(None);
        assert_eq!(&plain[..4], &[0x88, 16, 0x03, 0xF0]);
        assert_eq!(&plain[4..], b"Session ended!");
        let key = [9, 8, 7, 6];
        let masked = close_frame(Some(key));
        assert_eq!(&masked[..2], &[0x88, 0x80 | 16]);
        let unmasked: Vec<u8> = masked[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        assert_eq!(unmasked, plain[2..]);
        let mut tracker = FrameTracker::default();
        tracker.observe(&masked);
        assert!(tracker.at_boundary());
    }
}
