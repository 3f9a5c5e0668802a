//! The other elements: program images, maps, IRQs, virtual machines, memory regions and
//! channels.

use std::path::PathBuf;

use roxmltree::Node;

use super::{Attr, Parser, Result};
use crate::error::SdfError;
use crate::model::{
    Channel, End, Irq, Map, MemoryRegion, Perms, ProgramImage, Trigger, Vcpu, VirtualMachine,
};

impl<'a, 'input: 'a> Parser<'a, 'input> {
    pub(super) fn program_image(&self, node: Node<'a, 'input>) -> Result<ProgramImage> {
        self.check_attributes(node, &["path", "path_for_symbols"])?;
        Ok(ProgramImage {
            path: PathBuf::from(self.required(node, "path")?.value),
            path_for_symbols: self
                .attr(node, "path_for_symbols")
                .map(|a| PathBuf::from(a.value)),
            pos: self.pos(node),
        })
    }

    pub(super) fn map(&self, node: Node<'a, 'input>, in_vm: bool) -> Result<Map> {
        const SETVARS: [&str; 3] = ["setvar_vaddr", "setvar_size", "setvar_prefill_size"];
        if in_vm {
            // The tool reports these as plain invalid attributes; say why instead.
            if let Some(a) = node
                .attributes()
                .find(|a| a.namespace().is_none() && SETVARS.contains(&a.name()))
            {
                return Err(SdfError::SetvarOnVmMap {
                    at: self.at(a.range().start),
                    attribute: a.name().to_string(),
                });
            }
            self.check_attributes(node, &["mr", "vaddr", "perms", "cached"])?;
        } else {
            let mut allowed = vec!["mr", "vaddr", "perms", "cached"];
            allowed.extend(SETVARS);
            self.check_attributes(node, &allowed)?;
        }
        let mr = self.required(node, "mr")?.value.to_string();
        let (vaddr, _) = self.number(node, "vaddr")?;
        let perms = match self.attr(node, "perms") {
            None => Perms::READ_WRITE,
            Some(attr) => {
                let mut perms = Perms {
                    read: false,
                    write: false,
                    execute: false,
                };
                for c in attr.value.chars() {
                    match c {
                        'r' => perms.read = true,
                        'w' => perms.write = true,
                        'x' => perms.execute = true,
                        _ => {
                            return Err(SdfError::BadPerms {
                                at: attr.pos,
                                value: attr.value.to_string(),
                            })
                        }
                    }
                }
                // Microkit: "the kernel does not allow write-only mappings" on any
                // architecture. `wx`, `rwx` and the empty string are accepted as the tool does.
                if perms.write && !perms.read && !perms.execute {
                    return Err(SdfError::WriteOnly { at: attr.pos });
                }
                perms
            }
        };
        let cached = self.bool_or(node, "cached", true)?;
        let text = |name| self.attr(node, name).map(|a| a.value.to_string());
        Ok(Map {
            mr,
            vaddr,
            perms,
            cached,
            setvar_vaddr: text("setvar_vaddr"),
            setvar_size: text("setvar_size"),
            setvar_prefill_size: text("setvar_prefill_size"),
            pos: self.pos(node),
        })
    }

    pub(super) fn irq(&self, node: Node<'a, 'input>) -> Result<Irq> {
        // x86 IOAPIC (`pin`) and MSI (`pcidev`) IRQs: the tool rejects them off x86.
        for (attribute, what) in [
            ("pin", "x86 I/O APIC irq (attribute 'pin')"),
            ("pcidev", "x86 MSI irq (attribute 'pcidev')"),
        ] {
            if let Some(attr) = self.attr(node, attribute) {
                return Err(SdfError::WrongArch {
                    at: attr.pos,
                    what: what.into(),
                    arch: self.config.arch.name(),
                });
            }
        }
        self.check_attributes(node, &["irq", "id", "setvar_id", "trigger"])?;
        let id = self.id(node, "irq")?;
        let (irq, at) = self.number(node, "irq")?;
        if irq > self.config.max_irq {
            return Err(SdfError::IrqOutOfRange {
                at,
                irq,
                max: self.config.max_irq,
            });
        }
        let trigger = match self.attr(node, "trigger") {
            None => Trigger::Level,
            Some(Attr { value: "level", .. }) => Trigger::Level,
            Some(Attr { value: "edge", .. }) => Trigger::Edge,
            Some(attr) => {
                return Err(SdfError::BadTrigger {
                    at: attr.pos,
                    value: attr.value.to_string(),
                })
            }
        };
        Ok(Irq {
            irq,
            id,
            trigger,
            setvar_id: self.attr(node, "setvar_id").map(|a| a.value.to_string()),
            pos: self.pos(node),
        })
    }

    pub(super) fn virtual_machine(&self, node: Node<'a, 'input>) -> Result<VirtualMachine> {
        self.check_attributes(node, &["name", "budget", "period", "priority"])?;
        let name = self.required(node, "name")?.value.to_string();
        let (priority, budget, period) = self.sched_params(node, "virtual_machine", &name)?;
        let mut vcpus: Vec<Vcpu> = Vec::new();
        let mut maps = Vec::new();
        for child in node.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "vcpu" => {
                    self.check_attributes(child, &["id", "setvar_id", "cpu"])?;
                    let id = self.id(child, "vcpu")?;
                    if vcpus.iter().any(|v| v.id == id) {
                        return Err(SdfError::DuplicateVcpu {
                            at: self.pos(child),
                            vm: name,
                            id,
                        });
                    }
                    // The tool reads `setvar_id` from the <virtual_machine> element here (a
                    // bug); the manual puts it on <vcpu>, and so does netvm.
                    vcpus.push(Vcpu {
                        id,
                        cpu: self.cpu(child)?,
                        setvar_id: self.attr(child, "setvar_id").map(|a| a.value.to_string()),
                        pos: self.pos(child),
                    });
                }
                "map" => maps.push(self.map(child, true)?),
                _ => return Err(self.unknown_element(child, node)),
            }
        }
        if vcpus.is_empty() {
            return Err(SdfError::MissingVcpu {
                at: self.pos(node),
                vm: name,
            });
        }
        Ok(VirtualMachine {
            name,
            priority,
            budget,
            period,
            vcpus,
            maps,
            pos: self.pos(node),
        })
    }

    pub(super) fn memory_region(&self, node: Node<'a, 'input>) -> Result<MemoryRegion> {
        self.check_attributes(
            node,
            &[
                "name",
                "size",
                "page_size",
                "phys_addr",
                "prefill_path",
                "prefill_bootinfo",
            ],
        )?;
        let name = self.required(node, "name")?.value.to_string();
        if let Some(attr) = self.attr(node, "prefill_bootinfo") {
            return Err(SdfError::NotSupported {
                at: attr.pos,
                what: "attribute 'prefill_bootinfo'".into(),
                reason: "boot-information contents exist only on seL4",
            });
        }
        let arch = self.config.arch;
        let page_size = match self.opt_number(node, "page_size")? {
            None => arch.small_page(),
            Some((size, _)) if arch.page_sizes().contains(&size) => size,
            Some((page_size, at)) => {
                return Err(SdfError::UnsupportedPageSize {
                    at,
                    mr: name,
                    page_size,
                    arch: arch.name(),
                })
            }
        };
        let prefill_path = self
            .attr(node, "prefill_path")
            .map(|a| PathBuf::from(a.value));
        let (size, size_at) = match self.opt_number(node, "size")? {
            Some(size) => size,
            None if prefill_path.is_some() => {
                return Err(SdfError::NotSupported {
                    at: self.pos(node),
                    what: "a prefilled memory_region without 'size'".into(),
                    reason: "the parser does not read prefill files, so the size must be given",
                })
            }
            None => {
                return Err(SdfError::MissingAttribute {
                    at: self.pos(node),
                    element: "memory_region".into(),
                    attribute: "size",
                })
            }
        };
        // netvm rule: the tool accepts an empty region, but nothing can map or share it.
        if size == 0 {
            return Err(SdfError::MrSizeZero {
                at: size_at,
                mr: name,
            });
        }
        if !size.is_multiple_of(page_size) {
            return Err(SdfError::MrSizeNotMultiple {
                at: size_at,
                mr: name,
                size,
                page_size,
            });
        }
        let phys_addr = match self.opt_number(node, "phys_addr")? {
            None => None,
            Some((paddr, at)) => {
                if !paddr.is_multiple_of(page_size) {
                    return Err(SdfError::PhysAddrUnaligned {
                        at,
                        mr: name,
                        phys_addr: paddr,
                        page_size,
                    });
                }
                if paddr.checked_add(size).is_none() {
                    return Err(SdfError::PhysRangeOverflow { at, mr: name });
                }
                Some(paddr)
            }
        };
        Ok(MemoryRegion {
            name,
            size,
            page_size,
            phys_addr,
            prefill_path,
            pos: self.pos(node),
        })
    }

    pub(super) fn channel(&self, node: Node<'a, 'input>) -> Result<Channel> {
        self.check_attributes(node, &[])?;
        let mut ends = Vec::with_capacity(2);
        for child in node.children().filter(Node::is_element) {
            if child.tag_name().name() != "end" {
                return Err(self.unknown_element(child, node));
            }
            ends.push(self.end(child)?);
        }
        let count = ends.len();
        let Ok(ends) = <[End; 2]>::try_from(ends) else {
            return Err(SdfError::ChannelEndCount {
                at: self.pos(node),
                count,
            });
        };
        if ends[0].pp && ends[1].pp {
            return Err(SdfError::PpBothEnds { at: self.pos(node) });
        }
        Ok(Channel {
            ends,
            pos: self.pos(node),
        })
    }

    pub(super) fn end(&self, node: Node<'a, 'input>) -> Result<End> {
        self.check_attributes(node, &["pd", "id", "pp", "notify", "setvar_id"])?;
        let pd = self.required(node, "pd")?.value.to_string();
        let id = self.id(node, "channel end")?;
        Ok(End {
            pd,
            id,
            notify: self.bool_or(node, "notify", true)?,
            pp: self.bool_or(node, "pp", false)?,
            setvar_id: self.attr(node, "setvar_id").map(|a| a.value.to_string()),
            pos: self.pos(node),
        })
    }
}
