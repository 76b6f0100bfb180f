//! One TCP connection to an iSNS server and request/response exchanges over it
//! (RFC 4171 5: a client may use a connection for several transactions).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, flags, func, Header, Reassembler, Response, HEADER_LEN};

/// Every connect and every exchange is bounded, so an unresponsive server only delays
/// the iSNS task (or one login), never the daemon.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Unrelated PDUs (e.g. server-initiated SCN or ESI) tolerated while awaiting a reply.
const MAX_SKIPPED: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    #[error("no reply to transaction {0}")]
    NoReply(u16),
    #[error("cannot resolve '{0}'")]
    Resolve(String),
}

pub struct Connection {
    stream: TcpStream,
    next_xid: u16,
}

impl Connection {
    /// Connect to `host:port`; the host may be a name.
    pub async fn connect(host: &str, port: u16) -> Result<Connection, ClientError> {
        let fut = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| ClientError::Resolve(host.to_string()))?
                .collect();
            let mut last = ClientError::Resolve(host.to_string());
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = e.into(),
                }
            }
            Err(last)
        };
        let stream = tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(Connection {
            stream,
            next_xid: 1,
        })
    }

    /// Our address on this connection: a local address the server can route to.
    pub fn local_ip(&self) -> io::Result<IpAddr> {
        self.stream.local_addr().map(|a| wire::canonical_ip(a.ip()))
    }

    /// The server's address on this connection.
    pub fn peer_ip(&self) -> io::Result<IpAddr> {
        self.stream.peer_addr().map(|a| wire::canonical_ip(a.ip()))
    }

    /// Send one request and wait for its response.
    pub async fn call(
        &mut self,
        function: u16,
        extra_flags: u16,
        payload: &[u8],
    ) -> Result<Response, ClientError> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        let msg = wire::encode_message(function, flags::CLIENT | extra_flags, xid, payload);
        tokio::time::timeout(CALL_TIMEOUT, async {
            self.stream.write_all(&msg).await?;
            self.read_response(function | func::RESPONSE, xid).await
        })
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    async fn read_response(&mut self, function: u16, xid: u16) -> Result<Response, ClientError> {
        let mut re = Reassembler::default();
        let mut skipped = 0;
        loop {
            let mut hb = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut hb).await?;
            let h = Header::decode(&hb)?;
            let mut body = vec![0u8; h.length as usize];
            self.stream.read_exact(&mut body).await?;
            if h.function != function || h.xid != xid {
                skipped += 1;
                if skipped > MAX_SKIPPED {
                    return Err(ClientError::NoReply(xid));
                }
                continue;
            }
            if let Some(payload) = re.push(&h, &body)? {
                return Ok(Response::decode(&payload)?);
            }
        }
    }
}
