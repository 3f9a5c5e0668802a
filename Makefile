# netvm's seL4 image: system.xml on Microkit 2.3.0, board qemu_virt_aarch64.
#
#   make [MICROKIT_SDK=/path/to/microkit-sdk-2.3.0] [MICROKIT_CONFIG=debug|release|benchmark]
#       (without MICROKIT_SDK: the SDK scripts/sdk.sh unpacked, named in .cache/sdk.env)
#       builds every PD for aarch64-unknown-none, the guest (Debian kernel, our initramfs with
#       /init and the aarch64 uio-driver), the guest's device tree and every PD's config
#       sections from system.xml (`guest-image sel4-dtb`, `guest-image sel4-pds`), and build/loader.img.
#   make qemu    boots build/loader.img (BOOT_IMAGE=... boots another Microkit image); the NIC's
#                backend is a tap in the private network namespace $(NETNS) (host side
#                $(HOST_IP)), never slirp. Needs root. QEMU's monitor (QMP) listens on $(QMP)
#                (default build/qmp.sock).
#   make qemu-reference  the reference, Linux alone: the guest's kernel booted directly on the
#                same machine and NIC (no seL4), the kernel echo on $(REF_IP) (static).
#                REF_MODE=reflect: the NIC as in the driver VM and the uio-driver's reflector
#                answering for $(REF_IP) (the packet path alone; UDP, ARP and ping only).
#                REF_APPEND adds kernel options (`netvm sel4-demo --reference reflect` passes
#                the driver VM's tuning, system_plan::GUEST_KERNEL_TUNING).
#   make stats   prints every PD's counters (the VMM's included) from the running QEMU:
#                `netvm stats --qmp $(QMP)`, which finds the stats pages in guest RAM.
#                STATS_ARGS adds options (e.g. --watch 1).
#   make bench   runs `netvm bench` from $(NETNS) against client0 (QEMU must be running: `make qemu`
#                in another terminal). BENCH_ARGS adds options (e.g. --rates 10M,50M).
#   make clean   removes build/sel4 and build/loader.img (not the guest's Debian cache).
#
# Echo clients get ECHO_IPS; those named in ECHO_PEERS also originate echo traffic to their peers
# (e.g. ECHO_PEERS=client1=node1+10.0.2.10/udp=32x256@1000; add /msg=10.0.255.1 for node
# messaging with the master there; see echo_api::peers). The MACs come
# from system.macs. Everything derived from
# system.xml is derived by crates/system-plan and written by the `guest-image` tool, not written here.

# The SDK that scripts/sdk.sh found (scripts/setup.sh runs it), unless MICROKIT_SDK is given.
ifeq ($(origin MICROKIT_SDK),undefined)
-include $(CURDIR)/.cache/sdk.env
endif

MICROKIT_BOARD ?= qemu_virt_aarch64
# The system to build, and its clients' MACs.
SYSTEM ?= system.xml
MACS ?= system.macs
# Buffer counts other than sdfgen's defaults (sdf::net::BufferCounts, e.g.
# rx=64,client_rx=64,client_tx=32), for the PDs' configs and the guest's device tree alike.
BUFFERS ?=
MICROKIT_CONFIG ?= debug
NETNS ?= netvm-sel4
TAP ?= tap0
HOST_IP ?= 10.0.0.1/24
ECHO_IPS ?= client0=10.0.0.10/24,client1=10.0.0.11/24
ECHO_PEERS ?=
BENCH_TARGET ?= 10.0.0.10
BENCH_ARGS ?=
QEMU_RAM ?= 2G
QMP ?= $(CURDIR)/build/qmp.sock
STATS_ARGS ?=
GUEST_FLAGS ?=
CARGO ?= cargo
QEMU ?= qemu-system-aarch64
NIC_MAC ?= 52:54:00:12:34:56
REF_IP ?= 10.0.0.20/24
REF_MODE ?= echo
# Words added to the driver VM's kernel command line (guest-image sel4-dtb --append), e.g.
# uio_driver.busy_poll_us=300 (a uio-driver option) or, for the packet path inside the seL4 VM,
# netvm.mode=reflect netvm.ip=10.0.0.10/24 (the clients then get no frames), or for the sDDF side
# alone uio_driver.loopback=10.0.0.1,10.0.0.10,52:54:01:00:00:10,64 (BENCHMARKS.md, issue #18).
GUEST_APPEND ?=
REF_APPEND ?=

