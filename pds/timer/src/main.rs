//! The `timer` protection domain: [`timer::Timer`] behind Microkit's event loop.
//!
//! System contract: one `<irq>` (the EL1 physical timer, INTID 30 on `qemu_virt_aarch64`); a
//! channel to each client with `pp` on the client's side; `passive`, and the highest priority
//! of the system so that every client may call it.
//!
//! Hardware: on seL4 the ARM generic timer through its EL0 registers (the Microkit kernel
//! exports CNTPCT and the EL1 physical timer to EL0: `EXPORT_PCNT_USER`, `EXPORT_PTMR_USER`);
//! on the host `CLOCK_MONOTONIC`, with a thread that posts the IRQ channel's notification bit
//! when the alarm is due (how a host runner simulates an IRQ).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use microkit::{Channel, ChannelSet, Handler, MessageInfo};
use timer::{Alarm, Timer};

#[cfg(target_os = "none")]
mod arm_timer;
#[cfg(target_os = "none")]
use arm_timer::Hardware;

#[cfg(target_os = "linux")]
mod host_timer;
#[cfg(target_os = "linux")]
use host_timer::Hardware;

/// The PD's state.
struct TimerPd {
    timer: Timer,
    hw: Hardware,
    irq: Channel,
}

impl Handler for TimerPd {
    fn init() -> Self {
        let Some(irq) = (0..=microkit::MAX_CHANNEL_ID)
            .map(Channel::new)
            .find(|c| c.is_irq())
        else {
            panic!(
                "{}: the system gives this PD no timer <irq>",
                microkit::pd_name()
            );
        };
        let mut hw = Hardware::new(irq);
        hw.set(None);
        TimerPd {
            timer: Timer::new(),
            hw,
            irq,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(self.irq) {
            return;
        }
        // Re-arming (or disarming) first drops the level-triggered IRQ, so the ack cannot
        // let the same expiry in again.
        let due = self.timer.expire(&mut self.hw);
        self.irq.irq_ack();
        for ch in ChannelSet::from_bits(due) {
            ch.notify();
        }
    }

    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        let mr0 = microkit::mr_get(0);
        match self.timer.request(
            &mut self.hw,
            channel.id(),
            channel.can_notify(),
            msg.label(),
            mr0,
        ) {
            Ok(Some(value)) => {
                microkit::mr_set(0, value);
                MessageInfo::new(0, 1)
            }
            Ok(None) => MessageInfo::new(0, 0),
            Err(e) => {
                microkit::debug_println!(
                    "{}: refused request from channel {}: {e:?}",
                    microkit::pd_name(),
                    channel.id()
                );
                MessageInfo::new(0, 0)
            }
        }
    }
}

microkit::protection_domain!(TimerPd);
