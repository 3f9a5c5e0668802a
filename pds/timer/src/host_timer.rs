//! Host mode: `CLOCK_MONOTONIC` (shared by every process, like CNTPCT by every PD) and an alarm
//! thread that posts this PD's IRQ bit through its own control record when the deadline passes,
//! exactly as a host runner simulates an IRQ.
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use microkit::host::control::ControlRegion;
use microkit::host::manifest::Manifest;
use microkit::Channel;
use timer::Alarm;

/// The alarm thread's deadline (ns on `CLOCK_MONOTONIC`), `None` when disarmed.
type Shared = Arc<(Mutex<Option<u64>>, Condvar)>;

/// `CLOCK_MONOTONIC` and the alarm thread.
pub struct Hardware {
    shared: Shared,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer;
    // CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl Hardware {
    /// Starts the alarm thread, which raises `irq` of this PD.
    pub fn new(irq: Channel) -> Self {
        let fail =
            |e: &dyn std::fmt::Display| -> ! { panic!("{}: host alarm: {e}", microkit::pd_name()) };
        let manifest = Manifest::from_env().unwrap_or_else(|e| fail(&e));
        let control = ControlRegion::open(&manifest.control).unwrap_or_else(|e| fail(&e));
        let index = manifest.index;
        let shared: Shared = Arc::new((Mutex::new(None), Condvar::new()));
        let thread_shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let record = control
                .record(index)
                .expect("the runtime checked the index");
            let (lock, cv) = &*thread_shared;
            let mut deadline = lock.lock().expect("alarm lock");
            loop {
                match *deadline {
                    None => deadline = cv.wait(deadline).expect("alarm lock"),
                    Some(d) => {
                        let now = monotonic_ns();
                        if now >= d {
                            *deadline = None;
                            record.post_notify(1 << irq.id());
                        } else {
                            deadline = cv
                                .wait_timeout(deadline, Duration::from_nanos(d - now))
                                .expect("alarm lock")
                                .0;
                        }
                    }
                }
            }
        });
        Hardware { shared }
    }
}

impl Alarm for Hardware {
    fn now_ns(&mut self) -> u64 {
        monotonic_ns()
    }

    fn set(&mut self, deadline_ns: Option<u64>) {
        let (lock, cv) = &*self.shared;
        *lock.lock().expect("alarm lock") = deadline_ns;
        cv.notify_one();
    }
}
