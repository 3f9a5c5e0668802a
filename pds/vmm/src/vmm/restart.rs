//! Restarting the guest: the budget, and the watchdog that stops a guest which no longer
//! serves its driver's queues (see the parent module's docs).

use super::{Platform, RunState, StopReason, Vmm};

impl Vmm<'_> {
    /// Whether the stopped guest is to be booted again, counting the restart: it crashed
    /// (an unexpected fault) or asked for a reset, and the budget is not spent. The caller
    /// reloads the images and calls [`Vmm::start`].
    pub fn restart(&mut self, p: &mut impl Platform) -> bool {
        let Some(
            reason @ (StopReason::Unexpected | StopReason::SystemReset | StopReason::Watchdog),
        ) = self.stop_reason
        else {
            return false;
        };
        if self.state != RunState::Stopped {
            return false;
        }
        if self.counters.guest_restarts >= u64::from(self.config.restart_budget) {
            p.log(format_args!(
                "vmm: guest stopped ({reason:?}) and its {} restarts are spent: it stays down\n",
                self.config.restart_budget
            ));
            return false;
        }
        self.counters.guest_restarts += 1;
        p.log(format_args!(
            "vmm: restarting the guest ({reason:?}), restart {} of {}\n",
            self.counters.guest_restarts, self.config.restart_budget
        ));
        true
    }

    /// The watchdog, after every activation: notes since when an interrupt has been waiting
    /// for the guest's EOI, stops the guest when that is longer than allowed, and otherwise
    /// makes sure the wake-up timer will look again. Returns whether it stopped the guest.
    pub(super) fn watch(&mut self, p: &mut impl Platform) -> bool {
        let Some(limit) = self
            .config
            .watchdog_ticks
            .filter(|_| self.config.wakeup_channel.is_some())
        else {
            return false;
        };
        if self.state == RunState::Stopped {
            (self.busy_since, self.stalled_since) = (None, None);
            return false;
        }
        let backlog = if self.driver_seen {
            p.driver_backlog()
        } else {
            None
        };
        // Progress: the driver took frames since the last look.
        let head = backlog.map(|(_, head)| head);
        if head.is_some() && head != self.tx_head {
            self.stalled_since = None;
        }
        self.tx_head = head;
        let stalled = self.driver_seen
            && (backlog.is_some_and(|(waiting, _)| waiting > 0)
                || self
                    .config
                    .virqs
                    .iter()
                    .any(|r| !r.passthrough && self.vgic.is_pending(r.irq)));
        let busy = self.vgic.awaits_eoi();
        if !busy {
            self.busy_since = None;
        }
        if !stalled {
            self.stalled_since = None;
        }
        if !busy && !stalled {
            return false;
        }
        let now = p.now();
        if busy {
            self.busy_since.get_or_insert(now);
        }
        if stalled {
            self.stalled_since.get_or_insert(now);
        }
        let since = match (self.busy_since, self.stalled_since) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(now),
        };
        let deadline = since.saturating_add(limit);
        if now >= deadline {
            self.counters.watchdog_expiries += 1;
            let why = if self.busy_since == Some(since) {
                "an interrupt has waited for the guest's EOI"
            } else {
                "the driver made no progress while work waited for it"
            };
            p.log(format_args!(
                "vmm: watchdog: {why} for {} ticks; stopping the guest\n",
                now - since
            ));
            self.stop(p, StopReason::Watchdog);
            return true;
        }
        if self.armed.is_none_or(|armed| armed > deadline) {
            self.arm(p, deadline);
        }
        false
    }

    /// Arms the wake-up timer (replacing what it held).
    pub(super) fn arm(&mut self, p: &mut impl Platform, deadline: u64) {
        if p.set_wakeup(Some(deadline)) {
            self.armed = Some(deadline);
        }
    }
}
