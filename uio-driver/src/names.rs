//! The UIO device names the driver looks for. They are netvm's ABI (the guest image builder
//! gives the device-tree nodes these names), so they are spelled once, in `netvm_api::uio`; this
//! module re-exports them for the driver's users.
pub use netvm_api::uio::*;
