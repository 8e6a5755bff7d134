#!/usr/bin/python3
"""A soak of the dataplane's DPDK backend: one herald-dataplane (one worker, a net_memif server
port) stays up while rounds of herald-loadgen processes in DPDK client mode (Herald's own stack
at both ends, no kernel socket) connect many sessions, hold them, exchange messages and leave:

- every round: one-to-one over SESSIONS sessions (Poisson arrivals at a low rate for IDLE_S
  seconds: the sessions are mostly idle between messages), then group (groups of 8) over a
  tenth of them;
- every second round also churns: a reconnect storm (every connection dropped at once and
  opened again) over a tenth of them (at most STORM_MAX).

Each loadgen's exactly-once verdict must hold (lost 0, duplicates 0, every session logged in)
and no session may stall (every message sent was acknowledged, no settle timeout). After each
round the dataplane is idle again and its levels must be back where the first round left them
(the baseline: the first round grows the allocator's arenas, caches and tables once):

- exactly: the TCP engine's blocks (every state: half-open, TIME-WAIT), its SYN queue and its
  ring bytes, the transport's, TLS's, the sessions' and the router's objects, the router's
  pending messages, the mbufs out of the DPDK pool, the ARP queue's balance (every frame queued
  for resolution released or dropped);
- within a tolerance: the heap in use by live objects (dp.process.heap_in_use_bytes less the
  TCP buffer pools' caches; HEAP_TOLERANCE_*), the leak check proper, also against its reading
  before the first session (START_HEAP_TOLERANCE_*: what the sessions held goes back, not only
  what a later round would reuse), and the process's RSS
  (RSS_TOLERANCE_*), which also counts what the allocator keeps free for reuse
  (dp.process.heap_free_bytes, reported). Neither in a sanitizer build, where LeakSanitizer
  checks the dataplane's exit instead.

Scale (env): HERALD_SOAK_SESSIONS (default 100,000; 2,000 in a sanitizer build),
HERALD_SOAK_ROUNDS (default 2), HERALD_SOAK_IDLE_S (default 10). A long run:
HERALD_SOAK_SESSIONS=300000 HERALD_SOAK_ROUNDS=6 HERALD_SOAK_IDLE_S=60.

Root only (two DPDK EALs and a memif socket): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_soak.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import json
import mmap
import os
import sys
import tempfile
import time

import herald_node
from dataplane_dpdk_netns import MemifNode, gauge, loadgen_verdict, wait_for

STACK_IP = "10.77.0.1"
LOADGEN_IP = "10.77.0.2"
PORTS_PER_ADDRESS = 25_000  # the loadgen's ephemeral ports per address, with room to spare
# The churn: every connection of a reconnect storm dropped at once and opened again. Its old
# connections hold their ports in the loadgen's TIME-WAIT meanwhile, so it gets twice the
# addresses; and at most this many at once: the loadgen closing more in one turn overflows its
# own transmit slots (a loadgen limit, docs/PERFORMANCE.md), and a 30,000 storm stalled 36
# messages on its side (tx_slots_exhausted 12,784) while the dataplane was idle.
STORM_MAX = 10_000

# Back to the baseline exactly once the round's sessions are gone (gauges).
EXACT = (
    "dp.tcp.connection_blocks", "dp.tcp.time_wait_blocks", "dp.tcp.syn_queue_length",
    "dp.tcp.buffer_bytes_in_use", "dp.tcp.block_bytes_held", "dp.transport.connections",
    "dp.tls.connections",
    "dp.worker.sessions", "dp.router.sessions", "dp.router.pending_messages",
    "dp.store.pending_appends", "dp.store.held_appends", "dp.dpdk.mempool.mbufs_in_use",
)
# TIME-WAIT as compact table entries (no block), where the engine has that table: exact too.
OPTIONAL_EXACT = ("dp.tcp.time_wait_entries",)
# Reported each round, bounded caches (not expected back to the baseline: they keep entries).
REPORTED = ("dp.device_lists.cached", "dp.groups.cached", "dp.tcp.buffer_bytes_cached",
            "dp.dpdk.mempool.mbufs_free")
# Counters printed per round (deltas): how the sessions ended and what the link lost.
ENDINGS = ("dp.dpdk.transport.accepted", "dp.tcp.rst_received", "dp.tcp.aborted_retransmit",
           "dp.tcp.segments_retransmitted", "dp.dpdk.tx_ring_full_drops",
           "dp.session.idle_timeout", "dp.tcp.challenge_acks", "dp.tcp.challenge_acks_rate_limited",
           "dp.tcp.drop_rst_out_of_window", "dp.tcp.drop_rst_no_connection")
# How long the levels may take to return after a round: a reset or passive close ends at once
# (the loadgen resets every connection at exit), a TIME-WAIT (a close the dataplane started)
# after 2*MSL = 60 s, a half-open connection after its SYN-ACK retransmissions (63 s). A
# session whose peer vanished unannounced (a reset lost on the way) is not back in time: the
# idle timeout (limits.idle_timeout_ms, 300 s) reaps it, then its close is retransmitted to
# nobody for minutes; the round fails, and its counters (dp.session.idle_timeout later,
# dp.tcp.rst_received against the loadgen's exit_resets now) say so.
SETTLE_S = 90
# RSS against the first round's: freed session, TLS and TCP memory goes back to the allocator,
# which keeps it for reuse (glibc's arenas and the size-classed pools' caches do not return
# every page to the kernel), and its fragmentation differs a little from round to round. A
# leak grows with the sessions of each round: one byte per session per round is invisible in
# a fixed tolerance, but a leak of a connection's smallest object (the 352 B TCP block) over
# 100,000 sessions is 34 MiB per round, past it.
RSS_TOLERANCE_FRACTION = 0.05
RSS_TOLERANCE_MIB = 16
# The heap in use (dp.process.heap_in_use_bytes, mallinfo2) against the first round's, less the
# TCP buffer pools' caches (reported apart): what live objects hold. Freed memory the allocator
# keeps does not count here (dp.process.heap_free_bytes), so this is the leak check proper;
# the tolerance covers the device-list cache filling towards its cap, the group table (it
# holds every group; each round's group run adds sessions/80 of them, a few hundred bytes
# each) and tables sized by their peak.
HEAP_TOLERANCE_FRACTION = 0.02
HEAP_TOLERANCE_MIB = 8
# The same heap against its reading before any session: the peak's per-session memory must go
# back (emptied TCP block chunks are freed), not only stay for reuse. The tolerance covers what
# rightly stays (the group table, the device-list cache, hash tables' buckets sized by their
# peak: about 35 B a session measured); the 352 B TCP block of every departed session, kept
# until 2026-11-29, is 34 MiB at 100,000 sessions, past it.
START_HEAP_TOLERANCE_FRACTION = 0.02
START_HEAP_TOLERANCE_MIB = 16
# dataplane.heap_trim_free_mb for the soak (the default is 128).
HEAP_TRIM_FREE_MB = 32
# The supervisor samples the heap every second: a reading this long after the levels settled
# is of the settled heap.
HEAP_SAMPLE_WAIT_S = 2.5


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def sanitized(binary):
    """True for an ASan build (its runtime's entry point is in the binary)."""
    with open(binary, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return m.find(b"__asan_init") >= 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class SoakNode(MemifNode):
    """A MemifNode sized for `sessions` at once, with its levels read after each round."""

    def __init__(self, controlplane, dataplane, tmp, sessions):
        # No mbuf per connection: received bytes are copied into TCP's pooled rings, so the
        # pool does not scale with the sessions (and a leak shows at once).
        super().__init__(controlplane, dataplane, tmp, "soak", STACK_IP,
                         max_connections=sessions + 1000,
                         dpdk_extra={"mbufs_per_connection": 0},
                         # Free heap past this goes back to the kernel (malloc_trim): low
                         # enough that every round's departures pass it.
                         dataplane_extra={"heap_trim_free_mb": HEAP_TRIM_FREE_MB})

    def levels(self):
        """The gauges (absent is a failure: a missing name would read 0 and pass), the ARP
        queue's balance and the RSS."""
        values = self.counters()
        out = {}
        for name in EXACT + REPORTED:
            out[name] = gauge(values, name)
        for name in OPTIONAL_EXACT:
            if "herald_" + name.replace(".", "_") in values:
                out[name] = gauge(values, name)
        queued = herald_node.metric(values, "dp.net.arp_queued")
        out["arp_queue_balance"] = int(queued - sum(herald_node.metric(values, n) for n in (
            "dp.net.arp_released", "dp.net.drop.arp_resolution_failed",
            "dp.net.drop.arp_evicted")))
        for name in ENDINGS:
            out[name] = int(herald_node.metric(values, name))
        out["rss_kib"] = rss_kib(self.dp.pid)
        heap = gauge(values, "dp.process.heap_in_use_bytes")
        out["heap_live_kib"] = (heap - out["dp.tcp.buffer_bytes_cached"]) // 1024
        out["heap_free_kib"] = gauge(values, "dp.process.heap_free_bytes") // 1024
        out["heap_trims"] = int(herald_node.metric(values, "dp.process.heap_trims"))
        out["heap_trim_released_kib"] = int(
            herald_node.metric(values, "dp.process.heap_trim_released_bytes")) // 1024
        return out


def run_loadgen(loadgen, node, scenario, connections, prefix, *extra,
                ports_per_address=PORTS_PER_ADDRESS):
    """One loadgen process: connects, runs `scenario`, leaves (resets every connection at
    exit). Its verdict, plus no stalled session."""
    addresses = max(1, -(-connections // ports_per_address))
    args = [*node.loadgen_memif_args(loadgen, LOADGEN_IP, memory_mb=512),
            "--dpdk-addresses", str(addresses), "--scenario", scenario,
            "--connections", str(connections), "--phone-prefix", prefix,
            "--connect-timeout", "900", "--settle-timeout", "60", *extra]
    started = time.monotonic()
    result = loadgen_verdict(args, f"{scenario} x{connections}", connections,
                             timeout_s=1800 + connections // 100)
    # A stalled session: a message it sent never acknowledged, or a settle that ran out.
    if result["acked"] != result["sent"]:
        raise AssertionError(f"{scenario}: sent {result['sent']}, acked {result['acked']}")
    # (A handshake_timeout is a login retried under load, counted and printed, not a stall.)
    stalls = {k: v for k, v in (result.get("errors") or {}).items() if k == "settle_timeout"}
    if stalls:
        raise AssertionError(f"{scenario}: {stalls}")
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def exact_names(levels):
    return EXACT + tuple(n for n in OPTIONAL_EXACT if n in levels) + ("arp_queue_balance",)


def settle(node, baseline, deadline_s):
    """Polls the levels until the exact ones equal the baseline (or time is up); the last."""
    deadline = time.monotonic() + deadline_s
    while True:
        now = node.levels()
        if all(now.get(k) == baseline.get(k) for k in exact_names(baseline)):
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def check_heap(r, levels, reference, name, fraction, mib, verdict):
    """The heap in use by live objects after round r against a reference reading's, within
    `fraction` of it plus `mib`."""
    limit = reference["heap_live_kib"] * (1 + fraction) + mib * 1024
    if levels["heap_live_kib"] > limit:
        raise AssertionError(f"round {r + 1}: heap in use {levels['heap_live_kib']} KiB, "
                             f"{name} {reference['heap_live_kib']} KiB, limit {limit:.0f}: "
                             f"{verdict}")


def idle_levels(node):
    """The first round's end: nothing open (every gauge of a connection at 0, the pool's
    in-use count steady; TCP keeps one emptied block chunk as a spare), then the whole set."""
    deadline = time.monotonic() + SETTLE_S
    previous = None
    while True:
        now = node.levels()
        quiet = all(now[k] == 0 for k in exact_names(now)
                    if k not in ("dp.dpdk.mempool.mbufs_in_use", "arp_queue_balance",
                                 "dp.tcp.block_bytes_held"))
        if quiet and previous is not None and \
                previous["dp.dpdk.mempool.mbufs_in_use"] == now["dp.dpdk.mempool.mbufs_in_use"]:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"not idle {SETTLE_S} s after the first round: {now}")
        previous = now
        time.sleep(1)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("skipped: needs root (two DPDK EALs and a memif socket)")
        return 77
    controlplane, dataplane, loadgen = sys.argv[1:4]
    small = sanitized(dataplane)
    sessions = env_int("HERALD_SOAK_SESSIONS", 2_000 if small else 100_000)
    rounds = env_int("HERALD_SOAK_ROUNDS", 2)
    idle_s = env_int("HERALD_SOAK_IDLE_S", 10)
    assert sessions >= 100 and rounds >= 2 and idle_s >= 1, "HERALD_SOAK_*: too small"
    side = max(16, sessions // 10)  # the group and churn runs
    rate = max(100, min(5_000, sessions // 50))
    print(f"soak: {rounds} rounds x {sessions} sessions, idle {idle_s} s, rate {rate}/s"
          f"{' (sanitizer build)' if small else ''}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        with SoakNode(controlplane, dataplane, tmp, sessions) as node:
            try:
                # The worker registers its names when it attaches to the counters segment.
                wait_for("the dataplane's gauges", lambda: all(
                    "herald_" + n.replace(".", "_") in node.counters() for n in EXACT))
                if not small:  # the supervisor's first heap sample (the worker is built)
                    wait_for("the first heap reading", lambda: node.levels()["heap_live_kib"] > 0)
                    time.sleep(HEAP_SAMPLE_WAIT_S)
                start = node.levels()
                print(f"start: {json.dumps(start)}", flush=True)
                baseline = None
                counted = start
                for r in range(rounds):
                    t0 = time.monotonic()
                    # New accounts every round (+1<round><index>): the last round's are gone.
                    prefix = f"+1{r % 100:02d}"
                    one = run_loadgen(loadgen, node, "one-to-one", sessions, prefix + "0",
                                      "--rate", str(rate), "--duration", str(idle_s))
                    group = run_loadgen(loadgen, node, "group", side, prefix + "1",
                                        "--group-size", "8", "--rate", str(min(rate, 1000)),
                                        "--duration", "3")
                    runs = [one, group]
                    if r % 2 == 1:
                        storm = run_loadgen(loadgen, node, "reconnect-storm",
                                            min(side, STORM_MAX), prefix + "2",
                                            "--rate", str(min(rate, 1000)), "--duration", "6",
                                            "--storm-after", "2",
                                            ports_per_address=PORTS_PER_ADDRESS // 2)
                        if storm.get("reconnect_s") is None:
                            raise AssertionError("reconnect-storm reported no reconnect_s")
                        runs.append(storm)
                    t1 = time.monotonic()
                    if baseline is None:
                        idle_levels(node)
                    else:
                        settle(node, baseline, SETTLE_S)
                    time.sleep(HEAP_SAMPLE_WAIT_S)  # a heap reading taken once settled
                    levels = node.levels()
                    if baseline is None:
                        baseline = levels
                    summary = {
                        "round": r + 1, "loadgen_s": round(t1 - t0, 1),
                        "settle_s": round(time.monotonic() - t1, 1),
                        "runs": [{k: x.get(k) for k in ("scenario", "connections", "logins",
                                                        "acked", "delivered", "lost",
                                                        "duplicates", "connect_s",
                                                        "reconnect_s", "wall_s")}
                                 for x in runs],
                        "levels": levels}
                    summary["counters"] = {k: levels[k] - counted[k] for k in ENDINGS}
                    counted = levels
                    print(json.dumps(summary), flush=True)
                    wrong = {k: (baseline.get(k), levels.get(k)) for k in exact_names(baseline)
                             if levels.get(k) != baseline.get(k)}
                    if wrong:
                        raise AssertionError(f"round {r + 1}: not back to the baseline "
                                             f"(baseline, now): {wrong}")
                    limit = baseline["rss_kib"] * (1 + RSS_TOLERANCE_FRACTION) + \
                        RSS_TOLERANCE_MIB * 1024
                    # Under ASan freed memory waits in its quarantine (up to 256 MiB) before it is
                    # reused: RSS says nothing there, LeakSanitizer at the dataplane's exit does.
                    # The departures freed more than the trim threshold: it ran.
                    if not small and levels["heap_trims"] == 0:
                        raise AssertionError(f"round {r + 1}: no heap trim (free "
                                             f"{levels['heap_free_kib']} KiB)")
                    # mallinfo2 does not see ASan's allocator (it reads 0 there).
                    if not small:
                        check_heap(r, levels, baseline, "baseline", HEAP_TOLERANCE_FRACTION,
                                   HEAP_TOLERANCE_MIB, "a leak")
                        check_heap(r, levels, start, "before any session",
                                   START_HEAP_TOLERANCE_FRACTION, START_HEAP_TOLERANCE_MIB,
                                   "the sessions' memory stayed")
                    if not small and levels["rss_kib"] > limit:
                        raise AssertionError(f"round {r + 1}: RSS {levels['rss_kib']} KiB, "
                                             f"baseline {baseline['rss_kib']} KiB, limit "
                                             f"{limit:.0f}")
                for line in node.dp_log().splitlines():  # each trim's size and duration
                    if "dataplane.heap_trimmed" in line:
                        print(line[line.index("dataplane.heap_trimmed"):])
                accepted = node.counter("dp.dpdk.transport.accepted")
                print(f"ok: {rounds} rounds, {accepted:.0f} connections accepted over memif, "
                      f"RSS {start['rss_kib']} KiB at start, {baseline['rss_kib']} KiB after "
                      f"round 1, {levels['rss_kib']} KiB at the end; heap in use "
                      f"{start['heap_live_kib']} at start, {baseline['heap_live_kib']} after "
                      f"round 1, {levels['heap_live_kib']} KiB at the end, free "
                      f"{baseline['heap_free_kib']} -> {levels['heap_free_kib']} KiB "
                      f"({time.monotonic() - started:.0f} s)")
            except BaseException:
                node.dump_logs()
                raise
            node.finish()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
