//! The kernel command line as `/init` reads it from `/proc/cmdline`.
//!
//! The kernel does not apply `<module>.<param>=` to loadable modules (modprobe normally does),
//! so `/init` collects them per module and hands them to `finit_module`. Its own options:
//! * `netvm.iface=<if>`: the NIC the uio-driver bridges (default `eth0`);
//! * `uio_driver.<option>=<value>`: passed to the uio-driver as `--<option> <value>` (`_` in
//!   the option read as `-`), e.g. `uio_driver.rx_capacity=256`.

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

/// What `/init` takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The NIC's interface name.
    pub iface: String,
    /// Extra uio-driver arguments, in command-line order.
    pub driver_args: Vec<String>,
    /// All words, for module parameters.
    words: Vec<String>,
}

impl Options {
    /// Parses `/proc/cmdline`'s contents.
    pub fn parse(line: &str) -> Options {
        let words = words(line);
        let mut iface = DEFAULT_IFACE.to_string();
        let mut driver_args = Vec::new();
        for w in &words {
            if let Some(v) = w.strip_prefix("netvm.iface=") {
                iface = v.to_string();
            } else if let Some(rest) = w.strip_prefix("uio_driver.") {
                match rest.split_once('=') {
                    Some((k, v)) => {
                        driver_args.push(format!("--{}", k.replace('_', "-")));
                        driver_args.push(v.to_string());
                    }
                    None => driver_args.push(format!("--{}", rest.replace('_', "-"))),
                }
            }
        }
        Options {
            iface,
            driver_args,
            words,
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
    fn netvm_and_driver_options() {
        let o = Options::parse("netvm.iface=eth1 uio_driver.rx_capacity=256 uio_driver.verbose");
        assert_eq!(o.iface, "eth1");
        assert_eq!(o.driver_args, vec!["--rx-capacity", "256", "--verbose"]);
        assert_eq!(Options::parse("quiet").iface, DEFAULT_IFACE);
    }
}
