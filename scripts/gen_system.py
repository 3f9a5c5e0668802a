#!/usr/bin/env python3
"""Generate netvm's top-level system.xml with the real sdfgen (0.35.x).

Usage: gen_system.py OUT.xml [OUT.macs]

For tests of other topologies: NETVM_GEN_CLIENTS=N makes N echo clients (client0..client<N-1>,
MACs 52:54:01:00:00:1<i>) instead of the two of system.xml, and NETVM_GEN_BLOBS=DIR also writes
sdfgen's own serialised net config blobs into DIR (what `netvm run --sdfgen-dir DIR` reads).

The network part (queues, data regions, channels between the driver, the virtualisers, the
copiers and the clients) is sdfgen's own `Sddf.Net` with a generic driver: the driver is the VMM
PD, whose Linux guest runs the uio-driver. The timer part is sdfgen's `Sddf.Timer` with a
generic driver (our Rust `timer` PD, the ARM generic timer) serving the VMM (WFI wake-ups) and
both echo clients. The idle PD (pds/idle) counts idle time into a page the echo clients read.
netvm derives every config blob from the resulting file itself (`sdf::net`,
`guest-image`, from crates/system-plan), so this script only writes the XML. The committed system.xml is this script's
output; a test regenerates it and compares.

Each PD whose binary serves several PDs (copier, echo_server) gets its own image path
`<pd>/<binary>.elf`: the image build patches per-PD config sections into a copy there, while
`netvm run` takes only the file name (`echo_server`) from the host build.

Memory map of the driver VM (guest-physical; see also crates/system-plan/src/driver_vm.rs and pds/vmm/):
  0x0800_0000  GICD (emulated by the VMM, unmapped)    0x0801_0000  GICC <- GICV 0x0804_0000
  0x0900_0000  PL011 (passed through, INTID 33)
  0x0a00_3000  page of QEMU's last virtio-mmio transport 0x0a00_3e00 (INTID 79, edge): the NIC
               the *first* `-device virtio-net-device` gets, passed through
  0x3000_0000  UIO window: the driver-side sDDF queues and data regions, one UIO region each
  0x3f00_0000  rx_fault, 0x3f00_1000 tx_fault: doorbell pages, deliberately unmapped (chosen by
               `guest-image`, from crates/system-plan, which writes them into the guest DT and the VMM's .vmm_config)
  0x9000_0000  guest RAM, 256 MiB in 2 MiB pages, 1:1 with physical so the passed-through NIC
               can DMA into it; the VMM maps it at the same address to load the guest
"""
import os
import re
import sys
import tempfile

from sdfgen import SystemDescription, Sddf

PD = SystemDescription.ProtectionDomain
MR = SystemDescription.MemoryRegion
Map = SystemDescription.Map
Irq = SystemDescription.IrqConventional

# Client name -> MAC; IP addresses live in each echo client's .echo_config (see netvm run).
CLIENTS = {"client0": "52:54:01:00:00:10", "client1": "52:54:01:00:00:11"}
GUEST_RAM = 0x9000_0000
GUEST_RAM_SIZE = 0x1000_0000
GUEST_RAM_PAGE = 0x20_0000
UIO_WINDOW = 0x3000_0000
# Where the VMM maps the NIC's virtio-mmio registers, to reset the device before a restart.
VMM_NIC_REGS = 0x6000_0000
# QEMU virt: the first -device virtio-net-device gets the last of 32 transports.
VIRTIO_NET_PAGE = 0x0A00_3000
VIRTIO_NET_IRQ = 79
UART = 0x0900_0000
UART_IRQ = 33
# The EL1 physical timer: the one timer seL4 leaves to user level (the kernel uses the
# hypervisor timer, guests the virtual timer).
TIMER_IRQ = 30
# Where a component's counters region is mapped (above everything sdfgen places).
STATS_VADDR = 0x7000_0000
# Priorities: the timer above everyone (a passive server every PD may call), then the VMM (it
# must preempt its guest to handle its faults), virt_tx above virt_rx above the copiers above the
# clients, and the guest below all of them (above only the idle PD). A driver VM above the PDs it
# serves (as sDDF's native driver PD is) runs until its whole backlog is in rx_active: 512
# frames reached the clients at a time, overflowed them, and UDP echo collapsed above ~20 Mb/s
# under TCG (receive livelock). Below them, each doorbell lets the pipeline drain the batch
# before the guest takes more frames from the NIC, and overload is dropped at the NIC, where it
# is cheapest. The guest cannot starve: the PDs only run on its frames and their own timers.
PRIO = {"timer": 110, "vmm": 105, "vm": 90, "virt_tx": 100, "virt_rx": 99, "copier": 98, "client": 97,
        "idle": 1}
