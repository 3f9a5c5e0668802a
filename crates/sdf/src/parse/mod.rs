//! XML → model, with every check that needs only the element at hand.
//!
//! Mirrors `tool/microkit/src/sdf.rs` (Microkit 2.3.0): the same elements, attributes, defaults
//! and per-element rules, reported at the offending attribute where one exists, else at the
//! element. Cross-element rules (names, ids, maps, channels) live in `validate`.

mod elements;
mod pd;

use std::path::Path;
use std::sync::Arc;

use roxmltree::{Document, Node};

use crate::config::Config;
use crate::error::SdfError;
use crate::model::{
    ProtectionDomain, SetVar, SetVarKind, SourcePos, SystemDescription, VirtualMachine,
};

/// Channel, IRQ, child-PD and vCPU ids are 0..=61: badge bits 63 and 62 mark PPCs and faults.
pub(crate) const PD_MAX_ID: u64 = 61;
/// The monitor runs at 255; PDs and VMs get at most 254.
const PD_MAX_PRIORITY: u64 = 254;
/// Microkit `MAX_PDS`: the monitor's tables have 63 entries.
pub(crate) const MAX_PDS: usize = 63;
const BUDGET_DEFAULT: u64 = 1000;
const STACK_SIZE_DEFAULT: u64 = 0x2000;
const STACK_SIZE_MIN: u64 = 0x1000;
const STACK_SIZE_MAX: u64 = 16 * 1024 * 1024;

/// Parses an SDF integer the way the Microkit tool does: every `_` is dropped, then a `0x`
/// prefix selects hexadecimal, otherwise decimal (`u64::from_str_radix`, so a leading `+` is
/// accepted too). Unlike the tool, netvm uses this for *every* numeric attribute; the tool
/// parses `id`, `irq` and a few others with `str::parse` and panics on anything but decimal.
pub fn parse_number(text: &str) -> Option<u64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match cleaned.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (cleaned.as_str(), 10),
    };
    u64::from_str_radix(digits, radix).ok()
}

/// An attribute's value and where it is.
struct Attr<'a> {
    value: &'a str,
    pos: SourcePos,
}

struct Parser<'a, 'input> {
    file: Arc<Path>,
    doc: &'a Document<'input>,
    config: &'a Config,
    /// PDs seen so far, top-level and nested. Checked against [`MAX_PDS`] as each PD starts,
    /// which also bounds the recursion depth of nested PDs on hostile input.
    pd_count: usize,
}

type Result<T> = std::result::Result<T, SdfError>;

/// Parses `text` into a model that still needs `validate::validate`.
pub(crate) fn parse_document(
    text: &str,
    file: Arc<Path>,
    config: &Config,
) -> Result<SystemDescription> {
    let doc = Document::parse(text).map_err(|err| {
        let pos = err.pos();
        SdfError::Xml {
            at: SourcePos {
                file: file.clone(),
                line: pos.row,
                col: pos.col,
            },
            // roxmltree appends " at row:col"; the position already leads the message.
            message: err
                .to_string()
                .trim_end_matches(&format!(" at {}:{}", pos.row, pos.col))
                .to_string(),
        }
    })?;
    let mut parser = Parser {
        file,
        doc: &doc,
        config,
        pd_count: 0,
    };
    parser.system(doc.root_element())
}

