//! The management tree reaches target drivers and dev handlers only through the core's
//! registered traits: scst-mgmt must not depend on a driver or handler crate, nor on
//! tokio (the socket server lives in the daemon).

#[test]
fn depends_on_the_core_not_on_drivers_handlers_or_tokio() {
    let manifest = include_str!("../Cargo.toml");
    let deps: Vec<&str> = manifest
        .split("\n[")
        .filter(|section| section.starts_with("dependencies]"))
        .flat_map(|section| section.lines().skip(1))
        .filter_map(|line| line.split(['.', '=', ' ']).next())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(deps.contains(&"scst-core"), "{deps:?}");
    for forbidden in ["scst-iscsi", "scst-vdisk", "tokio", "scstd"] {
        assert!(
            !deps.contains(&forbidden),
            "scst-mgmt depends on {forbidden}"
        );
    }
}
