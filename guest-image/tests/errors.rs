//! Build errors that can be provoked cheaply say what is wrong and what to do.

use guest_image::debian::Apt;
use guest_image::layout::names;
use guest_image::{build, default_cache_dir, BuildOptions, GuestError, GuestLayout};
use system_plan::PlanError;

fn layout() -> GuestLayout {
    GuestLayout::qemu_virt(512 << 20, 1, 0x4000, 0x10_0000)
}

#[test]
fn a_region_missing_from_the_layout_fails_before_any_download() {
    let mut l = layout();
    l.uio_regions.retain(|r| r.name != names::TX_FAULT);
    let tmp = std::env::temp_dir().join(format!("guest-errors-{}", std::process::id()));
    let mut opts = BuildOptions::new(tmp.join("out"), l);
    opts.cache = tmp.join("cache");
    let err = build(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, GuestError::Plan(PlanError::MissingRegion { ref name }) if name == names::TX_FAULT),
        "{msg}"
    );
    assert!(msg.contains("tx_fault") && msg.contains("add it"), "{msg}");
    assert!(
        !tmp.join("cache").exists(),
        "nothing is fetched for an invalid layout"
    );
}

/// Uses the shared private apt state (fetching its lists first if this machine has none).
#[test]
fn a_bogus_package_or_flavour_is_named() {
    let apt = Apt::new(&default_cache_dir().join("apt")).unwrap();
    if apt.lists_age().is_none() {
        apt.update().unwrap();
    }
    let err = apt.resolve_kernel("no-such-flavour-arm64").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GuestError::MissingPackage { .. }), "{msg}");
    assert!(
        msg.contains("linux-image-no-such-flavour-arm64") && msg.contains("(arm64)"),
        "{msg}"
    );
    assert!(msg.contains("--refresh"), "{msg}");

    let err = apt
        .download("linux-headers-0.0.0-0-bogus", "arm64", "0.0-0")
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GuestError::MissingPackage { .. }), "{msg}");
    assert!(msg.contains("linux-headers-0.0.0-0-bogus=0.0-0"), "{msg}");
}
