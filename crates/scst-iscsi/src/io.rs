//! PDU I/O over one TCP connection, for the engine's full-feature connection: reads go
//! straight into its receive buffer (its framer cuts as many PDUs as one read
//! delivered), and its transmit queue goes out in vectored writes without copying the
//! data segments.

use std::future::Future;
use std::io::IoSlice;
use std::os::fd::RawFd;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use iscsi_engine::full_feature::Transmit;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] iscsi_wire::WireError),
}

/// Set a socket's SO_RCVLOWAT: below that many bytes the kernel neither reports it
/// readable nor runs its wakeup callbacks (see `conn::run`, and `fill_now`
/// for reading it regardless).
pub(crate) fn set_rcvlowat(fd: RawFd, bytes: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a plain integer option, passed by pointer and size, on a socket fd.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Read more bytes from the socket into `buf`. Cancel safe: a cancelled read loses
/// nothing.
pub async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> Result<(), RecvError> {
    let n = r.read_buf(buf).await?;
    if n == 0 {
        return Err(RecvError::Closed);
    }
    Ok(())
}

/// Read what the socket holds right now into `buf`, bypassing the runtime's readiness,
/// which says nothing while SO_RCVLOWAT is raised (see `conn::run`). Ok(false): nothing
/// there.
pub fn fill_now(fd: RawFd, buf: &mut BytesMut) -> Result<bool, RecvError> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most spare.len() bytes into the buffer's spare
    // capacity, and set_len covers only the n bytes it reports written.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Err(RecvError::Closed),
        n if n > 0 => {
            // SAFETY: recv initialised these n bytes of spare capacity.
            unsafe { buf.set_len(buf.len() + n as usize) };
            Ok(true)
        }
        _ => {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e.into()),
            }
        }
    }
}

/// One vectored write. With a stall limit, a timer is armed only when the socket does
/// not take the bytes at once, so the common path costs nothing extra.
async fn write_some<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[IoSlice<'_>],
    stall: Option<Duration>,
) -> std::io::Result<usize> {
    let Some(limit) = stall else {
        return w.write_vectored(bufs).await;
    };
    let mut fut = std::pin::pin!(w.write_vectored(bufs));
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return r;
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer took nothing for {} s", limit.as_secs()),
        )),
    }
}

/// Write everything queued, with as few syscalls as the socket allows; a peer that
/// takes nothing for `stall` fails the flush (RspTimeout).
pub async fn flush<W: AsyncWrite + Unpin>(
    tx: &mut Transmit,
    w: &mut W,
    stall: Option<Duration>,
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::new();
    tx.slices(&mut slices);
    let mut bufs: &mut [IoSlice<'_>] = &mut slices;
    while !bufs.is_empty() {
        let n = write_some(w, bufs, stall).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    w.flush().await?;
    drop(slices);
    tx.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use iscsi_wire::{Bhs, Digests, Opcode};

    fn queue_with(len: usize) -> Transmit {
        let mut tx = Transmit::new(Digests::NONE);
        tx.push(Bhs::new(Opcode::NopIn), Some(Bytes::from(vec![7u8; len])));
        tx
    }

    #[tokio::test]
    async fn a_peer_that_takes_nothing_times_the_flush_out() {
        let (mut ours, _theirs) = tokio::io::duplex(1024);
        let mut tx = queue_with(64 << 10);
        let e = flush(&mut tx, &mut ours, Some(Duration::from_millis(50)))
            .await
            .expect_err("stalled");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_but_reading_peer_gets_everything() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut tx = queue_with(64 << 10);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.map(|_| got)
        });
        flush(&mut tx, &mut ours, Some(Duration::from_secs(30)))
            .await
            .expect("flush");
        drop(ours);
        let got = reader.await.expect("join").expect("read");
        assert_eq!(got.len(), 48 + (64 << 10));
        assert!(tx.is_empty() && tx.queued_bytes() == 0);
    }

    #[test]
    fn fill_now_reads_below_the_low_water_mark_and_sees_close() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut peer =
            std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (ours, _) = l.accept().expect("accept");
        let fd = ours.as_raw_fd();
        set_rcvlowat(fd, 16 * 1024).expect("SO_RCVLOWAT");
        let mut buf = BytesMut::with_capacity(64 << 10);
        assert!(!fill_now(fd, &mut buf).expect("empty socket"));
        peer.write_all(&[1u8; 48]).expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while buf.len() < 48 && std::time::Instant::now() < deadline {
            fill_now(fd, &mut buf).expect("read");
        }
        assert_eq!(&buf[..], &[1u8; 48][..]);
        drop(peer);
        let closed = loop {
            match fill_now(fd, &mut buf) {
                Err(RecvError::Closed) => break true,
                Ok(false) if std::time::Instant::now() < deadline => continue,
                _ => break false,
            }
        };
        assert!(closed, "a closed peer reads as Closed");
    }
}
