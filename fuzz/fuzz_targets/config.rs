//! sDDF config blobs and netvm's options section, as a PD or a host tool reads them.
//!
//! The first byte picks the config type (`.net_driver_config`, `.net_virt_rx_config`,
//! `.net_virt_tx_config`, `.net_copy_config`, `.net_client_config`, `.device_resources`,
//! `.netvm_net_options`) and how the rest is used: as the blob itself (any size), or fitted to
//! the type's exact size with the magic forced, so that the fuzzer spends its time behind the
//! size and magic checks.
//!
//! Checks: no panic in `parse_owned`, in-place `parse` (aligned and misaligned) or the accessors
//! of an accepted blob; both parsers agree; an accepted blob has every count within its array
//! and every queue capacity a power of two in 1..=32768; error messages name the config.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netvm_api::options::NetOptions;
use netvm_fuzz::Input;
use sddf::config::*;
use sddf::queue::Capacity;
use zerocopy::IntoBytes;

fn capacity_ok(c: &ConnectionResource) -> bool {
    Capacity::new(u32::from(c.num_buffers)).is_ok()
}

/// Parses `blob` as `C` both ways and checks what an accepted one promises.
fn check<C: Config>(blob: &[u8], misalign: usize, accepted: impl Fn(&C)) {
    let owned = parse_owned::<C>(blob);
    // In place, at an 8-aligned address and (if asked) at a misaligned one.
    let mut words = vec![0u64; (blob.len() + misalign).div_ceil(8) + 1];
    let bytes = &mut words.as_mut_bytes()[misalign..misalign + blob.len()];
    bytes.copy_from_slice(blob);
    let in_place = parse::<C>(bytes);
    match (&owned, &in_place) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.as_bytes(), b.as_bytes());
            accepted(a);
        }
        (Err(e), Ok(_)) => panic!("parse_owned refused what parse accepted: {e}"),
        (Ok(_), Err(ConfigError::Misaligned { .. })) => assert_ne!(misalign, 0),
        (Ok(_), Err(e)) => panic!("parse refused what parse_owned accepted: {e}"),
        (Err(a), Err(b)) => {
            if misalign == 0 {
                assert_eq!(a, b);
            }
            let msg = a.to_string();
            assert!(
                msg.contains(C::NAME),
                "message does not name the config: {msg}"
            );
        }
    }
}

fn fitted(blob: &[u8], size: usize, magic: &[u8]) -> Vec<u8> {
    let mut v = blob.to_vec();
    v.resize(size, 0);
    v[..magic.len()].copy_from_slice(magic);
    v
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.u8();
    let misalign = usize::from(input.u8() % 8);
    let raw = input.rest();
    let fit = selector & 0x80 != 0;
    macro_rules! run {
        ($t:ty, $accepted:expr) => {{
            let blob = if fit {
                fitted(raw, core::mem::size_of::<$t>(), &<$t as Config>::MAGIC)
            } else {
                raw.to_vec()
            };
            check::<$t>(&blob, misalign, $accepted);
        }};
    }
    match selector % 7 {
        0 => run!(NetDriverConfig, |c: &NetDriverConfig| {
            assert!(capacity_ok(&c.virt_rx) && capacity_ok(&c.virt_tx));
        }),
        1 => run!(NetVirtRxConfig, |c: &NetVirtRxConfig| {
            assert!(capacity_ok(&c.driver));
            assert!(c.clients().len() <= MAX_CLIENTS);
            for client in c.clients() {
                assert!(capacity_ok(&client.conn));
                assert!(client.macs().len() <= MAX_CLIENTS);
            }
        }),
        2 => run!(NetVirtTxConfig, |c: &NetVirtTxConfig| {
            assert!(capacity_ok(&c.driver));
            assert!(c.clients().len() <= MAX_CLIENTS);
            for client in c.clients() {
                assert!(capacity_ok(&client.conn));
                assert!(client.regions().len() <= MAX_CLIENTS);
            }
        }),
        3 => run!(NetCopyConfig, |c: &NetCopyConfig| {
            assert!(capacity_ok(&c.rx) && capacity_ok(&c.client));
        }),
        4 => run!(NetClientConfig, |c: &NetClientConfig| {
            assert!(capacity_ok(&c.rx) && capacity_ok(&c.tx));
        }),
        5 => run!(DeviceResources, |c: &DeviceResources| {
            assert!(usize::from(c.num_regions) <= MAX_CLIENTS);
            assert!(usize::from(c.num_irqs) <= MAX_CLIENTS);
        }),
        _ => {
            let blob = if fit {
                fitted(
                    raw,
                    32,
                    if raw.first() == Some(&0) {
                        &[]
                    } else {
                        b"netvmop2"
                    },
                )
            } else {
                raw.to_vec()
            };
            if let Ok(o) = NetOptions::parse(&blob) {
                assert_eq!(blob.len(), 32);
                assert!(o.tx_budget() > 0);
                assert_eq!(o.flags & !netvm_api::options::KNOWN_FLAGS, 0);
                assert_eq!(NetOptions::parse(o.as_bytes()), Ok(o));
            }
        }
    }
});
