#!/usr/bin/env python3
"""UDP and TCP echo traffic that must survive outages of the echo path (a driver restart).

Usage: echo_soak.py <server-ip> [--udp-port 1235] [--tcp-port 1236]

Runs until stdin closes or says `stop`:
- UDP: a probe every 20 ms to the UDP echo port (an 8-byte sequence number and 56 bytes of
  pattern); every echo is checked for content and duplicates.
- TCP: one connection to the TCP echo port; 1 KiB of a position-dependent pattern every 20 ms,
  every echoed byte checked against it.

Stdin lines `mark <name>` start an outage measurement: the first probe sent after the mark that
gets no echo within 1 s marks the outage; the first echo after that ends it, and the script
prints `recovered <name> after <seconds> s (<n> probes lost)`. At `stop` it stops sending,
waits up to 300 s for TCP to echo every byte sent, and prints one summary line:
`soak: udp sent S echoed E bad B dup D; tcp sent N echoed M bad K longest-stall X s` and exits
0 if TCP echoed everything with no bad byte and UDP had no bad or duplicate echo, 1 otherwise.
Prints `ready` once the TCP connection is up and a first UDP echo came back.
"""
import argparse
import select
import socket
import struct
import sys
import threading
import time

PROBE_INTERVAL = 0.02
TCP_CHUNK = 1024
LOST_AFTER = 1.0


def pattern(start, length):
    return bytes(((i * 7) ^ (i >> 9)) & 0xFF for i in range(start, start + length))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--udp-port", type=int, default=1235)
    ap.add_argument("--tcp-port", type=int, default=1236)
    a = ap.parse_args()

    lock = threading.Lock()
    state = {
        "udp_sent": 0, "udp_echoed": 0, "udp_bad": 0, "udp_dup": 0,
        "tcp_sent": 0, "tcp_echoed": 0, "tcp_bad": 0,
        "last_rx": time.monotonic(), "stall": 0.0,
        "mark": None, "outage": False, "lost": 0,
    }
    sent_at = {}
    seen = set()
    stop = threading.Event()
    sending = threading.Event()
    sending.set()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect((a.server, a.udp_port))
    udp.settimeout(0.2)
    deadline = time.monotonic() + 60
    while True:
        try:
            tcp = socket.create_connection((a.server, a.tcp_port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    tcp.settimeout(None)
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first_udp = threading.Event()

    def udp_send():
        seq = 0
        while sending.is_set():
            payload = struct.pack("!Q", seq) + pattern(seq, 56)
            with lock:
                sent_at[seq] = time.monotonic()
                state["udp_sent"] += 1
            try:
                udp.send(payload)
            except OSError:
                pass
            seq += 1
            time.sleep(PROBE_INTERVAL)

    def udp_recv():
        while not stop.is_set():
            try:
                data = udp.recv(2048)
            except socket.timeout:
                continue
            except OSError:
                continue
            now = time.monotonic()
            with lock:
                if len(data) != 64 or data[8:] != pattern(struct.unpack("!Q", data[:8])[0], 56):
                    state["udp_bad"] += 1
                    continue
                seq = struct.unpack("!Q", data[:8])[0]
                if seq in seen or seq not in sent_at:
                    state["udp_dup"] += 1
                    continue
                seen.add(seq)
                state["udp_echoed"] += 1
                if state["mark"] is not None and state["outage"]:
                    name, t0 = state["mark"]
                    print(f"recovered {name} after {now - t0:.2f} s ({state['lost']} probes lost)",
                          flush=True)
                    state["mark"] = None
                    state["outage"] = False
            first_udp.set()

    def outage_watch():
        while not stop.is_set():
            time.sleep(0.1)
            now = time.monotonic()
            with lock:
                if state["mark"] is None:
                    continue
                t0 = state["mark"][1]
                lost = [s for s, t in sent_at.items()
                        if t >= t0 and now - t > LOST_AFTER and s not in seen]
                state["lost"] = len(lost)
                if lost:
                    state["outage"] = True

    def tcp_send():
        pos = 0
        while sending.is_set():
            chunk = pattern(pos, TCP_CHUNK)
            try:
                tcp.sendall(chunk)
            except OSError as e:
                print(f"tcp send failed: {e}", flush=True)
                return
            pos += TCP_CHUNK
            with lock:
                state["tcp_sent"] = pos
            time.sleep(PROBE_INTERVAL)

    def tcp_recv():
        pos = 0
        while not stop.is_set():
            r, _, _ = select.select([tcp], [], [], 0.2)
            if not r:
                continue
            try:
                data = tcp.recv(65536)
            except OSError as e:
                print(f"tcp recv failed: {e}", flush=True)
                return
            if not data:
                print("tcp: the echo server closed the connection", flush=True)
                return
            now = time.monotonic()
            with lock:
                if data != pattern(pos, len(data)):
                    state["tcp_bad"] += sum(1 for x, y in zip(data, pattern(pos, len(data))) if x != y)
                pos += len(data)
                state["tcp_echoed"] = pos
                state["stall"] = max(state["stall"], now - state["last_rx"])
                state["last_rx"] = now

    threads = [threading.Thread(target=f, daemon=True)
               for f in (udp_send, udp_recv, outage_watch, tcp_send, tcp_recv)]
    for t in threads:
        t.start()
    if not first_udp.wait(30):
        print("no UDP echo within 30 s", flush=True)
        return 1
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "mark":
            with lock:
                state["mark"] = (" ".join(words[1:]), time.monotonic())
                state["outage"] = False
                state["lost"] = 0
        elif words[0] == "stop":
            break
    sending.clear()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with lock:
            if state["tcp_echoed"] >= state["tcp_sent"]:
                break
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    with lock:
        s = dict(state)
    print(f"soak: udp sent {s['udp_sent']} echoed {s['udp_echoed']} bad {s['udp_bad']} "
          f"dup {s['udp_dup']}; tcp sent {s['tcp_sent']} echoed {s['tcp_echoed']} "
          f"bad {s['tcp_bad']} longest-stall {s['stall']:.2f} s", flush=True)
    ok = (s["tcp_echoed"] == s["tcp_sent"] and s["tcp_bad"] == 0
          and s["udp_bad"] == 0 and s["udp_dup"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