# The idle PD's counters page (pds/idle): rw in the idle PD, read-only in the echo clients, whose
# utilisation daemon reads it; both find it through the setvar `idle_counters`.
IDLE_COUNTERS_VADDR = 0x7100_0000
# Local delivery between clients (netvm_api::vswitch; sdfgen 0.35 does not know it): each
# copier's local queue pair from virt_tx, at LOCAL_QUEUES_VADDR + i * 0x2_0000 in virt_tx (copier
# i) and at LOCAL_QUEUES_VADDR in the copier (free, then active 0x1_0000 above); the other
# clients' TX data regions, read-only in each copier, at LOCAL_SOURCES_VADDR + j * 0x10_0000.
LOCAL_QUEUES_VADDR = 0x7200_0000
LOCAL_SOURCES_VADDR = 0x7400_0000


def clients_wanted() -> dict:
    """The clients to generate: system.xml's two, or NETVM_GEN_CLIENTS of them."""
    n = os.environ.get("NETVM_GEN_CLIENTS")
    if not n:
        return CLIENTS
    return {f"client{i}": f"52:54:01:00:00:{0x10 + i:02x}" for i in range(int(n))}


def main(out: str, macs_out: str = "") -> None:
    CLIENTS = clients_wanted()
    sdf = SystemDescription(SystemDescription.Arch.AARCH64, GUEST_RAM)
    sddf = Sddf(tempfile.mkdtemp(prefix="empty-sddf-"))

    timer = PD("timer", "timer.elf", priority=PRIO["timer"], passive=True, stack_size=0x2000)
    vmm = PD("vmm", "vmm.elf", priority=PRIO["vmm"], stack_size=0x10000)
    virt_rx = PD("net_virt_rx", "virt_rx.elf", priority=PRIO["virt_rx"], stack_size=0x40000)
    virt_tx = PD("net_virt_tx", "virt_tx.elf", priority=PRIO["virt_tx"], stack_size=0x40000)
    clients = [PD(c, f"{c}/echo_server.elf", priority=PRIO["client"], stack_size=0x40000)
               for c in CLIENTS]
    copiers = [PD(f"{c}_net_copier", f"{c}_net_copier/copier.elf", priority=PRIO["copier"],
                  stack_size=0x10000) for c in CLIENTS]
    for pd in [timer, vmm, virt_rx, virt_tx, *copiers, *clients]:
        sdf.add_pd(pd)

    net = Sddf.Net(sdf, None, vmm, virt_tx, virt_rx)
    for client, copier in zip(clients, copiers):
        net.add_client_with_copier(client, copier, mac_addr=CLIENTS[client.name])
    assert net.connect()
    if os.environ.get("NETVM_GEN_BLOBS"):
        os.makedirs(os.environ["NETVM_GEN_BLOBS"], exist_ok=True)
        assert net.serialise_config(os.environ["NETVM_GEN_BLOBS"])

    add_local_delivery(sdf, virt_tx, copiers, list(CLIENTS))

    timer_system = Sddf.Timer(sdf, None, timer)
    for client in [vmm, *clients]:
        timer_system.add_client(client)
    assert timer_system.connect()
    timer.add_irq(Irq(TIMER_IRQ, trigger=Irq.Trigger.LEVEL))

    # Counters: each virtualiser, copier and client publishes its own into `netvm/stats/<pd>`
    # (one page, mapped only into that PD; `sdf::net::stats_sections` derives its `.netvm_stats`
    # section, `netvm stats` reads the region in host mode). The VMM's is for host mode's
    # driver stand-in; on seL4 the guest's driver publishes into `netvm/stats/driver_vm` below.
    for pd in [vmm, virt_rx, virt_tx, *copiers, *clients]:
        stats = MR(sdf, f"netvm/stats/{pd.name}", 0x1000)
        sdf.add_mr(stats)
        pd.add_map(Map(stats, STATS_VADDR, "rw"))

    # Idle accounting: the idle PD runs at the lowest priority, i.e. exactly when no other PD
    # can, and counts that time into a page the echo clients read.
    idle = PD("idle", "idle.elf", priority=PRIO["idle"])
    sdf.add_pd(idle)
    idle_counters = MR(sdf, "netvm/idle_counters", 0x1000)
    sdf.add_mr(idle_counters)
    idle.add_map(Map(idle_counters, IDLE_COUNTERS_VADDR, "rw", setvar_vaddr="idle_counters"))
    for client in clients:
        client.add_map(Map(idle_counters, IDLE_COUNTERS_VADDR, "r", setvar_vaddr="idle_counters"))

    # The UIO window: every driver-side net region sdfgen made, mapped into the guest. The guest
    # finds them by name (`guest-image`, from crates/system-plan names them as sdf::net::driver_vm_regions says); the
    # order here fixes their addresses. Sizes as sdfgen makes them: 512-entry queues, a
    # 1024-entry driver TX queue (the sum of the clients' 512 TX buffers), 512 x 2 KiB data
    # regions; the render checks they agree.
    queues = "generic/net/queue/vmm"
    uio = [(f"{queues}/net_virt_rx/free", queue_bytes(512)),
           (f"{queues}/net_virt_rx/active", queue_bytes(512)),
           (f"{queues}/net_virt_tx/free", queue_bytes(1024)),
           (f"{queues}/net_virt_tx/active", queue_bytes(1024)),
           ("generic/net/rx/data/device", 512 * 2048)]
    uio += [(f"generic/net/tx/data/client/{c}", 512 * 2048) for c in CLIENTS]

    # The driver VM: one vCPU, RAM 1:1, the PL011 and the NIC passed through, the UIO window.
    vm = SystemDescription.VirtualMachine("linux", [SystemDescription.VirtualMachine.Vcpu(id=0)],
                                          priority=PRIO["vm"])
    ram = MR(sdf, "guest_ram", GUEST_RAM_SIZE, paddr=GUEST_RAM)
    sdf.add_mr(ram)
    vm.add_map(Map(ram, GUEST_RAM, "rwx"))
    vmm.add_map(Map(ram, GUEST_RAM, "rw", setvar_vaddr="guest_ram_vaddr",
                    setvar_size="guest_ram_size"))
    for name, paddr, gpa in [("gic_vcpu", 0x0804_0000, 0x0801_0000), ("uart", UART, UART),
                             ("virtio_net", VIRTIO_NET_PAGE, VIRTIO_NET_PAGE)]:
        mr = MR(sdf, name, 0x1000, paddr=paddr)
        sdf.add_mr(mr)
        vm.add_map(Map(mr, gpa, "rw", cached=False))
        if name == "virtio_net":
            # The VMM resets the NIC before it boots the guest again (a crashed guest leaves
            # the device DMAing into buffers that are the new guest's memory).
            vmm.add_map(Map(mr, VMM_NIC_REGS, "rw", cached=False, setvar_vaddr="nic_regs_vaddr"))
    # Least privilege: the driver only reads the clients' TX data (it transmits what they wrote,
    # as virt_tx, which maps them read-only too); queues and RX data it writes.
    vaddr = UIO_WINDOW
    for name, size in uio:
        perms = "r" if name.startswith("generic/net/tx/data/client/") else "rw"
        vm.add_map(Map(MR(sdf, name, size), vaddr, perms, cached=False))
        vaddr += (size + 0xFFFF) & ~0xFFFF
    # The guest driver's counters: one page after the UIO window (the optional `stats` UIO
    # device, netvm_api::uio::STATS), found by `netvm stats --qmp` like every PD's. The guest
    # writes it, so it is read as the untrusted guest's claim.
    driver_stats = MR(sdf, "netvm/stats/driver_vm", 0x1000)
    sdf.add_mr(driver_stats)
    vm.add_map(Map(driver_stats, vaddr, "rw", cached=False))
    vmm.add_irq(Irq(UART_IRQ, trigger=Irq.Trigger.LEVEL))
    vmm.add_irq(Irq(VIRTIO_NET_IRQ, trigger=Irq.Trigger.EDGE))
    vmm.set_virtual_machine(vm)

    xml = with_page_size(sdf.render(), "guest_ram", GUEST_RAM_PAGE)
    # Coherence: Linux maps UIO regions as Device memory, so the guest maps them uncached;
    # every PD that shares one maps it uncached too (sdfgen does so for the virtualisers' side
    # of a driver VM's queues; netvm extends it to the data regions, which Arm would otherwise
    # leave incoherent between a cached PD and the uncached guest). `sdf` rejects a mismatch.
    xml = uncached_everywhere(xml, [name for name, _ in uio])
    # sdfgen maps the device's RX data read-write into each copier, which only copies out of it
    # (pds/copier): read-only is enough.
    for copier in copiers:
        xml = with_map_attrs(xml, copier.name, "generic/net/rx/data/device", perms="r")
    with open(out, "w") as f:
        f.write(xml)
    if macs_out:
        with open(macs_out) as f:
            header = [line for line in f if line.startswith("#")]
        with open(macs_out, "w") as f:
            f.writelines(header)
            f.writelines(f"{c}={mac}\n" for c, mac in CLIENTS.items())


