//! PDU I/O over one TCP connection: a reader that reads the socket into the engine's
//! framer (which cuts as many PDUs as one read delivered), and a writer that batches
//! outgoing PDUs into vectored writes without copying their data segments.

use std::future::Future;
use std::io::IoSlice;
use std::os::fd::RawFd;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use iscsi_wire::Bhs;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use iscsi_engine::full_feature::Framer;
pub use iscsi_engine::full_feature::Pdu;

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] iscsi_wire::WireError),
}

/// The socket side of the engine's [`Framer`]: reads go straight into its buffer.
pub struct PduReader {
    framer: Framer,
}

/// Set a socket's SO_RCVLOWAT: below that many bytes the kernel neither reports it
/// readable nor runs its wakeup callbacks (see `conn::run`, and `PduReader::fill_now`
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

impl PduReader {
    /// A reader that parses `received` (what the login engine read past its last PDU)
    /// before anything read from now on.
    pub fn new(max_data: u32, received: &[u8]) -> PduReader {
        PduReader {
            framer: Framer::new(max_data, received),
        }
    }

    pub fn set_digests(&mut self, digests: iscsi_wire::Digests) {
        self.framer.set_digests(digests);
    }

    /// A complete PDU from what is already buffered, if any. The framer's own result,
    /// passed through: converting it to [`RecvError`] here would move every PDU once
    /// more, and only the error needs the conversion.
    #[inline]
    pub fn next_buffered(&mut self) -> Result<Option<Pdu>, iscsi_wire::WireError> {
        self.framer.next_pdu()
    }

    /// Read more bytes from the socket. Cancel safe: a cancelled read loses nothing.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(), RecvError> {
        let n = r.read_buf(self.framer.recv_buf()).await?;
        if n == 0 {
            return Err(RecvError::Closed);
        }
        Ok(())
    }

    /// Read what the socket holds right now, bypassing the runtime's readiness, which
    /// says nothing while SO_RCVLOWAT is raised (see `conn::run`). Ok(false): nothing
    /// there.
    pub fn fill_now(&mut self, fd: RawFd) -> Result<bool, RecvError> {
        let buf = self.framer.recv_buf();
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
}

/// A data segment to send: owned bytes, possibly a sub-range of a larger buffer shared
/// by several Data-In PDUs.
struct Segment {
    buf: Bytes,
}

struct OutPdu {
    header: [u8; iscsi_wire::frame::MAX_ENCODED_HEADER],
    header_len: usize,
    data: Option<Segment>,
    /// Padding to a 4-byte boundary plus the data digest.
    trailer: [u8; 8],
    trailer_len: usize,
}

/// Outgoing PDUs queued until the next flush.
pub struct PduWriter {
    queue: Vec<OutPdu>,
    queued_bytes: usize,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Longest a flush may wait for the peer to take any bytes (RspTimeout).
    pub stall_timeout: Option<Duration>,
}

impl Default for PduWriter {
    fn default() -> Self {
        PduWriter {
            queue: Vec::with_capacity(64),
            queued_bytes: 0,
            header_digest: false,
            data_digest: false,
            stall_timeout: None,
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

impl PduWriter {
    /// Queue a PDU; its DataSegmentLength is set from `data`.
    pub fn push(&mut self, mut bhs: Bhs, data: Option<Bytes>) {
        let len = data.as_ref().map_or(0, |d| d.len());
        bhs.set_data_segment_len(len as u32);
        let (header, header_len) = iscsi_wire::encode_header(&bhs, self.header_digest);
        let (trailer, trailer_len) = match &data {
            Some(d) => iscsi_wire::data_trailer(d, self.data_digest),
            None => ([0u8; 8], 0),
        };
        self.queued_bytes += header_len + len + trailer_len;
        self.queue.push(OutPdu {
            header,
            header_len,
            data: data.filter(|d| !d.is_empty()).map(|buf| Segment { buf }),
            trailer,
            trailer_len,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Write everything queued, with as few syscalls as the socket allows.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        // Gather slices; skip what earlier partial writes already sent.
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.queue.len() * 3);
        for p in &self.queue {
            slices.push(IoSlice::new(&p.header[..p.header_len]));
            if let Some(d) = &p.data {
                slices.push(IoSlice::new(&d.buf));
            }
            if p.trailer_len > 0 {
                slices.push(IoSlice::new(&p.trailer[..p.trailer_len]));
            }
        }
        let mut bufs: &mut [IoSlice<'_>] = &mut slices;
        while !bufs.is_empty() {
            let n = write_some(w, bufs, self.stall_timeout).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        w.flush().await?;
        drop(slices);
        self.queue.clear();
        self.queued_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_wire::Opcode;

    fn writer_with(len: usize, stall: Option<Duration>) -> PduWriter {
        let mut w = PduWriter {
            stall_timeout: stall,
            ..PduWriter::default()
        };
        w.push(Bhs::new(Opcode::NopIn), Some(Bytes::from(vec![7u8; len])));
        w
    }

    #[tokio::test]
    async fn a_peer_that_takes_nothing_times_the_flush_out() {
        let (mut ours, _theirs) = tokio::io::duplex(1024);
        let mut w = writer_with(64 << 10, Some(Duration::from_millis(50)));
        let e = w.flush(&mut ours).await.expect_err("stalled");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_but_reading_peer_gets_everything() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut w = writer_with(64 << 10, Some(Duration::from_secs(30)));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.map(|_| got)
        });
        w.flush(&mut ours).await.expect("flush");
        drop(ours);
        let got = reader.await.expect("join").expect("read");
        assert_eq!(got.len(), 48 + (64 << 10));
        assert!(w.is_empty() && w.queued_bytes() == 0);
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
        let mut r = PduReader::new(8192, &[]);
        assert!(!r.fill_now(fd).expect("empty socket"));
        peer.write_all(&[1u8; 48]).expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while r.framer.buffered() < 48 && std::time::Instant::now() < deadline {
            r.fill_now(fd).expect("read");
        }
        assert_eq!(&r.framer.recv_buf()[..], &[1u8; 48][..]);
        drop(peer);
        let closed = loop {
            match r.fill_now(fd) {
                Err(RecvError::Closed) => break true,
                Ok(false) if std::time::Instant::now() < deadline => continue,
                _ => break false,
            }
        };
        assert!(closed, "a closed peer reads as Closed");
    }
}
