//! State change notifications (RFC 4171 5.6.5.5 SCNReg, 5.6.5.8 SCN): the targets
//! register for discovery-domain and object changes, the server connects to our SCN
//! port to tell of them, and each one invalidates the access answers remembered for
//! that target, so the next discovery or login asks the server again.
//!
//! Only the server's address may connect; every message is bounded in size and time,
//! and a malformed one closes that connection only.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::wire::{self, flags, func, tag, Attr, Header, Reassembler, WireError, HEADER_LEN};
use crate::IscsiDriver;

/// iSCSI Node SCN Bitmap bits (RFC 4171 6.4.4), least significant first.
pub mod event {
    pub const DD_MEMBER_ADDED: u32 = 1 << 0;
    pub const DD_MEMBER_REMOVED: u32 = 1 << 1;
    pub const OBJECT_UPDATED: u32 = 1 << 2;
    pub const OBJECT_ADDED: u32 = 1 << 3;
    pub const OBJECT_REMOVED: u32 = 1 << 4;
}

/// What the targets ask to hear of: changes that can alter which initiators see them.
pub const TARGET_EVENTS: u32 = event::DD_MEMBER_ADDED
    | event::DD_MEMBER_REMOVED
    | event::OBJECT_UPDATED
    | event::OBJECT_ADDED
    | event::OBJECT_REMOVED;

/// A server connection that says nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(60);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 8;

/// The listening SCN port; dropping it stops the listener.
pub(crate) struct ScnListener {
    pub local: IpAddr,
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScnListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listen on `local` (our address toward the server), accepting only `server`.
pub(crate) async fn listen(
    driver: &Arc<IscsiDriver>,
    local: IpAddr,
    server: IpAddr,
) -> std::io::Result<ScnListener> {
    let listener = TcpListener::bind(SocketAddr::new(local, 0)).await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(accept_loop(listener, Arc::downgrade(driver), server));
    Ok(ScnListener { local, port, task })
}

async fn accept_loop(listener: TcpListener, driver: Weak<IscsiDriver>, server: IpAddr) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if wire::canonical_ip(peer.ip()) != server {
            log::warn!("iSNS: SCN connection from {peer} refused: not the iSNS server");
            continue;
        }
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (open, driver) = (open.clone(), driver.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &driver).await {
                log::debug!("iSNS: SCN connection from {peer}: {e}");
            }
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Why an SCN connection was closed before the server closed it.
#[derive(Debug, thiserror::Error)]
pub enum ScnError {
    #[error("{0}")]
    Read(#[source] std::io::Error),
    #[error("timed out in a message")]
    Timeout,
    /// A malformed header, message or attribute list.
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("SCN without a destination")]
    NoDestination,
    #[error("{0}")]
    Reply(#[source] std::io::Error),
}

/// Read messages until the server closes, goes quiet, or sends something malformed.
async fn serve(mut stream: TcpStream, driver: &Weak<IscsiDriver>) -> Result<(), ScnError> {
    let mut re = Reassembler::default();
    loop {
        let mut hb = [0u8; HEADER_LEN];
        match tokio::time::timeout(IDLE, stream.read_exact(&mut hb)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(ScnError::Read(e)),
            Ok(Ok(_)) => {}
        }
        let h = Header::decode(&hb)?;
        let mut body = vec![0u8; h.length as usize];
        tokio::time::timeout(IDLE, stream.read_exact(&mut body))
            .await
            .map_err(|_| ScnError::Timeout)?
            .map_err(ScnError::Read)?;
        let Some(payload) = re.push(&h, &body)? else {
            continue;
        };
        if h.function != func::SCN {
            // Nothing else is expected on this port; answer so the server does not wait.
            let reply = wire::encode_message(
                h.function | func::RESPONSE,
                flags::CLIENT,
                h.xid,
                &MESSAGE_NOT_SUPPORTED.to_be_bytes(),
            );
            stream.write_all(&reply).await.map_err(ScnError::Reply)?;
            continue;
        }
        let attrs = wire::decode_attrs(&payload)?;
        let note = Notification::parse(&attrs).ok_or(ScnError::NoDestination)?;
        if let Some(d) = driver.upgrade() {
            note.apply(&d);
        }
        // SCNRsp: status, then the destination attribute (RFC 4171 5.7.5.8).
        let mut reply = 0u32.to_be_bytes().to_vec();
        reply.extend_from_slice(&wire::encode_attrs(&[Attr::string(
            tag::ISCSI_NAME,
            &note.destination,
        )]));
        let msg = wire::encode_message(func::SCN | func::RESPONSE, flags::CLIENT, h.xid, &reply);
        stream.write_all(&msg).await.map_err(ScnError::Reply)?;
    }
}

/// Status 15 (RFC 4171 6.4.3).
const MESSAGE_NOT_SUPPORTED: u32 = 15;

/// One SCN: who it is for, what happened, to which objects.
#[derive(Debug, PartialEq, Eq)]
pub struct Notification {
    pub destination: String,
    pub events: u32,
    pub objects: Vec<String>,
}

impl Notification {
    /// The destination's iSCSI name comes first, then the timestamp and the source
    /// attributes (changed objects, each with its SCN bitmap).
    pub fn parse(attrs: &[Attr]) -> Option<Notification> {
        let first = attrs.first()?;
        if first.tag != tag::ISCSI_NAME {
            return None;
        }
        let destination = first.as_str()?.to_string();
        let mut events = 0;
        let mut objects = Vec::new();
        for a in &attrs[1..] {
            match a.tag {
                tag::ISCSI_SCN_BITMAP => events |= a.as_u32().unwrap_or(0),
                tag::ISCSI_NAME => objects.extend(a.as_str().map(str::to_string)),
                tag::DD_ID => objects.extend(a.as_u32().map(|id| format!("DD {id}"))),
                _ => {}
            }
        }
        Some(Notification {
            destination,
            events,
            objects,
        })
    }

    fn apply(&self, driver: &IscsiDriver) {
        log::info!(
            "iSNS: state change notification for {}: {} ({})",
            self.destination,
            events_text(self.events),
            self.objects.join(", ")
        );
        let dest = self.destination.to_ascii_lowercase();
        driver.isns.acl.lock().retain(|(t, _), _| *t != dest);
    }
}

fn events_text(bits: u32) -> String {
    let names = [
        (event::DD_MEMBER_ADDED, "DD member added"),
        (event::DD_MEMBER_REMOVED, "DD member removed"),
        (event::OBJECT_UPDATED, "object updated"),
        (event::OBJECT_ADDED, "object added"),
        (event::OBJECT_REMOVED, "object removed"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        format!("events {bits:#x}")
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_fields() {
        let attrs = [
            Attr::string(tag::ISCSI_NAME, "iqn.t"),
            Attr::u32(tag::TIMESTAMP, 0),
            Attr::u32(tag::DD_ID, 3),
            Attr::string(tag::ISCSI_NAME, "iqn.i"),
            Attr::u32(tag::ISCSI_SCN_BITMAP, event::DD_MEMBER_ADDED),
        ];
        let n = Notification::parse(&attrs).unwrap();
        assert_eq!(n.destination, "iqn.t");
        assert_eq!(n.events, event::DD_MEMBER_ADDED);
        assert_eq!(n.objects, ["DD 3", "iqn.i"]);
        assert_eq!(events_text(n.events), "DD member added");
        assert!(Notification::parse(&attrs[1..]).is_none());
        assert!(Notification::parse(&[]).is_none());
    }
}
