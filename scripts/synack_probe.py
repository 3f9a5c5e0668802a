#!/usr/bin/env python3
"""SYN-ACK retransmission probe: does a TCP server's own clock and timeout work?

Usage: synack_probe.py <ifname> <server-ip> <port> <seconds>

From 10.0.0.99 (MAC 02:00:00:00:00:99, answering ARP for it itself) it sends one SYN, never
answers the SYN-ACK, and waits for the SYN-ACK to come again (same acknowledgement); then it
resets the half-open connection. Prints one `synack-probe:` line; exit status 1 when no
retransmission came within the time given. Only a server that wakes up by itself (a timer)
retransmits: nothing else reaches it. Used by netvm/tests/host_e2e.rs (host mode) and
tests/pipeline/tests/sel4_system.rs (seL4 on QEMU); needs root for the raw socket.
"""
import os, socket, struct, sys, time
ifname, server, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ME_MAC = bytes.fromhex("020000000099")
ME_IP = socket.inet_aton("10.0.0.99")
SRV_IP = socket.inet_aton(server)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((ifname, 0))
s.settimeout(0.5)
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
def arp(op, dst, tha, tpa):
    return dst + ME_MAC + b"\x08\x06" + struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, ME_MAC, ME_IP, tha, tpa)
def tcp(dst, sport, seq, flags):
    hdr = struct.pack("!HHIIBBHHH", sport, port, seq, 0, 5 << 4, flags, 8192, 0, 0)
    pseudo = ME_IP + SRV_IP + struct.pack("!BBH", 0, 6, len(hdr))
    hdr = hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(hdr), 1, 0, 64, 6, 0, ME_IP, SRV_IP)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst + ME_MAC + b"\x08\x00" + ip + hdr
sport, isn = 40000 + os.getpid() % 20000, 1000
srv_mac, synacks = None, []
deadline = time.time() + float(sys.argv[4])
s.send(arp(1, b"\xff" * 6, b"\0" * 6, SRV_IP))
while time.time() < deadline and len(synacks) < 2:
    try:
        f = s.recv(2048)
    except socket.timeout:
        if srv_mac is None:
            s.send(arp(1, b"\xff" * 6, b"\0" * 6, SRV_IP))
        continue
    if f[12:14] == b"\x08\x06" and len(f) >= 42:
        op = struct.unpack("!H", f[20:22])[0]
        if op == 2 and f[28:32] == SRV_IP and srv_mac is None:
            srv_mac = f[22:28]
            s.send(tcp(srv_mac, sport, isn, 0x02))
        elif op == 1 and f[38:42] == ME_IP:
            s.send(arp(2, f[6:12], f[22:28], f[28:32]))
    elif f[12:14] == b"\x08\x00" and f[23] == 6 and f[26:30] == SRV_IP and f[30:34] == ME_IP:
        t = f[14 + (f[14] & 0xF) * 4:]
        sp, dp, seq, ack, off, flags = struct.unpack("!HHIIBB", t[:14])
        if sp == port and dp == sport and flags & 0x12 == 0x12 and ack == isn + 1:
            synacks.append((time.time(), seq))
if srv_mac is not None:
    s.send(tcp(srv_mac, sport, isn + 1, 0x04))
if len(synacks) < 2:
    print("synack-probe: %d SYN-ACK(s), no retransmission" % len(synacks))
    sys.exit(1)
(t1, s1), (t2, s2) = synacks
print("synack-probe: SYN-ACK retransmitted after %.0f ms (same seq: %s)" % ((t2 - t1) * 1000, s1 == s2))