impl<'a, 'input: 'a> Parser<'a, 'input> {
    fn at(&self, byte: usize) -> SourcePos {
        let pos = self.doc.text_pos_at(byte);
        SourcePos {
            file: self.file.clone(),
            line: pos.row,
            col: pos.col,
        }
    }

    fn pos(&self, node: Node<'a, 'input>) -> SourcePos {
        self.at(node.range().start)
    }

    fn attr(&self, node: Node<'a, 'input>, name: &'static str) -> Option<Attr<'a>> {
        node.attributes()
            .find(|a| a.namespace().is_none() && a.name() == name)
            .map(|a| Attr {
                value: a.value(),
                pos: self.at(a.range().start),
            })
    }

    fn required(&self, node: Node<'a, 'input>, name: &'static str) -> Result<Attr<'a>> {
        self.attr(node, name)
            .ok_or_else(|| SdfError::MissingAttribute {
                at: self.pos(node),
                element: node.tag_name().name().to_string(),
                attribute: name,
            })
    }

    /// Rejects any attribute not in `allowed` (namespaced attributes are never allowed).
    fn check_attributes(&self, node: Node<'a, 'input>, allowed: &[&str]) -> Result<()> {
        for a in node.attributes() {
            if a.namespace().is_some() || !allowed.contains(&a.name()) {
                return Err(SdfError::UnknownAttribute {
                    at: self.at(a.range().start),
                    element: node.tag_name().name().to_string(),
                    attribute: a.name().to_string(),
                });
            }
        }
        Ok(())
    }

    fn number_of(
        &self,
        node: Node<'a, 'input>,
        name: &'static str,
        attr: &Attr<'a>,
    ) -> Result<u64> {
        parse_number(attr.value).ok_or_else(|| SdfError::BadInteger {
            at: attr.pos.clone(),
            element: node.tag_name().name().to_string(),
            attribute: name,
            value: attr.value.to_string(),
        })
    }

    /// A required number and the position of its attribute.
    fn number(&self, node: Node<'a, 'input>, name: &'static str) -> Result<(u64, SourcePos)> {
        let attr = self.required(node, name)?;
        Ok((self.number_of(node, name, &attr)?, attr.pos))
    }

    /// An optional number and the position of its attribute.
    fn opt_number(
        &self,
        node: Node<'a, 'input>,
        name: &'static str,
    ) -> Result<Option<(u64, SourcePos)>> {
        match self.attr(node, name) {
            Some(attr) => Ok(Some((self.number_of(node, name, &attr)?, attr.pos))),
            None => Ok(None),
        }
    }

    fn bool_or(&self, node: Node<'a, 'input>, name: &'static str, default: bool) -> Result<bool> {
        match self.attr(node, name) {
            None => Ok(default),
            Some(Attr { value: "true", .. }) => Ok(true),
            Some(Attr { value: "false", .. }) => Ok(false),
            Some(attr) => Err(SdfError::BadBool {
                at: attr.pos,
                element: node.tag_name().name().to_string(),
                attribute: name,
                value: attr.value.to_string(),
            }),
        }
    }

    /// An id attribute limited to 0..=61.
    fn id(&self, node: Node<'a, 'input>, what: &'static str) -> Result<u8> {
        let (id, at) = self.number(node, "id")?;
        match u8::try_from(id) {
            Ok(id) if u64::from(id) <= PD_MAX_ID => Ok(id),
            _ => Err(SdfError::IdOutOfRange { at, what, id }),
        }
    }

    fn cpu(&self, node: Node<'a, 'input>) -> Result<Option<u8>> {
        let Some((cpu, at)) = self.opt_number(node, "cpu")? else {
            return Ok(None);
        };
        match u8::try_from(cpu) {
            Ok(core) if core < self.config.num_cores => Ok(Some(core)),
            _ => Err(SdfError::CpuOutOfRange {
                at,
                cpu,
                num_cores: self.config.num_cores,
            }),
        }
    }

    /// Priority, budget and period shared by PDs and VMs.
    fn sched_params(
        &self,
        node: Node<'a, 'input>,
        element: &'static str,
        name: &str,
    ) -> Result<(u8, u64, u64)> {
        let budget = self
            .opt_number(node, "budget")?
            .map_or(BUDGET_DEFAULT, |(v, _)| v);
        let period = self.opt_number(node, "period")?.map_or(budget, |(v, _)| v);
        if budget > period {
            return Err(SdfError::BudgetExceedsPeriod {
                at: self.pos(node),
                element,
                name: name.to_string(),
                budget,
                period,
            });
        }
        let priority = match self.opt_number(node, "priority")? {
            None => 0,
            Some((p, _)) if p <= PD_MAX_PRIORITY => p as u8,
            Some((priority, at)) => {
                return Err(SdfError::PriorityOutOfRange {
                    at,
                    element,
                    name: name.to_string(),
                    priority,
                })
            }
        };
        Ok((priority, budget, period))
    }

    fn unknown_element(&self, child: Node<'a, 'input>, parent: Node<'a, 'input>) -> SdfError {
        SdfError::UnknownElement {
            at: self.pos(child),
            element: child.tag_name().name().to_string(),
            parent: parent.tag_name().name().to_string(),
        }
    }

    fn system(&mut self, system: Node<'a, 'input>) -> Result<SystemDescription> {
        if system.tag_name().name() != "system" {
            return Err(SdfError::NotASystem {
                at: self.pos(system),
                found: system.tag_name().name().to_string(),
            });
        }
        self.check_attributes(system, &[])?;
        // Like the tool: stray text anywhere is an error, so a typo such as `<map .../>>` is not
        // silently dropped.
        if let Some(text) = system
            .descendants()
            .find(|n| n.is_text() && n.text().is_some_and(|t| !t.trim().is_empty()))
        {
            return Err(SdfError::UnexpectedText {
                at: self.pos(text),
                element: text
                    .parent_element()
                    .map_or("system", |p| p.tag_name().name())
                    .to_string(),
            });
        }

        let mut protection_domains = Vec::new();
        let mut memory_regions = Vec::new();
        let mut channels = Vec::new();
        for child in system.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "protection_domain" => {
                    protection_domains.push(self.protection_domain(child, false)?)
                }
                "memory_region" => memory_regions.push(self.memory_region(child)?),
                "channel" => channels.push(self.channel(child)?),
                "virtual_machine" => {
                    return Err(SdfError::VirtualMachineAtTopLevel {
                        at: self.pos(child),
                    })
                }
                "domains" => {
                    return Err(SdfError::NotSupported {
                        at: self.pos(child),
                        what: "element 'domains'".into(),
                        reason: "the host runner has no seL4 domain scheduler to reproduce",
                    })
                }
                "io_address_space" => {
                    return Err(SdfError::WrongArch {
                        at: self.pos(child),
                        what: "element 'io_address_space' (IOMMU)".into(),
                        arch: self.config.arch.name(),
                    })
                }
                _ => return Err(self.unknown_element(child, system)),
            }
        }
        Ok(SystemDescription {
            pos: self.pos(system),
            protection_domains,
            memory_regions,
            channels,
        })
    }
}

