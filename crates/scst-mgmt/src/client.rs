//! A blocking client for scstd's management socket (protocol in [`crate::protocol`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::protocol::{MgmtPath, ProtoError, Request, Response, ResponseParser, MAX_LINE};

/// Where scstd listens unless told otherwise (`scstd --mgmt-socket`, `scstadmin -socket`).
pub const DEFAULT_SOCKET: &str = "/run/scstd.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("management socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("management socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("management socket: protocol error: {0}")]
    Protocol(#[from] ProtoError),
    #[error("{0}")]
    BadPath(String),
    /// The daemon refused the request; the message names the object and the reason.
    #[error("{0}")]
    Remote(String),
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Send one request and wait for its response.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.writer.write_all(req.encode().as_bytes())?;
        let mut parser = ResponseParser::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64 + 2)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "scstd closed the connection",
                )));
            }
            if let Some(r) = parser.push_line(&line)? {
                return Ok(r);
            }
        }
    }

    fn ok(&mut self, req: Request) -> Result<String, ClientError> {
        match self.request(&req)? {
            Response::Ok(s) => Ok(s),
            Response::Error(m) => Err(ClientError::Remote(m)),
        }
    }

    fn path(p: &str) -> Result<MgmtPath, ClientError> {
        MgmtPath::parse(p).map_err(|e| ClientError::BadPath(e.to_string()))
    }

    /// An attribute's value, including a last `[key]` line for key attributes
    /// (see [`crate::protocol::strip_key`]), or a mgmt file's usage text.
    pub fn read(&mut self, path: &str) -> Result<String, ClientError> {
        self.ok(Request::Read(Self::path(path)?))
    }

    /// A directory's entries; subdirectories end with `/`.
    pub fn list(&mut self, path: &str) -> Result<Vec<String>, ClientError> {
        let s = self.ok(Request::List(Self::path(path)?))?;
        Ok(s.lines().map(str::to_string).collect())
    }

    pub fn write(&mut self, path: &str, value: &str) -> Result<(), ClientError> {
        self.ok(Request::Write {
            path: Self::path(path)?,
            value: value.to_string(),
        })
        .map(drop)
    }
}
