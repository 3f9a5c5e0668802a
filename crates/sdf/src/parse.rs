//! XML → model, with every check that needs only the element at hand.
//!
//! Mirrors `tool/microkit/src/sdf.rs` (Microkit 2.3.0): the same elements, attributes, defaults
//! and per-element rules, reported at the offending attribute where one exists, else at the
//! element. Cross-element rules (names, ids, maps, channels) live in `validate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roxmltree::{Document, Node};

use crate::config::Config;
use crate::error::SdfError;
use crate::model::{
    Channel, End, Irq, Map, MemoryRegion, Perms, ProgramImage, ProtectionDomain, SetVar,
    SetVarKind, SourcePos, SystemDescription, Trigger, Vcpu, VirtualMachine,
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

    fn protection_domain(
        &mut self,
        node: Node<'a, 'input>,
        is_child: bool,
    ) -> Result<ProtectionDomain> {
        self.pd_count += 1;
        if self.pd_count > MAX_PDS {
            return Err(SdfError::TooManyPds {
                at: self.pos(node),
                max: MAX_PDS,
            });
        }
        const TOP_LEVEL: &[&str] = &[
            "name",
            "priority",
            "budget",
            "period",
            "passive",
            "stack_size",
            "smc",
            "cpu",
            "domain",
            "fpu",
        ];
        if is_child {
            let mut allowed = TOP_LEVEL.to_vec();
            allowed.extend(["id", "setvar_id"]);
            self.check_attributes(node, &allowed)?;
        } else {
            self.check_attributes(node, TOP_LEVEL)?;
        }
        let name = self.required(node, "name")?.value.to_string();
        let (id, setvar_id) = if is_child {
            let id = self.id(node, "child protection_domain")?;
            (Some(id), self.attr(node, "setvar_id"))
        } else {
            (None, None)
        };
        let (priority, budget, period) = self.sched_params(node, "protection_domain", &name)?;
        let passive = self.bool_or(node, "passive", false)?;
        let smc = self.bool_or(node, "smc", false)?;
        let fpu = self.bool_or(node, "fpu", true)?;
        let cpu = self.cpu(node)?.unwrap_or(0);
        if let Some(domain) = self.attr(node, "domain") {
            return Err(SdfError::NotSupported {
                at: domain.pos,
                what: "attribute 'domain'".into(),
                reason: "the host runner has no seL4 domain scheduler to reproduce",
            });
        }
        let stack_size = match self.opt_number(node, "stack_size")? {
            None => STACK_SIZE_DEFAULT,
            Some((size, at)) => {
                if !(STACK_SIZE_MIN..=STACK_SIZE_MAX).contains(&size) {
                    return Err(SdfError::StackSizeOutOfRange {
                        at,
                        pd: name,
                        stack_size: size,
                    });
                }
                let page_size = self.config.arch.small_page();
                if !size.is_multiple_of(page_size) {
                    return Err(SdfError::StackSizeUnaligned {
                        at,
                        pd: name,
                        stack_size: size,
                        page_size,
                    });
                }
                size
            }
        };

        let mut program_image = None;
        let mut maps = Vec::new();
        let mut irqs = Vec::new();
        let mut setvars = Vec::new();
        let mut children = Vec::new();
        let mut virtual_machine: Option<VirtualMachine> = None;
        for child in node.children().filter(Node::is_element) {
            match child.tag_name().name() {
                "program_image" => {
                    if program_image.is_some() {
                        return Err(SdfError::DuplicateProgramImage {
                            at: self.pos(child),
                            pd: name,
                        });
                    }
                    program_image = Some(self.program_image(child)?);
                }
                "map" => {
                    let map = self.map(child, false)?;
                    for (attribute, kind) in [
                        ("setvar_vaddr", SetVarKind::Vaddr(map.vaddr)),
                        ("setvar_size", SetVarKind::Size { mr: map.mr.clone() }),
                        (
                            "setvar_prefill_size",
                            SetVarKind::PrefillSize { mr: map.mr.clone() },
                        ),
                    ] {
                        if let Some(attr) = self.attr(child, attribute) {
                            add_setvar(&mut setvars, &name, attr.value, kind, attr.pos)?;
                        }
                    }
                    maps.push(map);
                }
                "irq" => {
                    let irq = self.irq(child)?;
                    if let Some(symbol) = &irq.setvar_id {
                        let at = self
                            .attr(child, "setvar_id")
                            .map_or(irq.pos.clone(), |a| a.pos);
                        add_setvar(&mut setvars, &name, symbol, SetVarKind::Id(irq.id), at)?;
                    }
                    irqs.push(irq);
                }
                "setvar" => {
                    self.check_attributes(child, &["symbol", "region_paddr"])?;
                    let symbol = self.required(child, "symbol")?;
                    let region = self.required(child, "region_paddr")?;
                    let kind = SetVarKind::RegionPaddr {
                        mr: region.value.to_string(),
                    };
                    add_setvar(&mut setvars, &name, symbol.value, kind, self.pos(child))?;
                }
                "protection_domain" => {
                    let child_pd = self.protection_domain(child, true)?;
                    if let (Some(symbol), Some(id)) = (&child_pd.setvar_id, child_pd.id) {
                        let at = self
                            .attr(child, "setvar_id")
                            .map_or(child_pd.pos.clone(), |a| a.pos);
                        add_setvar(&mut setvars, &name, symbol, SetVarKind::Id(id), at)?;
                    }
                    children.push(child_pd);
                }
                "virtual_machine" => {
                    if virtual_machine.is_some() {
                        return Err(SdfError::DuplicateVirtualMachine {
                            at: self.pos(child),
                            pd: name,
                        });
                    }
                    let vm = self.virtual_machine(child)?;
                    for vcpu in &vm.vcpus {
                        if let Some(symbol) = &vcpu.setvar_id {
                            add_setvar(
                                &mut setvars,
                                &name,
                                symbol,
                                SetVarKind::Id(vcpu.id),
                                vcpu.pos.clone(),
                            )?;
                        }
                    }
                    virtual_machine = Some(vm);
                }
                "cspace" => {
                    return Err(SdfError::NotSupported {
                        at: self.pos(child),
                        what: "element 'cspace'".into(),
                        reason: "extra capabilities in a PD's CSpace have no host-mode equivalent",
                    })
                }
                "ioport" => {
                    return Err(SdfError::WrongArch {
                        at: self.pos(child),
                        what: "element 'ioport' (x86 I/O ports)".into(),
                        arch: self.config.arch.name(),
                    })
                }
                _ => return Err(self.unknown_element(child, node)),
            }
        }
        let Some(program_image) = program_image else {
            return Err(SdfError::MissingProgramImage {
                at: self.pos(node),
                pd: name,
            });
        };
        check_child_ids(&name, &children, virtual_machine.as_ref())?;
        Ok(ProtectionDomain {
            name,
            id,
            setvar_id: setvar_id.map(|a| a.value.to_string()),
            priority,
            budget,
            period,
            passive,
            stack_size,
            cpu,
            smc,
            fpu,
            program_image,
            maps,
            irqs,
            setvars,
            children,
            virtual_machine,
            pos: self.pos(node),
        })
    }

    fn program_image(&self, node: Node<'a, 'input>) -> Result<ProgramImage> {
        self.check_attributes(node, &["path", "path_for_symbols"])?;
        Ok(ProgramImage {
            path: PathBuf::from(self.required(node, "path")?.value),
            path_for_symbols: self
                .attr(node, "path_for_symbols")
                .map(|a| PathBuf::from(a.value)),
            pos: self.pos(node),
        })
    }

    fn map(&self, node: Node<'a, 'input>, in_vm: bool) -> Result<Map> {
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

    fn irq(&self, node: Node<'a, 'input>) -> Result<Irq> {
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

    fn virtual_machine(&self, node: Node<'a, 'input>) -> Result<VirtualMachine> {
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

    fn memory_region(&self, node: Node<'a, 'input>) -> Result<MemoryRegion> {
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

    fn channel(&self, node: Node<'a, 'input>) -> Result<Channel> {
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

    fn end(&self, node: Node<'a, 'input>) -> Result<End> {
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
