//! The one section type of the tree: bytes for one ELF section of one PD, as the seL4 image
//! tool patches them into the PD's ELF and host mode writes them into the PD's manifest.

/// Bytes for one ELF section of one PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The PD's SDF name.
    pub pd: String,
    /// The ELF section's name, with its leading dot (e.g. `.net_client_config`).
    pub name: String,
    /// The bytes copied to the start of the section.
    pub bytes: Vec<u8>,
}

impl Section {
    /// Section `name` of PD `pd`, holding `bytes`.
    pub fn new(pd: impl Into<String>, name: impl Into<String>, bytes: Vec<u8>) -> Section {
        Section {
            pd: pd.into(),
            name: name.into(),
            bytes,
        }
    }
}