# The tap hands the guest frames with partial checksums when virtio-net offers checksum
# offload; Linux would fix them up, but the uio-driver forwards raw frames to smoltcp, which
# checks every checksum. So the NIC offers no receive offloads.
NIC_OFFLOADS_OFF := guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off
# QEMU's virtio-net TX mitigation: with tx=timer the device takes the guest's transmit queue every
# 150 us instead of on every kick, so a burst of frames costs one wake-up of QEMU's I/O thread
# rather than one per frame (UDP 1472 B at 50 Mb/s requested: 40.7 vs 26.4 Mb/s echoed in one
# session, BENCHMARKS.md). NIC_TX= restores QEMU's default (tx=bh).
NIC_TX ?= tx=timer
# Receive buffers: with mrg_rxbuf=off Linux's virtio_net fills its ring with whole-frame buffers
# and builds each skb around the buffer itself, instead of allocating a separate head and
# copying the first 128 bytes (mergeable buffers). The driver VM echoed ~4% more UDP 1472 B at
# saturation, in four of four interleaved pairs (BENCHMARKS.md, issue #18). sDDF's own virtio
# driver negotiates only VIRTIO_NET_F_MAC, so a native image on the same machine is unaffected.
# NIC_RX= restores QEMU's default.
NIC_RX ?= mrg_rxbuf=off
# Which virtio-mmio slot the NIC takes (QEMU's default: the last free one, where system.xml expects
# it). sDDF's own virtio driver expects slot 0: NIC_BUS=virtio-mmio-bus.0 (netvm sel4-demo
# --peer-image sets it).
NIC_BUS ?=
# QEMU's NIC backend: the tap in $(NETNS) by default; `netvm lan` passes vde,id=n0,sock=DIR to put
# the NIC on its VDE switch (one image per node, each with its own MACS=, ECHO_IPS=, OUT=, IMAGE=).
NETDEV ?= tap,id=n0,ifname=$(TAP),script=no,downscript=no

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
SEL4_TARGET_DIR := $(TARGET_DIR)/sel4-$(MICROKIT_CONFIG)
ELF_DIR := $(SEL4_TARGET_DIR)/aarch64-unknown-none/release
BUILD := $(CURDIR)/build
OUT ?= $(BUILD)/sel4/$(MICROKIT_CONFIG)
GUEST_DIR := $(BUILD)/guest
GUEST_TOOL := $(TARGET_DIR)/release/guest-image
NETVM := $(TARGET_DIR)/release/netvm
IMAGE ?= $(BUILD)/loader.img
# What `make qemu` boots: the image built here, or any other Microkit image of this board.
BOOT_IMAGE ?= $(IMAGE)
PD_PACKAGES := -p timer -p idle -p virt-rx -p virt-tx -p copier -p echo-server
SEL4_ENV := MICROKIT_SDK=$(MICROKIT_SDK) MICROKIT_BOARD=$(MICROKIT_BOARD) MICROKIT_CONFIG=$(MICROKIT_CONFIG)

