//! Every `tests/fixtures/*.conf` must parse, validate and survive a write/parse round trip.

use std::fs;
use std::path::Path;

#[test]
fn fixtures_parse_validate_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("fixtures dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("conf") {
            continue;
        }
        seen += 1;
        let text = fs::read_to_string(&path).expect("readable fixture");
        let conf = scst_mgmt::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        scst_mgmt::validate(&conf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let written = scst_mgmt::write_config(&conf);
        let back = scst_mgmt::parse(&written).expect("written config parses");
        assert_eq!(back.without_lines(), conf.canonical().without_lines());
    }
    assert!(seen > 0, "no fixtures found in {}", dir.display());
}
