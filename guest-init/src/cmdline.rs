//! The kernel command line as `/init` reads it from `/proc/cmdline`.
//!
//! The kernel does not apply `<module>.<param>=` to loadable modules (modprobe normally does),
//! so `/init` collects them per module and hands them to `finit_module`. Its own options:
//! * `netvm.iface=<if>`: the NIC the uio-driver bridges (default `eth0`);
//! * `uio_driver.<option>=<value>`: passed to the uio-driver as `--<option> <value>` (`_` in
//!   the option read as `-`), e.g. `uio_driver.blocks=64`. A later word for the same option
//!   replaces an earlier one, as with the kernel's own parameters, so words appended to the
//!   image's command line (`make GUEST_APPEND=...`) override its defaults, e.g.
//!   `uio_driver.driver_first=0`;
//! * `netvm.mode=echo netvm.ip=<a.b.c.d>/<prefix>`: the reference mode. The same kernel booted
//!   directly on QEMU (no seL4) gives the NIC that address and runs the kernel echo
//!   (`/bin/kernel-echo`) instead of the uio-driver: Linux alone, to measure the seL4 system
//!   against. `netvm.mode=driver` (the default) is the driver VM.
//! * `netvm.mode=reflect netvm.ip=<a.b.c.d>/<prefix>`: the packet path alone. The NIC is set up
//!   as in the driver VM (offloads off, silent) and the uio-driver, with its usual options,
//!   answers ARP, ping and UDP for that address itself (`uio-driver --reflect`): the driver's
//!   packet path alone, booted with or without seL4.
//! * `netvm.debug`: a debug image (the image build adds it for `MICROKIT_CONFIG=debug` only):
//!   console commands meant for tests are honoured, e.g. `netvm.crash`, which panics the
//!   kernel on purpose to exercise the VMM's restart.

use std::net::Ipv4Addr;

/// The interface used when `netvm.iface` is absent.
pub const DEFAULT_IFACE: &str = "eth0";

/// Splits a command line into words; double quotes group words (`a="b c"` is one word,
/// quotes removed), as the kernel's own parser does.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// What `/init` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The driver VM: the uio-driver bridges the NIC to sDDF.
    Driver,
    /// The reference: the NIC has this address and netmask, the kernel echo answers on it.
    Echo {
        /// The NIC's address.
        addr: Ipv4Addr,
        /// Its netmask.
        mask: Ipv4Addr,
    },
    /// The packet path alone: the NIC stays as in the driver VM (offloads off, no address, no
    /// ARP) and the uio-driver answers ARP, ping and UDP as a host at this address
    /// (`uio-driver --reflect`), to measure what that path carries without seL4.
    Reflect {
        /// The address the uio-driver answers for.
        addr: Ipv4Addr,
    },
}

/// `a.b.c.d/prefix` as address and netmask.
fn parse_cidr(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("netvm.ip={text}: expected a.b.c.d/prefix"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("netvm.ip={text}: {e}"))?;
    let prefix: u32 = match prefix.parse() {
        Ok(p @ 1..=32) => p,
        _ => return Err(format!("netvm.ip={text}: prefix must be 1..=32")),
    };
    Ok((addr, Ipv4Addr::from(u32::MAX << (32 - prefix))))
}

/// What `/init` takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The NIC's interface name.
    pub iface: String,
    /// Extra uio-driver arguments, in command-line order of each option's first word, with
    /// the value of its last.
    pub driver_args: Vec<String>,
    /// `netvm.mode=`, if given.
    mode: Option<String>,
    /// `netvm.ip=`, if given.
    ip: Option<String>,
    /// `netvm.debug` (or `netvm.debug=1`): test-only console commands are honoured.
    pub debug: bool,
    /// All words, for module parameters.
    words: Vec<String>,
}

impl Options {
    /// Parses `/proc/cmdline`'s contents.
    pub fn parse(line: &str) -> Options {
        let words = words(line);
        let mut iface = DEFAULT_IFACE.to_string();
        let mut driver_args = Vec::new();
        let (mut mode, mut ip) = (None, None);
        let mut debug = false;
        for w in &words {
            if w == "netvm.debug" || w == "netvm.debug=1" {
                debug = true;
            } else if let Some(v) = w.strip_prefix("netvm.iface=") {
                iface = v.to_string();
            } else if let Some(v) = w.strip_prefix("netvm.mode=") {
                mode = Some(v.to_string());
            } else if let Some(v) = w.strip_prefix("netvm.ip=") {
                ip = Some(v.to_string());
            } else if let Some(rest) = w.strip_prefix("uio_driver.") {
                let (k, v) = match rest.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (rest, None),
                };
                let flag = format!("--{}", k.replace('_', "-"));
                match driver_args.iter_mut().find(|(f, _)| *f == flag) {
                    Some(earlier) => earlier.1 = v,
                    None => driver_args.push((flag, v)),
                }
            }
        }
        let driver_args = driver_args
            .into_iter()
            .flat_map(|(f, v)| core::iter::once(f).chain(v))
            .collect();
        Options {
            iface,
            driver_args,
            mode,
            ip,
            debug,
            words,
        }
    }

    /// The mode `netvm.mode` and `netvm.ip` ask for, or why they do not make sense.
    pub fn mode(&self) -> Result<Mode, String> {
        match (self.mode.as_deref(), self.ip.as_deref()) {
            (None | Some("driver"), _) => Ok(Mode::Driver),
            (Some("echo"), Some(ip)) => {
                parse_cidr(ip).map(|(addr, mask)| Mode::Echo { addr, mask })
            }
            (Some("reflect"), Some(ip)) => parse_cidr(ip).map(|(addr, _)| Mode::Reflect { addr }),
            (Some(m @ ("echo" | "reflect")), None) => {
                Err(format!("netvm.mode={m} needs netvm.ip=a.b.c.d/prefix"))
            }
            (Some(other), _) => Err(format!(
                "netvm.mode={other}: expected driver, echo or reflect"
            )),
        }
    }

    /// `param=value ...` for module `module` (`-` and `_` are the same in module names, as
    /// for the kernel).
    pub fn module_params(&self, module: &str) -> String {
        let module = module.replace('-', "_");
        let mut params = Vec::new();
        for w in &self.words {
            if let Some((m, p)) = w.split_once('.') {
                if m.replace('-', "_") == module && p.contains('=') {
                    params.push(quote_value(p));
                }
            }
        }
        params.join(" ")
    }
}

