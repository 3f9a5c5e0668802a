//! `sdf::net::parse_mac_list` (the `system.macs` file and `--macs` option) and `parse_mac`.
//!
//! Checks: no panic on any text; an accepted list has distinct, non-empty client names and
//! survives a round trip through `format_mac` and a newline-separated list unchanged; an accepted
//! MAC formats back to text that parses to the same address.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sdf::net::{format_mac, parse_mac, parse_mac_list};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mac) = parse_mac(&text) {
        assert_eq!(parse_mac(&format_mac(&mac)).ok(), Some(mac));
        assert_eq!(format_mac(&mac).to_lowercase(), text.to_lowercase());
    }
    let Ok(list) = parse_mac_list(&text) else {
        return;
    };
    for (k, (name, _)) in list.iter().enumerate() {
        assert!(!name.is_empty());
        assert!(
            list[..k].iter().all(|(seen, _)| seen != name),
            "{name} twice"
        );
    }
    let again: String = list
        .iter()
        .map(|(name, mac)| format!("{name}={}\n", format_mac(mac)))
        .collect();
    assert_eq!(parse_mac_list(&again).expect("round trip"), list);
});
