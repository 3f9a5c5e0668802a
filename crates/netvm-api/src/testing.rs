//! Test support for components using these extensions (feature `std`).
use std::vec;
use std::vec::Vec;

use sddf::shm::Region;

use crate::tap::{Tap, TapPoint};

/// A [`Tap`] that records every frame it is shown, and counts flushes.
#[derive(Debug, Default)]
pub struct RecordingTap {
    /// `(point, frame bytes)` in the order shown.
    pub frames: Vec<(TapPoint, Vec<u8>)>,
    /// Calls of `flush`.
    pub flushes: usize,
}

impl Tap for RecordingTap {
    fn frame(&mut self, point: TapPoint, data: &Region<'_>, offset: usize, len: usize) {
        let mut buf = vec![0; len];
        if data.read(offset, &mut buf).is_ok() {
            self.frames.push((point, buf));
        }
    }

    fn flush(&mut self) {
        self.flushes += 1;
    }
}
