//! The management socket (protocol: `scst_mgmt::protocol`, docs/management.md) over
//! the management tree (`scst_mgmt::tree`).
//!
//! One tokio task per client. Reads and lists run concurrently; writes are serialized
//! by one async mutex so that each write is atomic with respect to the others (the
//! core's own locks keep the data path consistent). Tree operations are blocking (they
//! take core locks, a fileio `add_device` opens a file), so they run on the blocking
//! pool, never on the reactor. A panic inside one is caught by the join and reported
//! to that client as an error; the daemon keeps serving.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use scst_mgmt::protocol::{
    dispatch, ErrorKind, MgmtTree, ProtoError, Request, RequestParser, Response, TreeError,
    MAX_LINE,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Bind the management socket at `path` with mode 0600.
///
/// A socket file left by a daemon that died is removed; a live one (something accepts
/// connections on it) or a path that is not a socket is an error, so that we never
/// steal another daemon's socket or delete a user's file. Must be called before other
/// threads create files: it narrows the process umask around bind(2) so the socket is
/// never reachable by others, not even between bind and chmod.
pub fn bind_socket(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "management socket {}: another daemon is listening on it",
                    path.display()
                );
            }
            std::fs::remove_file(path).with_context(|| {
                format!(
                    "management socket {}: cannot remove stale socket",
                    path.display()
                )
            })?;
        }
        Ok(_) => bail!(
            "management socket {}: the path exists and is not a socket",
            path.display()
        ),
        Err(_) => {}
    }
    // SAFETY: umask(2) has no memory-safety preconditions.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener =
        bound.with_context(|| format!("cannot bind management socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("management socket {}: cannot set mode 0600", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Removes the socket file when the server goes away.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accept clients forever, one task each. `write_lock` serializes their writes, and
/// with whatever else changes the tree (a SIGHUP reload).
pub async fn serve(
    listener: UnixListener,
    tree: Arc<dyn MgmtTree>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(why) = check_peer(&stream) {
                    log::warn!("management socket: {why}");
                    tokio::spawn(refuse(stream, why.to_string()));
                    continue;
                }
                let tree = tree.clone();
                let write_lock = write_lock.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, tree, write_lock).await {
                        log::debug!("management client: {e}");
                    }
                });
            }
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("management socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why a client may not manage the daemon; the message it is sent.
#[derive(Debug)]
enum Refusal {
    NoCredentials(std::io::Error),
    NotAllowed { uid: u32, me: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoCredentials(e) => {
                write!(f, "cannot read the client's credentials (SO_PEERCRED): {e}")
            }
            Refusal::NotAllowed { uid, me } => write!(
                f,
                "permission denied: uid {uid} may not manage scstd (only root and uid {me})"
            ),
        }
    }
}

/// Only root and the daemon's own user may manage it. The socket's mode already keeps
/// others out; this holds even when the mode or a directory's permissions are loosened
/// (or the socket is passed on), and gives the refused client a clear answer.
fn check_peer(stream: &UnixStream) -> Result<(), Refusal> {
    let cred = stream.peer_cred().map_err(Refusal::NoCredentials)?;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let uid = cred.uid();
    if uid == 0 || uid == me {
        Ok(())
    } else {
        Err(Refusal::NotAllowed { uid, me })
    }
}

/// Answer a refused client with one error line and close. What it sends is read and
/// dropped (bounded in time) so that its first request does not fail with EPIPE
/// before it gets to read the reason.
async fn refuse(mut stream: UnixStream, why: String) {
    let _ = stream
        .write_all(Response::Error(why).encode().as_bytes())
        .await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

async fn client(
    stream: UnixStream,
    tree: Arc<dyn MgmtTree>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut parser = RequestParser::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a client sending an endless line gets an error, not our memory.
        let n = (&mut r)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let (resp, close) = match parser.push_line(&line) {
            Ok(None) => continue,
            Ok(Some(req)) => (execute(&tree, req, &write_lock).await, false),
            Err(ProtoError { message, fatal }) => (Response::Error(message), fatal),
        };
        w.write_all(resp.encode().as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

async fn execute(
    tree: &Arc<dyn MgmtTree>,
    req: Request,
    write_lock: &tokio::sync::Mutex<()>,
) -> Response {
    let _guard = match req {
        Request::Write { .. } => Some(write_lock.lock().await),
        _ => None,
    };
    let what = match &req {
        Request::Read(p) | Request::List(p) | Request::Write { path: p, .. } => p.to_string(),
    };
    let tree = tree.clone();
    match tokio::task::spawn_blocking(move || dispatch(tree.as_ref(), &req)).await {
        Ok(r) => r,
        Err(e) => {
            log::error!("management request on {what} failed: {e}");
            TreeError::new(ErrorKind::Internal, format!("{what}: internal error")).into()
        }
    }
}
