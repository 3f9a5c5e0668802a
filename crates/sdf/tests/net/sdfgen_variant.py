#!/usr/bin/env python3
"""A second sdfgen 0.35 network system for crates/sdf/tests/net.rs: three clients, the middle one
without a copier (it reads the RX DMA region directly), so the driver's TX queue holds 3 x 512
buffers rounded up to 2048, and the PD names differ from scripts/sdfgen_net_system.py.

Usage: sdfgen_variant.py OUTDIR  (writes OUTDIR/net.system and sdfgen's .data blobs)
"""
import os
import sys
import tempfile

from sdfgen import SystemDescription, Sddf

# Fixed MACs so reruns give identical blobs; tests/net.rs passes the same list to the derivation.
CLIENTS = [
    ("echo_a", "copier_a", "52:54:01:00:00:20"),
    ("echo_b", None, "02:00:00:00:00:21"),
    ("echo_c", "copier_c", "52:54:01:00:00:22"),
]


def main(outdir: str) -> None:
    os.makedirs(outdir, exist_ok=True)
    sdf = SystemDescription(SystemDescription.Arch.AARCH64, 0x8000_0000)
    sddf = Sddf(tempfile.mkdtemp(prefix="empty-sddf-"))
    PD = SystemDescription.ProtectionDomain
    driver = PD("vmm", "vmm.elf", priority=110)
    virt_rx = PD("rx_virt", "virt_rx.elf", priority=108)
    virt_tx = PD("tx_virt", "virt_tx.elf", priority=109)
    sdf.add_pd(driver)
    sdf.add_pd(virt_tx)
    sdf.add_pd(virt_rx)
    net = Sddf.Net(sdf, None, driver, virt_tx, virt_rx)
    for name, copier_name, mac in CLIENTS:
        client = PD(name, "echo.elf", priority=100)
        sdf.add_pd(client)
        copier = None
        if copier_name is not None:
            copier = PD(copier_name, "copier.elf", priority=105)
            sdf.add_pd(copier)
        net.add_client_with_copier(client, copier, mac_addr=mac)
    assert net.connect()
    assert net.serialise_config(outdir)
    with open(os.path.join(outdir, "net.system"), "w") as f:
        f.write(sdf.render())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
