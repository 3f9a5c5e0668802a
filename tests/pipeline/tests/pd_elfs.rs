//! Builds every PD of system.xml for `aarch64-unknown-none` and checks each ELF against what the
//! Microkit 2.3.0 tool needs (`pd_elf::check_pd_image`), including each config section the
//! build fills, at its exact size.
use std::path::Path;

use pd_elf::check_pd_image;

/// (binary, sections it must carry with their sizes)
const PDS: &[(&str, &[(&str, u64)])] = &[
    (
        "virt_rx",
        &[
            (".net_virt_rx_config", 27744),
            (".netvm_net_options", 32),
            (".netvm_stats", 16),
        ],
    ),
    (
        "virt_tx",
        &[
            (".net_virt_tx_config", 134200),
            (".netvm_net_options", 32),
            (".netvm_stats", 16),
            (".netvm_vswitch", 3088),
        ],
    ),
    (
        "copier",
        &[
            (".net_copy_config", 1128),
            (".netvm_stats", 16),
            (".netvm_vswitch", 1080),
        ],
    ),
    (
        "echo_server",
        &[
            (".net_client_config", 128),
            (".echo_config", 16),
            (".echo_peers", 96),
            (".netvm_stats", 16),
            (".timer_client_config", 8),
        ],
    ),
    ("timer", &[]),
    ("idle", &[]),
];

#[test]
fn every_system_pd_links_as_the_microkit_tool_requires() {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sel4-pds");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let packages = [
        "-p",
        "virt-rx",
        "-p",
        "virt-tx",
        "-p",
        "copier",
        "-p",
        "echo-server",
        "-p",
        "timer",
        "-p",
        "idle",
    ];
    let dir = pd_elf::cargo_build_sel4(env!("CARGO"), &manifest, &packages, &target_dir, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    for (bin, sections) in PDS {
        check_pd_image(&dir.join(bin), &[], sections).unwrap_or_else(|e| panic!("{e}"));
    }
}