def add_local_delivery(sdf, virt_tx, copiers, clients) -> None:
    """Clients of the system reach each other without the frame leaving it: one more queue pair
    virt_tx -> each copier (`generic/net/vswitch/<copier>/{free,active}`, as many descriptors as
    the system has TX buffers), a channel between them, and every other client's TX data mapped
    read-only into the copier, which copies from there. `sdf::net::vswitch_sections` derives the
    PDs' `.netvm_vswitch` from these; without them local delivery is off."""
    capacity = 1 << (512 * len(clients) - 1).bit_length()
    for i, copier in enumerate(copiers):
        for k, end in enumerate(["free", "active"]):
            mr = MR(sdf, f"generic/net/vswitch/{copier.name}/{end}", queue_bytes(capacity))
            sdf.add_mr(mr)
            virt_tx.add_map(Map(mr, LOCAL_QUEUES_VADDR + i * 0x2_0000 + k * 0x1_0000, "rw"))
            copier.add_map(Map(mr, LOCAL_QUEUES_VADDR + k * 0x1_0000, "rw"))
        sdf.add_channel(SystemDescription.Channel(virt_tx, copier))
        for j, other in enumerate(clients):
            if j != i:
                tx = MR(sdf, f"generic/net/tx/data/client/{other}", 512 * 2048)
                copier.add_map(Map(tx, LOCAL_SOURCES_VADDR + j * 0x10_0000, "r"))


