//! What goes wrong in the iSNS client, by step: a malformed `iSNSServer` value (refused
//! when it is set), a registration step of the background task (logged, then retried),
//! and one request the server did not grant.

use super::client::ClientError;
use super::wire;

/// Why an `iSNSServer` value was refused, by the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerSyntaxError {
    #[error("iSNSServer: '{0}' is not <host-or-ip>[:port]")]
    Address(String),
    #[error("iSNSServer: AccessControl takes Yes or No, not '{0}'")]
    AccessControl(String),
    /// Words other than `AccessControl [Yes|No]` after the address.
    #[error("iSNSServer: '{0}': expected <host-or-ip>[:port] [AccessControl [Yes|No]]")]
    Form(String),
}

/// A registration step that failed, with the server it was talking to; the task logs
/// it and retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum IsnsError {
    #[error("cannot reach server {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: ClientError,
    },
    /// Our address on the connection, announced for wildcard portals.
    #[error("{server}: local address: {source}")]
    LocalAddress {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// The server's address on the connection, the only peer the SCN port admits.
    #[error("{server}: peer address: {source}")]
    PeerAddress {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// DevAttrReg of the entity, its portals and nodes.
    #[error("{server}: DevAttrReg: {source}")]
    Register {
        server: String,
        #[source]
        source: CallError,
    },
    /// DevDereg of targets no longer enabled.
    #[error("{server}: DevDereg: {source}")]
    DeregisterTargets {
        server: String,
        #[source]
        source: CallError,
    },
    /// DevDereg of the whole entity, once no target is left to announce.
    #[error("{server}: DevDereg of entity {eid}: {source}")]
    DeregisterEntity {
        server: String,
        eid: String,
        #[source]
        source: CallError,
    },
}

/// One request to the server that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: connection, timeout or a malformed response.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server answered with an error status (RFC 4171 6.4.3).
    #[error("status {0} ({text})", text = wire::status_text(*.0))]
    Status(u32),
    /// A registration needs a source node, and no target is enabled.
    #[error("no nodes to register")]
    NoSource,
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// The log line names the server and the step; the cause stays reachable as the
    /// source, not only as text.
    #[test]
    fn steps_keep_their_cause() {
        let e = IsnsError::Register {
            server: "192.0.2.1:3205".into(),
            source: CallError::Status(wire::status::NO_SUCH_ENTRY),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "192.0.2.1:3205: DevAttrReg: status {} ({})",
                wire::status::NO_SUCH_ENTRY,
                wire::status_text(wire::status::NO_SUCH_ENTRY)
            )
        );
        let cause = e.source().and_then(|s| s.downcast_ref::<CallError>());
        assert!(matches!(
            cause,
            Some(CallError::Status(wire::status::NO_SUCH_ENTRY))
        ));

        let e = IsnsError::Connect {
            server: "h:1".into(),
            source: ClientError::Timeout,
        };
        assert_eq!(e.to_string(), "cannot reach server h:1: timed out");
        assert!(e
            .source()
            .is_some_and(|s| s.downcast_ref::<ClientError>().is_some()));

        let e = IsnsError::DeregisterEntity {
            server: "h:1".into(),
            eid: "host".into(),
            source: CallError::Client(ClientError::NoReply(7)),
        };
        assert_eq!(
            e.to_string(),
            "h:1: DevDereg of entity host: no reply to transaction 7"
        );
    }
}