/// Adds a setvar, rejecting a symbol the PD already patches.
pub(crate) fn add_setvar(
    setvars: &mut Vec<SetVar>,
    pd: &str,
    symbol: &str,
    kind: SetVarKind,
    at: SourcePos,
) -> Result<()> {
    if let Some(first) = setvars.iter().find(|s| s.symbol == symbol) {
        return Err(SdfError::DuplicateSetvar {
            at,
            pd: pd.to_string(),
            symbol: symbol.to_string(),
            first: first.pos.clone(),
        });
    }
    setvars.push(SetVar {
        symbol: symbol.to_string(),
        kind,
        pos: at,
    });
    Ok(())
}

/// Child-PD ids and vCPU ids share one namespace per parent: both are fault badges
/// (`1 << 62 | id`) on the parent's endpoint.
fn check_child_ids(
    pd: &str,
    children: &[ProtectionDomain],
    vm: Option<&VirtualMachine>,
) -> Result<()> {
    let mut uses: Vec<(u8, &SourcePos)> = children
        .iter()
        .filter_map(|c| c.id.map(|id| (id, &c.pos)))
        .chain(
            vm.into_iter()
                .flat_map(|vm| vm.vcpus.iter().map(|v| (v.id, &v.pos))),
        )
        .collect();
    // Report the later one in the document, pointing back at the earlier.
    uses.sort_by_key(|(_, pos)| (pos.line, pos.col));
    for (i, (id, at)) in uses.iter().enumerate() {
        if let Some((_, first)) = uses[..i].iter().find(|(other, _)| other == id) {
            return Err(SdfError::DuplicateChildId {
                at: (*at).clone(),
                pd: pd.to_string(),
                id: *id,
                first: (*first).clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_number;

    #[test]
    fn numbers_follow_the_microkit_tool() {
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x1000"), Some(0x1000));
        assert_eq!(parse_number("0x20_0000"), Some(0x20_0000));
        assert_eq!(parse_number("1_000"), Some(1000));
        assert_eq!(parse_number("+7"), Some(7));
        assert_eq!(parse_number("0xffff_ffff_ffff_ffff"), Some(u64::MAX));
        for bad in [
            "",
            "_",
            "0x",
            "0X10",
            "-1",
            "12a",
            "0x1g",
            "1.0",
            " 1",
            "0x1_0000_0000_0000_0000",
        ] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }
}