def with_page_size(xml: str, mr: str, page_size: int) -> str:
    """sdfgen 0.35's Python binding cannot set a region's page size; guest RAM needs 2 MiB pages
    (4 KiB pages would make the CapDL initialiser build 65536 frames at boot)."""
    head = f'<memory_region name="{mr}" '
    assert xml.count(head) == 1, f"expected one memory region {mr}"
    return xml.replace(head, f'{head}page_size="{page_size:#x}" ')


def with_map_attrs(xml: str, owner: str, mr: str, **attrs: str) -> str:
    """Sets attributes of the one map of `mr` in the PD or VM called `owner` (sdfgen 0.35 has no
    way to change the maps its Sddf.Net makes). sdfgen writes one element per line."""
    lines = xml.split("\n")
    owners, hits = [], []
    for i, line in enumerate(lines):
        opened = re.match(r'\s*<(protection_domain|virtual_machine) name="([^"]+)"', line)
        if opened:
            owners.append(opened.group(2))
        elif re.match(r"\s*</(protection_domain|virtual_machine)>", line):
            owners.pop()
        elif owners and owners[-1] == owner and f'<map mr="{mr}" ' in line:
            hits.append(i)
    assert len(hits) == 1, f"expected one map of {mr} in {owner}, found {len(hits)}"
    line = lines[hits[0]]
    for key, value in attrs.items():
        line, n = re.subn(f' {key}="[^"]*"', f' {key}="{value}"', line)
        if n == 0:
            line = line.replace(" />", f' {key}="{value}" />')
    lines[hits[0]] = line
    return "\n".join(lines)


def uncached_everywhere(xml: str, mrs: list) -> str:
    """Marks every map of the regions `mrs` uncached, in PDs and VMs alike."""
    lines = xml.split("\n")
    for i, line in enumerate(lines):
        mapped = re.match(r'\s*<map mr="([^"]+)" ', line)
        if mapped and mapped.group(1) in mrs:
            line, n = re.subn(r' cached="[^"]*"', ' cached="false"', line)
            lines[i] = line if n else line.replace(" />", ' cached="false" />')
    return "\n".join(lines)


def queue_bytes(capacity: int) -> int:
    """A queue region's size: header and entries, rounded up to a page."""
    return (8 + 16 * capacity + 0xFFF) & ~0xFFF


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
