//! Entry, setvar, config-section and debug-print macros, and the cells behind setvars and config
//! sections.
//!
//! Setvars and config sections are zero-initialised statics whose real contents are written
//! outside the program's view — by the Microkit tool (seL4: into the ELF image) or by the host
//! runtime before `init` (host: through the address the executable's symbol or section table
//! gives). The compiler must therefore never assume the zero initialiser: every read is volatile.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;

/// A word-sized variable patched by the Microkit tool (`setvar_vaddr`, `setvar_size`,
/// `setvar_id`, `<setvar>`). Declare it with [`setvar!`](crate::setvar); the tool requires
/// exactly 8 bytes, which `repr(transparent)` over `u64` guarantees.
#[repr(transparent)]
pub struct SetVar(UnsafeCell<u64>);

// SAFETY: the value is written only before the PD's code runs (seL4: in the ELF image; host:
// by `host::run` before `Handler::init`, on the PD's only thread). Afterwards it is only read.
unsafe impl Sync for SetVar {}

impl SetVar {
    /// The zero initialiser; the tool overwrites it.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(UnsafeCell::new(0))
    }

    /// The patched value.
    pub fn get(&self) -> u64 {
        // SAFETY: the pointer comes from a live static and is aligned; no `&mut` to it exists
        // (see the `Sync` impl). Volatile so the zero initialiser is never constant-folded.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
}

/// A byte array in a named ELF section whose contents a build tool writes (sDDF config structs:
/// `.net_client_config` and the like). Declare it with [`config_section!`](crate::config_section).
///
/// 8-byte aligned, so the C structs sDDF puts there can be read in place.
#[repr(C, align(8))]
pub struct ConfigSection<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: as for `SetVar`: written only before the PD's code runs, read afterwards.
unsafe impl<const N: usize> Sync for ConfigSection<N> {}

impl<const N: usize> ConfigSection<N> {
    /// The zero initialiser; the build tool overwrites it.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }

    /// A copy of the section's contents.
    pub fn bytes(&self) -> [u8; N] {
        // SAFETY: as in `SetVar::get`; the array is plain bytes, any value is valid.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }

    /// The section's contents in place, for configs too large to copy onto a PD's stack.
    ///
    /// The pointer goes through `black_box`, so the compiler cannot assume the zero initialiser
    /// is still there and constant-fold reads of it.
    pub fn as_bytes(&'static self) -> &'static [u8; N] {
        let p = core::hint::black_box(self.0.get());
        // SAFETY: the section is written only before the PD's code runs (by the Microkit tool in
        // the ELF, or by the host runtime before `init`) and never afterwards, so a shared
        // reference for the rest of the program observes no mutation.
        unsafe { &*p }
    }
}

/// Declares a Microkit setvar: an unmangled, word-sized static named like the SDF's
/// `setvar_vaddr` / `setvar_size` / `setvar_id` / `<setvar symbol>` attribute.
///
/// ```ignore
/// microkit::setvar!(shared_vaddr);
/// let base = shared_vaddr.get() as *mut u8;
/// ```
#[macro_export]
macro_rules! setvar {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[allow(non_upper_case_globals, unsafe_code)]
        #[no_mangle]
        $vis static $name: $crate::SetVar = $crate::SetVar::new();
    };
}

/// Declares a config section: a zero-initialised byte array of exactly `LEN` bytes alone in the
/// ELF section `SECTION`, for the build tool (or host runner) to fill in.
///
/// ```ignore
/// microkit::config_section!(".net_client_config", CONFIG: [u8; 128]);
/// let bytes: [u8; 128] = CONFIG.bytes();
/// ```
#[macro_export]
macro_rules! config_section {
    ($section:literal, $(#[$meta:meta])* $vis:vis $name:ident : [u8; $len:expr]) => {
        $(#[$meta])*
        #[allow(unsafe_code)]
        #[link_section = $section]
        #[used]
        $vis static $name: $crate::ConfigSection<{ $len }> = $crate::ConfigSection::new();
    };
}

/// Declares the PD's entry: on seL4 the symbol `_start` branches to, on the host `fn main`.
/// The crate root also needs `#![cfg_attr(target_os = "none", no_std, no_main)]`.
///
/// ```ignore
/// microkit::protection_domain!(my_pd::Server);
/// ```
#[macro_export]
macro_rules! protection_domain {
    ($handler:ty) => {
        #[cfg(target_os = "none")]
        #[allow(unsafe_code)]
        #[no_mangle]
        extern "C" fn __microkit_main() -> ! {
            $crate::run::<$handler>()
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            $crate::run::<$handler>()
        }
    };
}

/// Prints to the debug console (no-op against a release seL4 kernel).
#[macro_export]
macro_rules! debug_print {
    ($($arg:tt)*) => {{
        let _ = ::core::fmt::Write::write_fmt(&mut $crate::DebugWriter, ::core::format_args!($($arg)*));
    }};
}

/// Prints a line to the debug console (no-op against a release seL4 kernel).
#[macro_export]
macro_rules! debug_println {
    () => { $crate::debug_print!("\n") };
    ($($arg:tt)*) => {{
        $crate::debug_print!($($arg)*);
        $crate::debug_print!("\n");
    }};
}
