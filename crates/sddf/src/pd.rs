//! Glue for protection-domain entry points (feature `microkit`).
use microkit::{Channel, DeferredAction};

/// [`Notifier`](crate::Notifier) over Microkit channels.
///
/// Microkit has one deferred-action slot; a second deferred notification would silently replace
/// the first. So, as sDDF's `lib_sddf_lwip` does, a deferred notification whose slot is taken by
/// another action is sent immediately instead, and one already pending for the same channel is
/// not repeated.
#[derive(Debug, Default, Clone, Copy)]
pub struct MicrokitNotifier;

impl crate::Notifier for MicrokitNotifier {
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

/// The [`StatsWriter`](crate::stats::StatsWriter) for the region a `.netvm_stats` section names,
/// with the PD's name as the component; `None` when the section names no region. A section
/// that names an unmapped region stops the PD ([`fail`]): it is a broken system description.
pub fn stats_writer<'a>(
    section: &[u8],
    mem: &impl crate::shm::AddressSpace<'a>,
) -> Option<crate::stats::StatsWriter<'a>> {
    crate::stats::StatsWriter::from_section(section, mem, microkit::pd_name())
        .unwrap_or_else(|e| fail(&e))
}

/// A pcap [`Tap`](crate::tap::Tap) for `points` in the directory named by
/// [`PCAP_ENV`](crate::tap::PCAP_ENV) (host mode, `netvm run --pcap DIR`), or `None` when the
/// variable is unset. A directory that cannot take the files stops the PD ([`fail`]): the
/// capture was asked for.
#[cfg(feature = "pcap")]
pub fn pcap_tap(points: &[crate::tap::TapPoint]) -> Option<&'static mut dyn crate::tap::Tap> {
    let dir = std::env::var_os(crate::tap::PCAP_ENV)?;
    match crate::tap::PcapTap::create(std::path::Path::new(&dir), points) {
        Ok(tap) => Some(std::boxed::Box::leak(std::boxed::Box::new(tap))),
        Err(e) => fail(&e),
    }
}
