#!/usr/bin/env python3
"""Generate netvm's top-level system.xml with the real sdfgen (0.35.x).

Usage: gen_system.py OUT.xml [OUT.macs]

The network part (queues, data regions, channels between the driver, the virtualisers, the
copiers and the clients) is sdfgen's own `Sddf.Net` with a generic driver: the driver is the VMM
PD, whose Linux guest runs the uio-driver. netvm derives every sDDF config blob from the
resulting file itself (`sdf::net`, tested byte-identical with sdfgen's), so this script only
writes the XML. The committed system.xml is this script's output; a test regenerates it and
compares.

Memory map of the driver VM (guest-physical; see also guest/ and pds/vmm/):
  0x0800_0000  GICD (emulated by the VMM, unmapped)    0x0801_0000  GICC <- GICV 0x0804_0000
  0x0900_0000  PL011 (passed through)                   0x0a00_0000  virtio-mmio NIC (bus.0, INTID 48)
  0x3000_0000  UIO window: the driver-side sDDF queues and data regions, one UIO region each
  0x3010_0000  rx_fault, 0x3010_1000 tx_fault: doorbell pages, deliberately unmapped
  0x9000_0000  guest RAM, 256 MiB, 1:1 with physical so the passed-through NIC can DMA into it
"""
import sys
import tempfile

from sdfgen import SystemDescription, Sddf

PD = SystemDescription.ProtectionDomain
MR = SystemDescription.MemoryRegion
Map = SystemDescription.Map

# Client name -> MAC; IP addresses live in each echo client's .echo_config (see netvm run).
CLIENTS = {"client0": "52:54:01:00:00:10", "client1": "52:54:01:00:00:11"}
GUEST_RAM = 0x9000_0000
GUEST_RAM_SIZE = 0x1000_0000
UIO_WINDOW = 0x3000_0000
VIRTIO_NET = 0x0A00_0000
VIRTIO_NET_IRQ = 48
# Priorities: the driver side above the virtualisers above the clients, as in sDDF's echo
# server, and the guest's vCPU high enough that it is never starved by the clients (libvmm's
# C driver VM ran it at 0).
PRIO = {"timer": 110, "vmm": 105, "vm": 104, "virt_tx": 100, "virt_rx": 99, "copier": 98, "client": 97}


def main(out: str, macs_out: str = "") -> None:
    sdf = SystemDescription(SystemDescription.Arch.AARCH64, GUEST_RAM)
    sddf = Sddf(tempfile.mkdtemp(prefix="empty-sddf-"))

    vmm = PD("vmm", "vmm.elf", priority=PRIO["vmm"], stack_size=0x10000)
    virt_rx = PD("net_virt_rx", "virt_rx.elf", priority=PRIO["virt_rx"], stack_size=0x40000)
    virt_tx = PD("net_virt_tx", "virt_tx.elf", priority=PRIO["virt_tx"], stack_size=0x40000)
    clients = [PD(c, "echo_server.elf", priority=PRIO["client"], stack_size=0x40000) for c in CLIENTS]
    copiers = [PD(f"{c}_net_copier", "copier.elf", priority=PRIO["copier"], stack_size=0x10000)
               for c in CLIENTS]
    for pd in [vmm, virt_rx, virt_tx, *copiers, *clients]:
        sdf.add_pd(pd)

    net = Sddf.Net(sdf, None, vmm, virt_tx, virt_rx)
    for client, copier in zip(clients, copiers):
        net.add_client_with_copier(client, copier, mac_addr=CLIENTS[client.name])
    assert net.connect()

    # The UIO window: every driver-side net region sdfgen made, mapped into the guest. The guest
    # finds them by name (see uio-driver/src/names.rs); the order here fixes their addresses.
    # Sizes as sdfgen makes them: 512-entry queues, a 1024-entry driver TX queue (the sum of the
    # clients' 512 TX buffers), 512 x 2 KiB data regions; the render checks they agree.
    queues = "generic/net/queue/vmm"
    uio = [(f"{queues}/net_virt_rx/free", queue_bytes(512)),
           (f"{queues}/net_virt_rx/active", queue_bytes(512)),
           (f"{queues}/net_virt_tx/free", queue_bytes(1024)),
           (f"{queues}/net_virt_tx/active", queue_bytes(1024)),
           ("generic/net/rx/data/device", 512 * 2048)]
    uio += [(f"generic/net/tx/data/client/{c}", 512 * 2048) for c in CLIENTS]

    # The driver VM: one vCPU, RAM 1:1, the NIC passed through, then the UIO window.
    vm = SystemDescription.VirtualMachine("linux", [SystemDescription.VirtualMachine.Vcpu(id=0)],
                                          priority=PRIO["vm"])
    ram = MR(sdf, "guest_ram", GUEST_RAM_SIZE, paddr=GUEST_RAM)
    sdf.add_mr(ram)
    vm.add_map(Map(ram, GUEST_RAM, "rwx"))
    vmm.add_map(Map(ram, 0x4000_0000, "rw", setvar_vaddr="guest_ram_vaddr"))
    for name, paddr, gpa in [("gic_vcpu", 0x0804_0000, 0x0801_0000), ("uart", 0x0900_0000, 0x0900_0000),
                             ("virtio_net", VIRTIO_NET, VIRTIO_NET)]:
        mr = MR(sdf, name, 0x1000, paddr=paddr)
        sdf.add_mr(mr)
        vm.add_map(Map(mr, gpa, "rw", cached=False))
    vaddr = UIO_WINDOW
    for name, size in uio:
        vm.add_map(Map(MR(sdf, name, size), vaddr, "rw", cached=False))
        vaddr += (size + 0xFFFF) & ~0xFFFF
    vmm.add_irq(SystemDescription.IrqConventional(
        VIRTIO_NET_IRQ, trigger=SystemDescription.IrqConventional.Trigger.EDGE))
    vmm.set_virtual_machine(vm)
    with open(out, "w") as f:
        f.write(sdf.render())
    if macs_out:
        with open(macs_out) as f:
            header = [line for line in f if line.startswith("#")]
        with open(macs_out, "w") as f:
            f.writelines(header)
            f.writelines(f"{c}={mac}\n" for c, mac in CLIENTS.items())


def queue_bytes(capacity: int) -> int:
    """A queue region's size: header and entries, rounded up to a page."""
    return (8 + 16 * capacity + 0xFFF) & ~0xFFF


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
