//! `INCOMING_CONNECTION_TIMEOUT`: a client connection on which no byte has moved in either
//! direction for that long is closed, as the reference's `server.timeout` destroys an inactive
//! socket. It stops clients that stall a request body or stop reading, and (as in the reference)
//! a request whose destination stays silent that long: hyper keeps reading the client connection
//! while it waits, so that wait counts as inactivity.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// A stream that fails with [`io::ErrorKind::TimedOut`] once it has been idle for `timeout`
    /// while the connection waits on it.
    ///
    /// Progress only sets a flag: the clock is read when the timer fires, every quarter of the
    /// timeout, and not for every read and write. An idle connection closes between `timeout` and
    /// 1.25 × `timeout` after its last byte moved, never earlier.
    pub struct IdleTimeout<T> {
        #[pin]
        inner: T,
        timeout: Duration,
        // Bytes moved since the timer last fired.
        moved: bool,
        // When the connection was last seen active (at most a quarter of the timeout late).
        last_seen: Instant,
        deadline: Pin<Box<Sleep>>,
    }
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> IdleTimeout<T> {
        let now = Instant::now();
        IdleTimeout {
            inner,
            timeout,
            moved: false,
            last_seen: now,
            deadline: Box::pin(tokio::time::sleep_until(now + step(timeout))),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// How often the timer looks.
fn step(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(1))
}

impl<T> IdleTimeout<T> {
    fn after<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
        moved: bool,
    ) -> Poll<io::Result<R>> {
        let this = self.project();
        match polled {
            Poll::Ready(result) => {
                *this.moved |= moved;
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                if std::mem::take(this.moved) {
                    *this.last_seen = now;
                }
                let idle_until = *this.last_seen + *this.timeout;
                if now >= idle_until {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection inactive for INCOMING_CONNECTION_TIMEOUT",
                    )));
                }
                this.deadline.as_mut().reset(idle_until.min(now + step(*this.timeout)));
            },
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleTimeout<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut this = self;
        let before = buf.filled().len();
        let polled = this.as_mut().project().inner.poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.after(cx, polled, moved)
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleTimeout<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut this = self;
        let polled = this.as_mut().project().inner.poll_write(cx, buf);
        let moved = matches!(polled, Poll::Ready(Ok(written)) if written > 0);
        this.after(cx, polled, moved)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut this = self;
        let polled = this.as_mut().project().inner.poll_write_vectored(cx, bufs);
        let moved = matches!(polled, Poll::Ready(Ok(written)) if written > 0);
        this.after(cx, polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self;
        let polled = this.as_mut().project().inner.poll_flush(cx);
        this.after(cx, polled, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
