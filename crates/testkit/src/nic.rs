//! The uio-driver core's world, scripted: a NIC ([`ScriptedNic`]) that offers queued frames and
//! records what is sent, and doorbells ([`Bells`]) that count their rings. Shared by
//! `uio-driver/tests/core.rs` and the `uio_driver` fuzz target.
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use sddf::NET_BUFFER_SIZE;
use uio_driver::driver::{Events, Nic, NicPoll, Platform, RxFrame, RxVerdict, TxReport};

/// A NIC that receives the frames queued in `incoming` and sends into `sent`.
pub struct ScriptedNic {
    /// Frames to receive: (captured bytes, length on the wire; longer means truncated).
    pub incoming: VecDeque<(Vec<u8>, usize)>,
    /// Frames sent, in order.
    pub sent: Vec<Vec<u8>>,
    slot: Vec<u8>,
    pending: Vec<Vec<u8>>,
    /// Frames the NIC holds before it reports itself full.
    pub room: usize,
    /// Whether the next flush fails (with an error saying "scripted").
    pub fail_next_flush: bool,
}

impl Default for ScriptedNic {
    fn default() -> Self {
        ScriptedNic::new()
    }
}

impl ScriptedNic {
    /// A NIC with nothing to receive, room for any number of frames.
    pub fn new() -> Self {
        ScriptedNic {
            incoming: VecDeque::new(),
            sent: Vec::new(),
            slot: vec![0; NET_BUFFER_SIZE],
            pending: Vec::new(),
            room: usize::MAX,
            fail_next_flush: false,
        }
    }

    /// Queues `frame` to be received whole.
    pub fn offer(&mut self, frame: Vec<u8>) {
        let wire = frame.len();
        self.incoming.push_back((frame, wire));
    }

    /// Queues each of `frames` to be received whole.
    pub fn offer_all(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        for frame in frames {
            self.offer(frame);
        }
    }
}

impl Nic for ScriptedNic {
    fn poll_set(&self, _: bool, _: bool) -> Vec<NicPoll> {
        Vec::new()
    }
    fn receive(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(RxFrame<'_>) -> RxVerdict,
    ) -> io::Result<bool> {
        for _ in 0..budget {
            let Some((f, wire_len)) = self.incoming.front() else {
                return Ok(false);
            };
            if deliver(RxFrame {
                data: f,
                wire_len: *wire_len,
            }) == RxVerdict::Keep
            {
                return Ok(true);
            }
            self.incoming.pop_front();
        }
        Ok(!self.incoming.is_empty())
    }
    fn tx_buffer(&mut self) -> Option<&mut [u8]> {
        (self.pending.len() < self.room).then_some(&mut self.slot[..])
    }
    fn tx_commit(&mut self, len: usize) {
        self.pending.push(self.slot[..len].to_vec());
    }
    fn tx_flush(&mut self) -> io::Result<TxReport> {
        if std::mem::take(&mut self.fail_next_flush) {
            return Err(io::Error::other("scripted send failure"));
        }
        let mut r = TxReport::default();
        for f in self.pending.drain(..) {
            r.sent += 1;
            r.sent_bytes += f.len() as u64;
            self.sent.push(f);
        }
        Ok(r)
    }
    fn tx_pending(&self) -> bool {
        !self.pending.is_empty()
    }
    fn take_dropped(&mut self) -> io::Result<u64> {
        Ok(0)
    }
    fn rx_ready(&self) -> bool {
        !self.incoming.is_empty()
    }
}

/// Doorbells that count how often each was rung; waiting returns no events at once (and is
/// counted).
#[derive(Default)]
pub struct Bells {
    /// virt_rx's doorbell.
    pub rx: u32,
    /// virt_tx's doorbell.
    pub tx: u32,
    /// Calls of [`Platform::wait`]: how often the driver went to sleep.
    pub waits: u32,
}

impl Platform for Bells {
    fn doorbell_rx(&mut self) -> io::Result<()> {
        self.rx += 1;
        Ok(())
    }
    fn doorbell_tx(&mut self) -> io::Result<()> {
        self.tx += 1;
        Ok(())
    }
    fn wait(&mut self, _: &[NicPoll], _: Option<Duration>) -> io::Result<Events> {
        self.waits += 1;
        Ok(Events::default())
    }
}
