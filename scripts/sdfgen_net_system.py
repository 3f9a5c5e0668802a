#!/usr/bin/env python3
"""Generate a small sDDF 0.7 network system with the real sdfgen, for interop tests.

Usage: sdfgen_net_system.py OUTDIR

Writes OUTDIR/net.system (the Microkit system description), the serialised config blobs
(net_driver.data, net_virt_rx.data, net_virt_tx.data, net_copy_<copier>.data,
net_client_<client>.data, <driver>_device_resources.data) and OUTDIR/expected.json: what the
Rust decoder must find, taken from sdfgen's own objects (map vaddrs, channel ids), never typed in.
"""
import json
import os
import sys
import tempfile

from sdfgen import SystemDescription, Sddf

# Fixed MACs so reruns give identical blobs (sdfgen picks random ones otherwise).
CLIENT_MACS = {"client0": "52:54:01:00:00:10", "client1": "52:54:01:00:00:11"}


def main(outdir: str) -> None:
    os.makedirs(outdir, exist_ok=True)
    sdf = SystemDescription(SystemDescription.Arch.AARCH64, 0x6000_0000)
    # No sDDF checkout and no device node: the driver is "generic", as for a driver VM whose
    # VMM PD plays the driver (sdfgen accepts an empty sDDF directory for this).
    sddf = Sddf(tempfile.mkdtemp(prefix="empty-sddf-"))
    PD = SystemDescription.ProtectionDomain
    driver = PD("driver_vm", "vmm.elf", priority=101)
    virt_rx = PD("net_virt_rx", "virt_rx.elf", priority=99)
    virt_tx = PD("net_virt_tx", "virt_tx.elf", priority=100)
    clients = [PD(name, "echo.elf", priority=97) for name in CLIENT_MACS]
    copiers = [PD(f"{name}_net_copier", "copier.elf", priority=98) for name in CLIENT_MACS]
    for pd in [driver, virt_rx, virt_tx, *clients, *copiers]:
        sdf.add_pd(pd)
    net = Sddf.Net(sdf, None, driver, virt_tx, virt_rx)
    for client, copier in zip(clients, copiers):
        net.add_client_with_copier(client, copier, mac_addr=CLIENT_MACS[client.name])
    assert net.connect()
    assert net.serialise_config(outdir)
    system = sdf.render()
    with open(os.path.join(outdir, "net.system"), "w") as f:
        f.write(system)
    expected = {
        "macs": CLIENT_MACS,
        "clients": [c.name for c in clients],
        "copiers": [c.name for c in copiers],
        "driver": driver.name,
    }
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