/// `param=value` with the value re-quoted if it holds a space (the module parser splits on
/// unquoted spaces).
fn quote_value(p: &str) -> String {
    match p.split_once('=') {
        Some((k, v)) if v.contains(char::is_whitespace) => format!("{k}=\"{v}\""),
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_honour_quotes() {
        assert_eq!(words(" a  b=\"c d\" e\n"), vec!["a", "b=c d", "e"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("x=\"\""), vec!["x="]);
    }

    #[test]
    fn module_params_are_collected_per_module() {
        let o = Options::parse(
            "console=ttyAMA0 uio_pdrv_genirq.of_id=generic-uio virtio-net.napi_tx=1 \
             virtio_net.csum=0 uio.x vfoo.bar=\"a b\"",
        );
        assert_eq!(o.module_params("uio_pdrv_genirq"), "of_id=generic-uio");
        assert_eq!(o.module_params("virtio_net"), "napi_tx=1 csum=0");
        assert_eq!(o.module_params("uio"), "");
        assert_eq!(o.module_params("vfoo"), "bar=\"a b\"");
        assert_eq!(o.module_params("virtio_mmio"), "");
    }

    #[test]
    fn debug_is_off_unless_asked_for() {
        assert!(!Options::parse("console=ttyAMA0 panic=-1").debug);
        assert!(!Options::parse("netvm.debug=0 netvm.debugx").debug);
        assert!(Options::parse("panic=-1 netvm.debug").debug);
        assert!(Options::parse("netvm.debug=1").debug);
    }

    #[test]
    fn netvm_and_driver_options() {
        let o = Options::parse("netvm.iface=eth1 uio_driver.blocks=64 uio_driver.verbose");
        assert_eq!(o.iface, "eth1");
        assert_eq!(o.driver_args, vec!["--blocks", "64", "--verbose"]);
        assert_eq!(Options::parse("quiet").iface, DEFAULT_IFACE);
    }

    /// The image's defaults come first on its command line and `GUEST_APPEND`'s words after:
    /// the later word for an option wins (the uio-driver refuses an option given twice).
    #[test]
    fn a_later_driver_option_replaces_an_earlier_one() {
        let o = Options::parse(
            "uio_driver.driver_first=1 uio_driver.blocks=8 uio_driver.driver_first=0 uio_driver.verbose uio_driver.verbose",
        );
        assert_eq!(
            o.driver_args,
            vec!["--driver-first", "0", "--blocks", "8", "--verbose"]
        );
    }

    #[test]
    fn reference_mode() {
        assert_eq!(Options::parse("quiet").mode(), Ok(Mode::Driver));
        assert_eq!(
            Options::parse("netvm.mode=echo netvm.ip=10.0.0.20/24").mode(),
            Ok(Mode::Echo {
                addr: Ipv4Addr::new(10, 0, 0, 20),
                mask: Ipv4Addr::new(255, 255, 255, 0)
            })
        );
        assert!(Options::parse("netvm.mode=echo").mode().is_err());
        assert!(Options::parse("netvm.mode=echo netvm.ip=10.0.0.20")
            .mode()
            .is_err());
        assert!(Options::parse("netvm.mode=echo netvm.ip=10.0.0.20/33")
            .mode()
            .is_err());
        assert!(Options::parse("netvm.mode=bridge").mode().is_err());
        assert_eq!(
            Options::parse("netvm.mode=reflect netvm.ip=10.0.0.30/24 uio_driver.blocks=8").mode(),
            Ok(Mode::Reflect {
                addr: Ipv4Addr::new(10, 0, 0, 30)
            })
        );
        assert!(Options::parse("netvm.mode=reflect").mode().is_err());
        assert!(Options::parse("netvm.mode=reflect netvm.ip=10.0.0.300/24")
            .mode()
            .is_err());
    }
}
