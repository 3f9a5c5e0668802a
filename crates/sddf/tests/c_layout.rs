//! Layout check against sDDF's own C headers, through bindgen (clang computes the C layout).
//!
//! Needs `SDDF_INCLUDE` = an sDDF checkout's `include` directory and `MICROKIT_SDK` (its seL4
//! headers, which the sDDF headers include), both outside this repository. Without them the test
//! prints that it was skipped. The C layouts are taken for aarch64, the target the PDs run on.
use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;

use sddf::config::*;
use sddf::BuffDesc;

/// Sizes and field offsets clang reports, read from the layout assertions bindgen emits.
struct CLayout {
    sizes: HashMap<String, usize>,
    offsets: HashMap<(String, String), usize>,
}

fn c_layout() -> Option<CLayout> {
    let (Some(inc), Some(sdk)) = (
        std::env::var_os("SDDF_INCLUDE"),
        std::env::var_os("MICROKIT_SDK"),
    ) else {
        testkit::skip(
            "c_layout",
            "set SDDF_INCLUDE=<sddf>/include and MICROKIT_SDK (scripts/sdk.sh finds both)",
        );
        return None;
    };
    let inc = PathBuf::from(inc);
    let sel4 = PathBuf::from(sdk).join("board/qemu_virt_aarch64/debug/include");
    // clang's own freestanding headers (stdint.h, stdbool.h), from Debian's libclang packages.
    let builtin = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .flat_map(|e| {
            std::fs::read_dir(e.path().join("lib/clang"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path().join("include"))
        .find(|p| p.join("stdbool.h").exists())
        .expect("clang builtin headers (apt-get install libclang-dev)");
    let generated = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <sddf/network/queue.h>\n#include <sddf/network/config.h>\n\
             #include <sddf/resources/device.h>\n",
        )
        .clang_args(["--target=aarch64-none-elf", "-ffreestanding"])
        .clang_arg(format!("-isystem{}", builtin.display()))
        .clang_arg(format!("-I{}", inc.display()))
        .clang_arg(format!("-I{}", inc.join("microkit").display()))
        // sDDF's freestanding libc headers, as its own build (util/util.mk) uses them.
        .clang_arg(format!("-I{}", inc.join("sddf/util/custom_libc").display()))
        .clang_arg(format!("-I{}", sel4.display()))
        .allowlist_type("net_.*|device_.*|region_resource_t|mac_addr_t")
        .layout_tests(true)
        .generate()
        .expect("bindgen over sDDF headers")
        .to_string();
    if let Some(dump) = std::env::var_os("NETVM_BINDGEN_DUMP") {
        std::fs::write(dump, &generated).unwrap();
    }
    let mut layout = CLayout {
        sizes: HashMap::new(),
        offsets: HashMap::new(),
    };
    // Assertions look like (rustfmt may break them across lines):
    //   ["Size of net_buff_desc"][::std::mem::size_of::<net_buff_desc>() - 16usize];
    //   ["Offset of field: net_buff_desc::len"][::std::mem::offset_of!(net_buff_desc, len) - 8usize];
    for chunk in generated.split("[\"").skip(1) {
        let Some((label, rest)) = chunk.split_once("\"]") else {
            continue;
        };
        let Some(expr) = rest.split("usize]").next() else {
            continue;
        };
        let Some(Ok(value)) = expr.rsplit(" - ").next().map(|v| v.trim().parse::<usize>()) else {
            continue;
        };
        if let Some(name) = label.strip_prefix("Size of ") {
            layout.sizes.insert(name.to_string(), value);
        } else if let Some(path) = label.strip_prefix("Offset of field: ") {
            let (ty, field) = path.split_once("::").unwrap();
            layout
                .offsets
                .insert((ty.to_string(), field.to_string()), value);
        }
    }
    assert!(
        !layout.sizes.is_empty(),
        "bindgen emitted no layout assertions"
    );
    Some(layout)
}

impl CLayout {
    fn size(&self, ty: &str) -> usize {
        *self
            .sizes
            .get(ty)
            .unwrap_or_else(|| panic!("C type {ty} not found"))
    }
    fn offset(&self, ty: &str, field: &str) -> usize {
        *self
            .offsets
            .get(&(ty.to_string(), field.to_string()))
            .unwrap_or_else(|| panic!("C field {ty}::{field} not found"))
    }
}

macro_rules! check {
    ($c:expr, $rust:ty = $cty:literal { $($rf:ident = $cf:literal),* $(,)? }) => {{
        assert_eq!(size_of::<$rust>(), $c.size($cty), "size of {}", $cty);
        $(assert_eq!(offset_of!($rust, $rf), $c.offset($cty, $cf), "{}::{}", $cty, $cf);)*
    }};
}

#[test]
#[ignore = "seL4 stage: needs sDDF's headers and the Microkit SDK; scripts/test.sh runs it (--ignored)"]
fn rust_layouts_match_sddf_headers() {
    let Some(c) = c_layout() else { return };
    check!(c, BuffDesc = "net_buff_desc" { io_or_offset = "io_or_offset", len = "len" });
    assert_eq!(c.size("net_queue"), 8);
    assert_eq!(c.offset("net_queue", "tail"), 0);
    assert_eq!(c.offset("net_queue", "head"), 2);
    assert_eq!(c.offset("net_queue", "consumer_signalled"), 4);
    assert_eq!(c.offset("net_queue", "buffers"), 8);
    check!(c, RegionResource = "region_resource" { vaddr = "vaddr", size = "size" });
    check!(c, DeviceRegionResource = "device_region_resource" { region = "region", io_addr = "io_addr" });
    check!(c, DeviceResources = "device_resources" {
        magic = "magic", num_regions = "num_regions", num_irqs = "num_irqs", regions = "regions", irqs = "irqs" });
    check!(c, ConnectionResource = "net_connection_resource" {
        free_queue = "free_queue", active_queue = "active_queue", num_buffers = "num_buffers", id = "id" });
    check!(c, NetDriverConfig = "net_driver_config" { magic = "magic", virt_rx = "virt_rx", virt_tx = "virt_tx" });
    check!(c, VirtTxDataRegion = "net_virt_tx_data_region" { data = "data", num_buffers = "num_buffers" });
    check!(c, VirtTxClientConfig = "net_virt_tx_client_config" {
        conn = "conn", regions = "regions", num_regions = "num_regions" });
    check!(c, NetVirtTxConfig = "net_virt_tx_config" {
        magic = "magic", driver = "driver", clients = "clients", num_clients = "num_clients" });
    check!(c, VirtRxClientConfig = "net_virt_rx_client_config" {
        conn = "conn", mac_addrs = "mac_addrs", num_macs = "num_macs" });
    check!(c, NetVirtRxConfig = "net_virt_rx_config" {
        magic = "magic", driver = "driver", data = "data", buffer_metadata = "buffer_metadata",
        clients = "clients", num_clients = "num_clients" });
    check!(c, NetCopyConfig = "net_copy_config" {
        magic = "magic", rx = "rx", rx_data = "rx_data", client = "client", client_data = "client_data" });
    check!(c, NetClientConfig = "net_client_config" {
        magic = "magic", rx = "rx", rx_data = "rx_data", tx = "tx", tx_data = "tx_data", mac_addr = "mac_addr" });
}