comma := ,
# The machine and its NIC, shared by the seL4 image and the reference (Linux alone), so that the
# two are measured on the same emulated hardware.
QEMU_MACHINE := $(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -m size=$(QEMU_RAM) -nographic \
	-serial mon:stdio -nic none -global virtio-mmio.force-legacy=false \
	-netdev $(NETDEV) \
	-device virtio-net-device,netdev=n0,mac=$(NIC_MAC),$(NIC_OFFLOADS_OFF)$(if $(NIC_TX),$(comma)$(NIC_TX))$(if $(NIC_RX),$(comma)$(NIC_RX))$(if $(NIC_BUS),$(comma)bus=$(NIC_BUS)) \
	-qmp unix:$(QMP),server=on,wait=off
QEMU_CMD := $(QEMU_MACHINE) -device loader,file=$(BOOT_IMAGE),addr=0x70000000,cpu-num=0
# The reference: the guest's kernel and initramfs booted directly (no seL4, QEMU's own device
# tree), /init in its reference mode running the kernel echo on REF_IP (or, REF_MODE=reflect,
# the uio-driver's reflector).
REF_CMD := $(QEMU_MACHINE) -kernel $(GUEST_DIR)/Image -initrd $(GUEST_DIR)/initrd.cpio.gz \
	-append "console=ttyAMA0 panic=-1 netvm.mode=$(REF_MODE) netvm.ip=$(REF_IP) $(REF_APPEND)"

.PHONY: all check-sdk guest tools pds image qemu qemu-reference bench stats netns clean

all: image

check-sdk:
ifeq ($(strip $(MICROKIT_SDK)),)
	$(error MICROKIT_SDK is not set: run scripts/setup.sh (it finds the SDK) or make MICROKIT_SDK=/path/to/microkit-sdk-2.3.0)
endif
	@test -x "$(MICROKIT_SDK)/bin/microkit" || { echo "MICROKIT_SDK=$(MICROKIT_SDK): no bin/microkit there; expected a Microkit 2.3.0 SDK" >&2; exit 1; }
	@test -d "$(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)" || { echo "MICROKIT_SDK=$(MICROKIT_SDK) has no board $(MICROKIT_BOARD) config $(MICROKIT_CONFIG) (MICROKIT_CONFIG is debug, release or benchmark)" >&2; exit 1; }
	@grep -q '^2\.3\.0' "$(MICROKIT_SDK)/VERSION" 2>/dev/null || { echo "MICROKIT_SDK=$(MICROKIT_SDK) is not Microkit 2.3.0 (VERSION: $$(cat $(MICROKIT_SDK)/VERSION 2>/dev/null || echo missing))" >&2; exit 1; }

# The host tool that builds the guest and derives the seL4 pieces from system.xml.
tools:
	$(CARGO) build --release -p guest-image --bin guest-image

# Kernel, initramfs (with the workspace's aarch64 uio-driver, cross-built by the tool).
guest: tools
	$(GUEST_TOOL) build --out $(GUEST_DIR) $(GUEST_FLAGS)

# Every PD but the VMM (which embeds the guest, so it comes after the device tree).
pds: check-sdk
	$(SEL4_ENV) $(CARGO) build --release --target aarch64-unknown-none $(PD_PACKAGES) \
		--target-dir $(SEL4_TARGET_DIR)

image: check-sdk guest pds
	mkdir -p $(OUT)
	$(GUEST_TOOL) sel4-dtb --system $(SYSTEM) --macs @$(MACS) $(if $(BUFFERS),--buffers $(BUFFERS)) --initrd $(GUEST_DIR)/initrd.cpio.gz \
		$(if $(filter debug,$(MICROKIT_CONFIG)),--debug) $(if $(GUEST_APPEND),--append "$(GUEST_APPEND)") --out $(OUT)/guest.dtb
	$(SEL4_ENV) VMM_GUEST_KERNEL=$(GUEST_DIR)/Image VMM_GUEST_INITRD=$(GUEST_DIR)/initrd.cpio.gz \
		VMM_GUEST_DTB=$(OUT)/guest.dtb \
		$(CARGO) build --release --target aarch64-unknown-none -p vmm --bin vmm --target-dir $(SEL4_TARGET_DIR)
	rm -rf $(OUT)/pds
	$(GUEST_TOOL) sel4-pds --system $(SYSTEM) --macs @$(MACS) $(if $(BUFFERS),--buffers $(BUFFERS)) --echo-ips $(ECHO_IPS) \
		$(if $(ECHO_PEERS),--echo-peers '$(ECHO_PEERS)') --elf-dir $(ELF_DIR) --out $(OUT)/pds
	$(MICROKIT_SDK)/bin/microkit $(SYSTEM) --search-path $(OUT)/pds --board $(MICROKIT_BOARD) \
		--config $(MICROKIT_CONFIG) -o $(IMAGE) -r $(OUT)/report.txt
	@echo "built $(IMAGE) ($(MICROKIT_CONFIG)); boot it with: make qemu"

# The peer network: namespace $(NETNS) with the tap QEMU attaches to (created once, kept);
# HOST_IP= (empty) leaves the tap unaddressed.
netns:
	@ip netns list | grep -qx '$(NETNS)\( .*\)\?' || ip netns add $(NETNS)
	@ip -n $(NETNS) link show $(TAP) >/dev/null 2>&1 || ip -n $(NETNS) tuntap add dev $(TAP) mode tap
	@$(if $(strip $(HOST_IP)),ip -n $(NETNS) addr replace $(HOST_IP) dev $(TAP),true)
	@ip -n $(NETNS) link set lo up
	@ip -n $(NETNS) link set $(TAP) up

qemu: netns
	@test -f $(BOOT_IMAGE) || { echo "no $(BOOT_IMAGE): run make MICROKIT_SDK=... first" >&2; exit 1; }
	mkdir -p $(dir $(QMP))
	ip netns exec $(NETNS) $(QEMU_CMD)

qemu-reference: netns
	@test -f $(GUEST_DIR)/Image || { echo "no $(GUEST_DIR)/Image: run make MICROKIT_SDK=... first" >&2; exit 1; }
	mkdir -p $(dir $(QMP))
	ip netns exec $(NETNS) $(REF_CMD)

# QEMU must be running (`make qemu` in another terminal) with the same QEMU_RAM.
stats:
	$(CARGO) build --release -p netvm
	$(NETVM) stats --qmp $(QMP) --ram-size $(QEMU_RAM) $(STATS_ARGS)

bench: netns
	$(CARGO) build --release -p netvm
	ip netns exec $(NETNS) $(NETVM) bench --target $(BENCH_TARGET) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)/sel4 $(IMAGE)
