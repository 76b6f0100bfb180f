//! SendTargets (RFC 7143 appendix D, docs/scst-reference.md 6.4): which targets an initiator is
//! shown, and at which portal. The exchange itself is the engine's (crate
//! iscsi-engine, and conn.rs in a normal session's full-feature phase).

use std::net::SocketAddr;

use crate::IscsiDriver;

/// The key list answering `SendTargets=<what>` for `initiator`, arriving on `portal`.
/// Only enabled targets that would give the initiator LUNs are listed.
pub fn send_targets(
    driver: &IscsiDriver,
    what: &str,
    initiator: &str,
    portal: SocketAddr,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !driver.enabled() {
        return out;
    }
    let addr = match portal {
        SocketAddr::V4(a) => format!("{}:{},1", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{},1", a.ip(), a.port()),
    };
    for t in driver.scst().targets("iscsi") {
        if !t.enabled()
            || !crate::params::portal_allowed(&t, portal.ip())
            || !t.initiator_has_luns(&crate::params::acl_name(&t, initiator, portal.ip()))
            || !crate::isns::visible(driver, &t.name, initiator)
        {
            continue;
        }
        if what != "All" && what != t.name && !what.is_empty() {
            continue;
        }
        out.push(("TargetName".to_string(), t.name.clone()));
        out.push(("TargetAddress".to_string(), addr.clone()));
    }
    out
}
