//! What netvm's protection domains share at their entry points: the glue between the `microkit`
//! runtime and the ABI crates (`sddf`, `netvm-api`). The ABI crates know nothing of the runtime;
//! this crate is where the two meet.
//!
//! * [`MicrokitNotifier`]: [`sddf::Notifier`] over Microkit channels.
//! * [`fail`]: a start-up error stops the PD with a fault the monitor reports.
//! * [`stats_writer`]: the `.netvm_stats` region of this PD, named after it.
//! * [`net_pd!`]: the entry point of an sDDF net component (virt_rx, virt_tx, copier).
//! * `pcap` (feature `pcap`, host mode): `PcapTap`, `pcap_tap` and `component_tap`, frame
//!   capture.
//! * `counter` (seL4 on aarch64): the ARM generic timer's count.
#![cfg_attr(not(feature = "pcap"), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
pub mod counter;
#[cfg(feature = "pcap")]
mod pcap;

use microkit::{Channel, DeferredAction};
use netvm_api::stats::StatsWriter;
#[cfg(feature = "pcap")]
pub use pcap::PcapTap;

// For `net_pd!`'s expansion, so that a PD names only this crate.
#[doc(hidden)]
pub use {microkit, sddf};

/// [`sddf::Notifier`] over Microkit channels.
///
/// Microkit has one deferred-action slot; a second deferred notification would silently replace
/// the first. So, as sDDF's `lib_sddf_lwip` does, a deferred notification whose slot is taken by
/// another action is sent immediately instead, and one already pending for the same channel is
/// not repeated.
#[derive(Debug, Default, Clone, Copy)]
pub struct MicrokitNotifier;

impl sddf::Notifier for MicrokitNotifier {
    fn notify(&mut self, ch: u8) {
        Channel::new(ch).notify();
    }

    fn deferred_notify(&mut self, ch: u8) {
        match microkit::deferred_pending() {
            None => Channel::new(ch).deferred_notify(),
            Some(DeferredAction::Notify(pending)) if pending.id() == ch => {}
            Some(_) => Channel::new(ch).notify(),
        }
    }
}

/// Reports a start-up error the way a PD can (the console where there is one) and stops the PD
/// with a fault, which the monitor (or host runner) reports with the PD's name.
pub fn fail(what: &dyn core::fmt::Display) -> ! {
    microkit::debug_println!("{}: {}", microkit::pd_name(), what);
    panic!("{}: start-up failed", microkit::pd_name());
}

/// The [`StatsWriter`] for the region a `.netvm_stats` section names, with the PD's name as the
/// component; `None` when the section names no region. A section that names an unmapped region
/// stops the PD ([`fail`]): it is a broken system description.
pub fn stats_writer<'a>(
    section: &[u8],
    mem: &impl sddf::shm::AddressSpace<'a>,
) -> Option<StatsWriter<'a>> {
    StatsWriter::from_section(section, mem, microkit::pd_name()).unwrap_or_else(|e| fail(&e))
}

/// A pcap [`Tap`](netvm_api::tap::Tap) for `points` in the directory named by
/// [`PCAP_ENV`](netvm_api::tap::PCAP_ENV) (host mode, `netvm run --pcap DIR`), or `None` when
/// the variable is unset. A directory that cannot take the files stops the PD ([`fail`]): the
/// capture was asked for.
#[cfg(feature = "pcap")]
pub fn pcap_tap(
    points: &[netvm_api::tap::TapPoint],
) -> Option<&'static mut dyn netvm_api::tap::Tap> {
    let dir = std::env::var_os(netvm_api::tap::PCAP_ENV)?;
    match PcapTap::create(std::path::Path::new(&dir), points) {
        Ok(tap) => Some(std::boxed::Box::leak(std::boxed::Box::new(tap))),
        Err(e) => fail(&e),
    }
}

/// [`pcap_tap`] for a component between the driver and its clients: the `driver` point, then
/// `client(i)` for each of its `clients`.
#[cfg(feature = "pcap")]
pub fn component_tap(
    driver: netvm_api::tap::TapPoint,
    client: fn(u8) -> netvm_api::tap::TapPoint,
    clients: usize,
) -> Option<&'static mut dyn netvm_api::tap::Tap> {
    let clients = (0..clients).map(|i| client(i as u8));
    let points: std::vec::Vec<_> = core::iter::once(driver).chain(clients).collect();
    pcap_tap(&points)
}

/// The entry point of an sDDF net component: a `Pd` handler holding `$component`, built by the
/// `init` block with `$mem` bound to the PD's [`IdentityMapped`](sddf::shm::IdentityMapped)
/// address space; the `.netvm_stats` section `$stats` (if it names a region) attached with the
/// component's `attach_stats`; every notification passed to its `notified` with a
/// [`MicrokitNotifier`]; and `microkit::protection_domain!`.
///
/// The component type needs `attach_stats(StatsWriter) -> Result<(), impl Display>` and
/// `notified(&mut impl Notifier)` methods; a start-up error stops the PD ([`fail`]).
#[macro_export]
macro_rules! net_pd {
    (component: $component:ty, stats: $stats:expr, init: |$mem:ident| $init:block $(,)?) => {
        struct Pd($component);

        impl $crate::microkit::Handler for Pd {
            fn init() -> Self {
                #[allow(unsafe_code)]
                // SAFETY: Microkit (and the host runner) map every region the config sections
                // name at the vaddr they give, for the PD's whole life, and this PD touches them
                // only through sddf::shm::Region.
                let $mem = &unsafe { $crate::sddf::shm::IdentityMapped::new() };
                let mut component: $component = $init;
                if let Some(stats) = $crate::stats_writer($stats, $mem) {
                    component
                        .attach_stats(stats)
                        .unwrap_or_else(|e| $crate::fail(&e));
                }
                Pd(component)
            }

            fn notified(&mut self, _channels: $crate::microkit::ChannelSet) {
                self.0.notified(&mut $crate::MicrokitNotifier);
            }
        }

        $crate::microkit::protection_domain!(Pd);
    };
}
