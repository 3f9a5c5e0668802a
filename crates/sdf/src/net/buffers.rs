//! Buffer counts other than sdfgen's defaults, as a user states them:
//! `rx=64,client_rx=64,client_tx=32` (a command-line value; commas or whitespace between
//! entries). sdfgen's Python binding cannot set them, so a system with other capacities gets
//! them from here, given once to every tool that derives configs (the seL4 image tool for the
//! PDs' sections and the guest's device tree, `netvm run` in host mode). The region sizes in the
//! system description are only checked to hold them ([`derive`](super::derive)).

use super::{NetError, NetSystemSpec};

/// Buffer counts to apply to a [`NetSystemSpec`]; `None` keeps the spec's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferCounts {
    /// RX DMA buffers ([`NetSystemSpec::rx_buffers`]): `rx=`.
    pub rx: Option<u16>,
    /// Every client's RX buffers: `client_rx=`.
    pub client_rx: Option<u16>,
    /// Every client's TX buffers: `client_tx=`.
    pub client_tx: Option<u16>,
}

impl BufferCounts {
    /// Parses `rx=N,client_rx=N,client_tx=N` (any subset, any order, each at most once; N a
    /// power of two from 2 to 32768, what an sDDF queue can hold).
    pub fn parse(text: &str) -> Result<BufferCounts, NetError> {
        let bad = |reason: String| NetError::BadBufferCounts {
            text: text.to_owned(),
            reason,
        };
        let mut out = BufferCounts::default();
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty());
        for entry in entries {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("'{entry}' is not key=count")))?;
            let n: u16 = value
                .parse()
                .ok()
                .filter(|n: &u16| *n >= 2 && n.is_power_of_two())
                .ok_or_else(|| {
                    bad(format!(
                        "{key}: '{value}' is not a power of two from 2 to 32768"
                    ))
                })?;
            let slot = match key {
                "rx" => &mut out.rx,
                "client_rx" => &mut out.client_rx,
                "client_tx" => &mut out.client_tx,
                _ => {
                    return Err(bad(format!(
                        "unknown key '{key}' (rx, client_rx, client_tx)"
                    )))
                }
            };
            if slot.replace(n).is_some() {
                return Err(bad(format!("{key} given twice")));
            }
        }
        Ok(out)
    }

    /// Sets the counts given in `self` on `spec` (every client alike).
    pub fn apply(&self, spec: &mut NetSystemSpec) {
        if let Some(n) = self.rx {
            spec.rx_buffers = n;
        }
        for client in &mut spec.clients {
            if let Some(n) = self.client_rx {
                client.rx_buffers = n;
            }
            if let Some(n) = self.client_tx {
                client.tx_buffers = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_subset_in_any_order() {
        let b = BufferCounts::parse("client_tx=32, rx=64\nclient_rx=64").unwrap();
        assert_eq!(
            b,
            BufferCounts {
                rx: Some(64),
                client_rx: Some(64),
                client_tx: Some(32)
            }
        );
        assert_eq!(BufferCounts::parse("").unwrap(), BufferCounts::default());
    }

    #[test]
    fn rejects_what_a_queue_cannot_hold_and_says_why() {
        for (text, why) in [
            ("rx=63", "power of two"),
            ("rx=1", "power of two"),
            ("rx=65536", "power of two"),
            ("rx=-2", "power of two"),
            ("tx=64", "unknown key 'tx'"),
            ("rx", "not key=count"),
            ("rx=64,rx=128", "rx given twice"),
        ] {
            let e = BufferCounts::parse(text).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn applies_to_every_client() {
        let mut spec = NetSystemSpec::new("generic", "drv", "vrx", "vtx");
        spec.clients.push(super::super::NetClientSpec::new(
            "a",
            None,
            [2, 0, 0, 0, 0, 1],
        ));
        spec.clients.push(super::super::NetClientSpec::new(
            "b",
            Some("cp"),
            [2, 0, 0, 0, 0, 2],
        ));
        BufferCounts::parse("rx=64,client_tx=32")
            .unwrap()
            .apply(&mut spec);
        assert_eq!(spec.rx_buffers, 64);
        assert!(spec
            .clients
            .iter()
            .all(|c| c.tx_buffers == 32 && c.rx_buffers == 512));
        assert_eq!(spec.driver_tx_buffers().unwrap().get(), 64);
    }
}
