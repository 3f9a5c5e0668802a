//! Atomics and cells, from `core` normally and from `loom` when model checking (`--cfg loom`).
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU16, AtomicU32};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU16, AtomicU32};
