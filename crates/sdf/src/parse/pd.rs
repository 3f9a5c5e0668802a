//! `<protection_domain>`: its attributes and child elements (nested PDs included).

use roxmltree::Node;

use super::{
    add_setvar, check_child_ids, Parser, Result, MAX_PDS, STACK_SIZE_DEFAULT, STACK_SIZE_MAX,
    STACK_SIZE_MIN,
};
use crate::error::SdfError;
use crate::model::{Irq, Map, ProgramImage, ProtectionDomain, SetVar, SetVarKind, VirtualMachine};

/// The child elements of a `<protection_domain>`.
struct PdChildren {
    program_image: Option<ProgramImage>,
    maps: Vec<Map>,
    irqs: Vec<Irq>,
    setvars: Vec<SetVar>,
    children: Vec<ProtectionDomain>,
    virtual_machine: Option<VirtualMachine>,
}

impl<'a, 'input: 'a> Parser<'a, 'input> {
    pub(super) fn protection_domain(
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
        let stack_size = self.stack_size(node, &name)?;

        let PdChildren {
            program_image,
            maps,
            irqs,
            setvars,
            children,
            virtual_machine,
        } = self.pd_children(node, &name)?;
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

    /// The `stack_size` attribute of PD `name`, checked against the tool's bounds and the page
    /// size; the default when absent.
    fn stack_size(&self, node: Node<'a, 'input>, name: &str) -> Result<u64> {
        Ok(match self.opt_number(node, "stack_size")? {
            None => STACK_SIZE_DEFAULT,
            Some((size, at)) => {
                if !(STACK_SIZE_MIN..=STACK_SIZE_MAX).contains(&size) {
                    return Err(SdfError::StackSizeOutOfRange {
                        at,
                        pd: name.to_string(),
                        stack_size: size,
                    });
                }
                let page_size = self.config.arch.small_page();
                if !size.is_multiple_of(page_size) {
                    return Err(SdfError::StackSizeUnaligned {
                        at,
                        pd: name.to_string(),
                        stack_size: size,
                        page_size,
                    });
                }
                size
            }
        })
    }

    /// The child elements of PD `name`, each setvar they carry recorded.
    fn pd_children(&mut self, node: Node<'a, 'input>, name: &str) -> Result<PdChildren> {
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
                            pd: name.to_string(),
                        });
                    }
                    program_image = Some(self.program_image(child)?);
                }
                "map" => maps.push(self.pd_map(child, name, &mut setvars)?),
                "irq" => {
                    let irq = self.irq(child)?;
                    if let Some(symbol) = &irq.setvar_id {
                        let at = self
                            .attr(child, "setvar_id")
                            .map_or(irq.pos.clone(), |a| a.pos);
                        add_setvar(&mut setvars, name, symbol, SetVarKind::Id(irq.id), at)?;
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
                    add_setvar(&mut setvars, name, symbol.value, kind, self.pos(child))?;
                }
                "protection_domain" => {
                    let child_pd = self.protection_domain(child, true)?;
                    if let (Some(symbol), Some(id)) = (&child_pd.setvar_id, child_pd.id) {
                        let at = self
                            .attr(child, "setvar_id")
                            .map_or(child_pd.pos.clone(), |a| a.pos);
                        add_setvar(&mut setvars, name, symbol, SetVarKind::Id(id), at)?;
                    }
                    children.push(child_pd);
                }
                "virtual_machine" => {
                    if virtual_machine.is_some() {
                        return Err(SdfError::DuplicateVirtualMachine {
                            at: self.pos(child),
                            pd: name.to_string(),
                        });
                    }
                    let vm = self.virtual_machine(child)?;
                    for vcpu in &vm.vcpus {
                        if let Some(symbol) = &vcpu.setvar_id {
                            add_setvar(
                                &mut setvars,
                                name,
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
        Ok(PdChildren {
            program_image,
            maps,
            irqs,
            setvars,
            children,
            virtual_machine,
        })
    }

    /// A PD's `<map>`, its `setvar_vaddr`, `setvar_size` and `setvar_prefill_size` recorded in
    /// `setvars`.
    fn pd_map(
        &self,
        child: Node<'a, 'input>,
        name: &str,
        setvars: &mut Vec<SetVar>,
    ) -> Result<Map> {
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
                add_setvar(setvars, name, attr.value, kind, attr.pos)?;
            }
        }
        Ok(map)
    }
}
