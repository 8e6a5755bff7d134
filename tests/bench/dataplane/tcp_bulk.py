#!/usr/bin/python3
# Bulk TCP throughput, both directions: Herald's stack (herald-tcpbulk on net_af_packet, one
# adaptive-polling thread) against Linux in a namespace, and Linux against Linux over an
# equivalent veth pair between two namespaces, with the same Python peer on the Linux end and
# the same Python server standing in for herald-tcpbulk. A benchmark, not a test (root).
#
# Linux <-> Linux runs twice: with the veth's default offloads (TSO/GSO, checksum offload: 64 KB
# super-segments cross the veth) and with them off on the sending side, as the DPDK path needs
# (every segment one MTU-sized frame with a software checksum): the fair comparison.
#
# Usage (repository root, as root):
#   tests/bench/dataplane/tcp_bulk.py BUILD-bulk-rel/tools/tcpbulk/herald-tcpbulk [MiB] [runs]
# Prints one row per setup and direction: the median of `runs` (default 3) Mbit/s, as the
# Linux client measured it (connect to EOF), and every run's figure.
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration"))
import dpdk_tcp_bulk as t  # noqa: E402

PID = os.getpid() % 100000
SRV_NS, SRV_IF = f"hbs{PID}", f"hbsi{PID}"  # Linux <-> Linux: the server's namespace
CLI_NS, CLI_IF = f"hbc{PID}", f"hbci{PID}"
SRV_IP, CLI_IP = "10.208.0.1", "10.208.0.2"
PEER = os.path.abspath(t.__file__)


def linux_pair(offloads):
    t.sh(f"ip netns del {SRV_NS}", check=False)
    t.sh(f"ip netns del {CLI_NS}", check=False)
    t.sh(f"ip netns add {SRV_NS}")
    t.sh(f"ip netns add {CLI_NS}")
    t.sh(f"ip link add {SRV_IF} netns {SRV_NS} type veth peer name {CLI_IF} netns {CLI_NS}")
    for ns, ifname, ip in ((SRV_NS, SRV_IF, SRV_IP), (CLI_NS, CLI_IF, CLI_IP)):
        t.sh(f"ip netns exec {ns} ip link set lo up")
        t.sh(f"ip netns exec {ns} ip addr add {ip}/24 dev {ifname}")
        t.sh(f"ip netns exec {ns} ip link set {ifname} up")
        if not offloads:
            t.sh(f"ip netns exec {ns} /usr/bin/python3 -c '{t.TX_OFF_SCRIPT}' {ifname}")


def linux_pair_delete():
    t.sh(f"ip netns del {SRV_NS}", check=False)
    t.sh(f"ip netns del {CLI_NS}", check=False)


def linux_run(direction, nbytes, port):
    role = "sink" if direction == "up" else "source"
    server = subprocess.Popen(
        ["ip", "netns", "exec", SRV_NS, "/usr/bin/python3", PEER, "--peer", "server", "--role",
         role, "--host", SRV_IP, "--port", str(port), "--bytes", str(nbytes), "--seed", "3"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        args = ["--role", "send", "--bytes", nbytes, "--seed", 5] if direction == "up" \
            else ["--role", "recv"]
        client = t.peer(CLI_NS, "--host", SRV_IP, "--port", port, *args)
        out, _ = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    theirs = json.loads(out.strip().splitlines()[-1])
    assert theirs["sha256"] == client["sha256"] and client["bytes"] == nbytes
    return client["mbit_s"]


def herald_run(binary, direction, nbytes, port):
    mode = "sink" if direction == "up" else "source"
    extra = ["--bytes", str(nbytes), "--seed", "3"] if direction == "down" else []
    tool = t.Tool(binary, port, mode, extra, tag=f"b{port}")
    try:
        args = ["--role", "send", "--bytes", nbytes, "--seed", 5] if direction == "up" \
            else ["--role", "recv"]
        client = t.peer(t.NS, "--host", t.STACK_IP, "--port", port, *args)
        ours = tool.result()
    finally:
        tool.stop()
    assert ours["sha256"] == client["sha256"] and client["bytes"] == nbytes
    return client["mbit_s"]


def main():
    if len(sys.argv) < 2 or os.geteuid() != 0:
        print("usage (root): tcp_bulk.py HERALD_TCPBULK [MiB=64] [runs=3]", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    nbytes = int(sys.argv[2] if len(sys.argv) > 2 else 64) << 20
    runs = int(sys.argv[3] if len(sys.argv) > 3 else 3)
    rows = []
    port = 6000
    try:
        t.make_namespace(t.NS, t.HOST_IF, t.NS_IF, t.NS_IP)
        for direction in ("up", "down"):
            figures = []
            for _ in range(runs):
                figures.append(herald_run(binary, direction, nbytes, port))
                port += 1
            rows.append(("herald stack (af_packet)", direction, figures))
    finally:
        t.delete_namespace(t.NS, t.HOST_IF)
    for offloads, name in ((False, "linux, offloads off"), (True, "linux, default offloads")):
        try:
            linux_pair(offloads)
            time.sleep(0.5)
            for direction in ("up", "down"):
                figures = []
                for _ in range(runs):
                    figures.append(linux_run(direction, nbytes, port))
                    port += 1
                rows.append((name, direction, figures))
        finally:
            linux_pair_delete()
    print(f"{nbytes >> 20} MiB per transfer, median of {runs}; up = Linux client sends, "
          f"down = Linux client receives; Mbit/s at the Linux client")
    print(f"{'setup':28} {'dir':5} {'median':>8}   runs")
    for name, direction, figures in rows:
        print(f"{name:28} {direction:5} {statistics.median(figures):8.0f}   "
              f"{' '.join(f'{f:.0f}' for f in figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
