//! The connection to scstd, and the one place where the daemon's refusals become what
//! SCST's scstadmin says: a request on a path that does not exist is reported as the
//! missing object, in SCST's words ("No such device 'd1' exists."), never as the tree
//! path; a daemon that is not there is one message naming the socket and how to point
//! at another.

use std::fmt;
use std::io::ErrorKind;

use scst_mgmt::client::{ClientError, DEFAULT_SOCKET};
use scst_mgmt::Client;

/// How the daemon's messages for a path that names nothing read ("...: no such file or
/// directory", "...: no such writable attribute").
const NOT_FOUND: &str = ": no such ";

/// The environment variable naming the management socket when `-socket` is not given.
pub const SOCKET_ENV: &str = "SCSTADMIN_SOCKET";

/// The socket to use: `-socket`, then [`SOCKET_ENV`], then scstd's default.
pub fn socket_path(option: Option<&str>) -> String {
    option
        .map(str::to_string)
        .or_else(|| std::env::var(SOCKET_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
}

/// Nobody listens on the management socket: scstd is not running (or listens elsewhere).
#[derive(Debug)]
pub struct NotRunning {
    pub socket: String,
    pub reason: std::io::Error,
}

impl fmt::Display for NotRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scstd is not running: nothing answers on its management socket {} ({}).\n\
             Start scstd, or point scstadmin at the socket scstd was given \
             (--mgmt-socket) with -socket PATH or {SOCKET_ENV}=PATH.",
            self.socket, self.reason
        )
    }
}

impl std::error::Error for NotRunning {}

/// An object a command names does not exist, in SCST's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// What SCST's scstadmin calls the object at a tree path (`components`), for its
/// "No such ..." messages: e.g. `["devices", "d1"]` is "device 'd1'".
pub fn object_name(components: &[&str]) -> String {
    match components {
        ["handlers", h] => format!("handler '{h}'"),
        ["handlers", _, d] | ["devices", d] => format!("device '{d}'"),
        ["targets", drv] => format!("driver '{drv}'"),
        ["targets", drv, t] => format!("target '{t}' of driver '{drv}'"),
        ["targets", drv, t, "luns", n] => format!("LUN {n} of driver/target '{drv}/{t}'"),
        ["targets", drv, t, "ini_groups", g] => {
            format!("group '{g}' of driver/target '{drv}/{t}'")
        }
        ["targets", drv, t, "ini_groups", g, "luns", n] => {
            format!("LUN {n} of driver/target/group '{drv}/{t}/{g}'")
        }
        ["targets", drv, t, "ini_groups", g, "initiators", i] => {
            format!("initiator '{i}' of driver/target/group '{drv}/{t}/{g}'")
        }
        ["targets", drv, t, "sessions", s] => {
            format!("session '{s}' of driver/target '{drv}/{t}'")
        }
        ["device_groups", dg] => format!("device group '{dg}'"),
        ["device_groups", dg, "devices", d] => format!("device '{d}' in device group '{dg}'"),
        ["device_groups", dg, "target_groups", tg] => {
            format!("target group '{tg}' within device group '{dg}'")
        }
        ["device_groups", dg, "target_groups", tg, t] => {
            format!("target '{t}' within target group '{dg}/{tg}'")
        }
        [] => "SCST".to_string(),
        [.., last] => {
            let (parent, attr) = (&components[..components.len() - 1], last);
            format!("attribute '{attr}' of {}", object_name(parent))
        }
    }
}

/// The message for a missing object: SCST's "No such ... exists." form.
pub fn missing_message(components: &[&str]) -> String {
    format!("No such {} exists.", object_name(components))
}

/// A connection to scstd whose errors read as SCST's scstadmin's.
pub struct Admin {
    pub client: Client,
}

impl Admin {
    /// Connect, turning "nobody is there" into [`NotRunning`].
    pub fn connect(socket: &str) -> anyhow::Result<Admin> {
        match Client::connect(socket) {
            Ok(client) => Ok(Admin { client }),
            Err(ClientError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                Err(NotRunning {
                    socket: socket.to_string(),
                    reason: source,
                }
                .into())
            }
            Err(ClientError::Connect { source, .. }) => Err(anyhow::anyhow!(
                "cannot connect to scstd's management socket {socket}: {source}"
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub fn read(&mut self, path: &str) -> anyhow::Result<String> {
        let r = self.client.read(path);
        self.explain(path, r)
    }

    pub fn list(&mut self, path: &str) -> anyhow::Result<Vec<String>> {
        let r = self.client.list(path);
        self.explain(path, r)
    }

    pub fn write(&mut self, path: &str, value: &str) -> anyhow::Result<()> {
        let r = self.client.write(path, value);
        self.explain(path, r)
    }

    /// Whether `path` names something in the tree (a directory or a file).
    pub fn exists(&mut self, path: &str) -> anyhow::Result<bool> {
        Ok(self.first_missing(path)?.is_none())
    }

    /// The daemon refused a request on `path`: when part of the path does not exist,
    /// say which object is missing; otherwise the daemon's own message (it names the
    /// object and the reason).
    fn explain<T>(&mut self, path: &str, r: Result<T, ClientError>) -> anyhow::Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(ClientError::Remote(m)) => match self.first_missing(path) {
                // An attribute the daemon knows of but does not implement is better
                // told by the daemon ("'x' is not supported"); one it has never heard
                // of reads as missing.
                Ok(Some((_, true))) if !m.contains(NOT_FOUND) => Err(anyhow::anyhow!("{m}")),
                Ok(Some((missing, _))) => Err(Missing(missing).into()),
                _ => Err(anyhow::anyhow!("{m}")),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The first component of `path` that its parent does not list, as SCST's message,
    /// and whether it is an attribute (rather than an object).
    fn first_missing(&mut self, path: &str) -> anyhow::Result<Option<(String, bool)>> {
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for i in 0..parts.len() {
            let parent = parts[..i].join("/");
            let entries = self.client.list(&parent)?;
            let name = parts[i];
            let found = entries
                .iter()
                .any(|e| e == name || e.strip_suffix('/') == Some(name));
            if !found {
                let attribute = object_name(&parts[..=i]).starts_with("attribute ");
                return Ok(Some((missing_message(&parts[..=i]), attribute)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_objects_read_as_scst_says_them() {
        assert_eq!(
            missing_message(&["devices", "nosuch"]),
            "No such device 'nosuch' exists."
        );
        assert_eq!(
            missing_message(&["handlers", "vdisk_x"]),
            "No such handler 'vdisk_x' exists."
        );
        assert_eq!(
            missing_message(&["targets", "iscsi", "t", "ini_groups", "g"]),
            "No such group 'g' of driver/target 'iscsi/t' exists."
        );
        assert_eq!(
            missing_message(&["devices", "d1", "frob"]),
            "No such attribute 'frob' of device 'd1' exists."
        );
        assert_eq!(
            missing_message(&["device_groups", "dg", "target_groups", "tg"]),
            "No such target group 'tg' within device group 'dg' exists."
        );
        assert_eq!(
            missing_message(&["targets", "fc"]),
            "No such driver 'fc' exists."
        );
    }

    #[test]
    fn the_socket_comes_from_the_option_then_the_environment() {
        assert_eq!(socket_path(Some("/tmp/x.sock")), "/tmp/x.sock");
    }
}
