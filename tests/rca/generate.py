#!/usr/bin/env python3
"""Generate the recorded root-cause-analysis scenario suite in tests/rca/scenarios.

Why a generator: the ranking in warden-detectors (rca) must be checked on incidents whose root
cause is known, in the layout of public RCA benchmarks (RCAEval's sock-shop / online-boutique /
train-ticket recordings: one `time` column, then `<service>_<metric>` columns). The generated
files are committed; this script documents exactly how they were made and rebuilds them
byte for byte (Python 3 standard library only, one seed per scenario).

The simulated system is sock-shop-like: front-end -> orders, carts, catalogue, user;
orders -> payment, shipping, carts, user, orders-db; carts -> carts-db; catalogue ->
catalogue-db; user -> user-db; shipping and queue-master -> rabbitmq; on three nodes.

What the simulation models, because real incidents do it:
  * load: a slow diurnal-ish drift of the request rate, plus noise, driving every service's
    CPU; Java services have a GC sawtooth in memory;
  * latency is computed bottom-up: a service's latency is its own work plus its calls'
    latency, seen one or two scrape steps later (rarely the same step) -- so a callee's fault
    shows up attenuated (by its share of the calls) and late at its callers, and callers
    accumulate their callees' noise;
  * errors propagate up the call graph, partly absorbed by retries and fallbacks;
  * faults: CPU hog (own CPU, own latency through throttling, a little on node neighbours,
    the node's CPU), memory leak (linear growth, GC pressure, OOM kills and restarts),
    latency injection, error injection, bad rollout (pods restart, then an error and/or
    latency regression, plus a rollout change event), node failure (node ready -> 0 after the
    40 s grace period, node and pod metrics missing, callers failing, pods evicted after five
    minutes and restarted elsewhere);
  * honesty: in some scenarios a caller's latency moves further (in robust z) than the root
    cause's own metric (retries and timeouts amplify; the root's latency is noisy); unrelated
    transient bumps happen before and after the start; some scenarios have a persistent
    unrelated change (a batch job) after the start; harmless changes and victim probe failures
    appear among the events; the recorded start is jittered by up to 45 s; about 0.3% of
    samples are missing.

Usage: python3 tests/rca/generate.py [--out tests/rca/scenarios] [--seed-base 7000]
"""

import argparse
import math
import os
import random
import shutil

STEP = 15  # seconds between samples
N = 160  # samples: 40 minutes
BASE_T0 = 1718000100  # divisible by STEP

# name: node, cpu base (cores), cpu per request/s, memory (MB), java?, own latency (ms),
#       latency noise (relative sd), baseline error ratio, visits per front-end request
APP = {
    "front-end": dict(node="node-a", cpu=0.08, cpu_rps=0.004, mem=95, java=False, lat=12, noise=0.07, err=0.004, visits=1.0),
    "orders": dict(node="node-b", cpu=0.05, cpu_rps=0.03, mem=410, java=True, lat=25, noise=0.06, err=0.003, visits=0.08),
    "carts": dict(node="node-c", cpu=0.04, cpu_rps=0.008, mem=380, java=True, lat=7, noise=0.06, err=0.002, visits=0.35),
    "catalogue": dict(node="node-a", cpu=0.02, cpu_rps=0.002, mem=28, java=False, lat=4, noise=0.06, err=0.001, visits=0.6),
    "user": dict(node="node-a", cpu=0.03, cpu_rps=0.004, mem=24, java=False, lat=5, noise=0.06, err=0.002, visits=0.25),
    "payment": dict(node="node-b", cpu=0.01, cpu_rps=0.01, mem=18, java=False, lat=6, noise=0.08, err=0.002, visits=0.08),
    "shipping": dict(node="node-c", cpu=0.03, cpu_rps=0.02, mem=350, java=True, lat=9, noise=0.06, err=0.002, visits=0.08),
    "queue-master": dict(node="node-a", cpu=0.03, cpu_rps=0.015, mem=340, java=True, lat=20, noise=0.08, err=0.002, visits=0.08),
}
# name: node, cpu base, cpu per request/s, memory (MB), query latency (ms), visits
DATA = {
    "orders-db": dict(node="node-b", cpu=0.02, cpu_rps=0.01, mem=160, lat=3.0, visits=0.16),
    "carts-db": dict(node="node-c", cpu=0.02, cpu_rps=0.006, mem=150, lat=2.0, visits=0.5),
    "catalogue-db": dict(node="node-a", cpu=0.03, cpu_rps=0.004, mem=420, lat=2.5, visits=0.6),
    "user-db": dict(node="node-c", cpu=0.02, cpu_rps=0.006, mem=140, lat=2.0, visits=0.3),
    "rabbitmq": dict(node="node-b", cpu=0.04, cpu_rps=0.01, mem=120, lat=1.0, visits=0.16),
}
NODES = ["node-a", "node-b", "node-c"]
# caller -> [(callee, calls per request of the caller)]
DEPS = {
    "front-end": [("orders", 0.08), ("carts", 0.35), ("catalogue", 0.6), ("user", 0.25)],
    "orders": [("payment", 1.0), ("shipping", 1.0), ("carts", 1.0), ("user", 1.0), ("orders-db", 2.0)],
    "carts": [("carts-db", 1.4)],
    "catalogue": [("catalogue-db", 1.0)],
    "user": [("user-db", 1.2)],
    "shipping": [("rabbitmq", 1.0)],
    "queue-master": [("rabbitmq", 1.0)],
}
# bottom-up order
ORDER = ["orders-db", "carts-db", "catalogue-db", "user-db", "rabbitmq", "payment", "catalogue", "user", "carts",
         "shipping", "queue-master", "orders", "front-end"]
ALL = list(APP) + list(DATA)
APP_METRICS = ["cpu", "mem", "latency-50", "latency-90", "errors", "rps"]
DATA_METRICS = ["cpu", "mem"]
NODE_METRICS = ["cpu", "mem", "ready"]

NAN = float("nan")


def poisson(rng, lam):
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class Effects:
    """Per-service, per-step fault and distractor effects."""

    def __init__(self):
        z = lambda v: {s: [v] * N for s in ALL}
        self.cpu_add = z(0.0)  # cores
        self.lat_mult = z(1.0)  # own latency multiplier (also a data store's query latency)
        self.lat_add = z(0.0)  # ms added to own latency
        self.err_add = z(0.0)  # error ratio added
        self.mem_add = z(0.0)  # MB
        self.mem_mult = z(1.0)
        self.down = z(False)  # unreachable, metrics missing
        self.noise_mult = {s: 1.0 for s in ALL}
        self.amp = {}  # (caller, callee) -> amplification of the callee's extra latency
        self.node_of = {s: [(APP.get(s) or DATA[s])["node"]] * N for s in ALL}
        self.node_down = {n: [False] * N for n in NODES}
        self.node_notready = {n: [False] * N for n in NODES}
        self.node_cpu_add = {n: [0.0] * N for n in NODES}
        self.node_mem_add = {n: [0.0] * N for n in NODES}
        self.cpu_limit = {}  # service -> cores
        self.traffic = [1.0] * N  # multiplier of the front-end request rate

    def add(self, table, s, k0, k1, v, shape=None):
        for k in range(max(0, k0), min(N, k1)):
            x = v if shape is None else v * shape(k - k0)
            table[s][k] += x

    def mul(self, table, s, k0, k1, v, shape=None):
        for k in range(max(0, k0), min(N, k1)):
            x = v if shape is None else 1.0 + (v - 1.0) * shape(k - k0)
            table[s][k] *= x


def simulate(rng, eff, lags):
    """Return {column: [values]} for every service, data store and node."""
    t_phase = rng.uniform(0, 2 * math.pi)
    period = rng.uniform(2, 6) * 3600
    amp = rng.uniform(0.05, 0.15)
    r0 = rng.uniform(30, 50)
    rps_fe = [r0 * (1 + amp * math.sin(2 * math.pi * k * STEP / period + t_phase)) * (1 + rng.gauss(0, 0.02)) * eff.traffic[k]
              for k in range(N)]

    lat50, lat90, err, rps = {}, {}, {}, {}
    typical = {}
    cols = {}
    gc_period = {s: rng.randint(8, 20) for s in ALL}
    gc_phase = {s: rng.randint(0, 19) for s in ALL}
    walk = {s: 0.0 for s in ALL}

    for s in ORDER:
        is_app = s in APP
        cfg = APP[s] if is_app else DATA[s]
        visits = cfg["visits"]
        l50, l90, er, rp, cpu_used = [0.0] * N, [0.0] * N, [0.0] * N, [0.0] * N, [0.0] * N
        cpu_col, mem_col = [NAN] * N, [NAN] * N
        l50_col, l90_col, err_col, rps_col = [NAN] * N, [NAN] * N, [NAN] * N, [NAN] * N
        tail = rng.uniform(1.7, 2.3)
        limit = eff.cpu_limit.get(s)
        for k in range(N):
            load = rps_fe[k] * visits
            rp[k] = load
            # CPU: demand from the load (noisy at a 15 s resolution) plus any hog; a container at
            # its CPU limit is throttled, which stretches its own latency.
            demand = (cfg["cpu"] + cfg["cpu_rps"] * load) * (1 + rng.gauss(0, 0.09)) + eff.cpu_add[s][k]
            demand = max(0.001, demand)
            throttle = 1.0
            if limit is not None and demand > limit:
                throttle = demand / limit
                demand = limit * (1 + rng.gauss(0, 0.02))
            cpu_used[k] = demand
            noise = cfg.get("noise", 0.05) * eff.noise_mult[s]
            mult = eff.lat_mult[s][k] * throttle
            own = cfg["lat"] * mult * math.exp(rng.gauss(0, noise)) + eff.lat_add[s][k]
            own90 = cfg["lat"] * tail * mult * math.exp(rng.gauss(0, noise * 1.6)) + eff.lat_add[s][k] * 1.1
            e = (cfg.get("err", 0.0) * math.exp(rng.gauss(0, 0.3)) if is_app else 0.0) + eff.err_add[s][k]
            if eff.down[s][k]:
                e = 1.0
            tot50, tot90 = own, own90
            for callee, calls in DEPS.get(s, []):
                lag = lags[(s, callee)]
                kk = max(0, k - lag)
                c50, c90, ce = lat50[callee][kk], lat90[callee][kk], err[callee][kk]
                a = eff.amp.get((s, callee), 1.0)
                if a != 1.0:
                    # Timeouts and retries kick in only when the callee is clearly slow.
                    b50, b90 = typical[callee]
                    c50 += (a - 1.0) * max(0.0, c50 - 1.5 * b50)
                    c90 += (a - 1.0) * max(0.0, c90 - 1.5 * b90)
                tot50 += calls * c50
                tot90 += calls * c90 * 0.8
                # A failing call fails the request unless retried: most of it propagates.
                e += min(1.0, calls) * ce * 0.7
            e = min(1.0, e)
            l50[k], l90[k], er[k] = tot50, tot90, e
        lat50[s], lat90[s], err[s], rps[s] = l50, l90, er, rp
        typical[s] = (sorted(l50[:40])[20], sorted(l90[:40])[20])

        for k in range(N):
            if eff.down[s][k]:
                continue
            load = rp[k]
            cpu_col[k] = cpu_used[k]
            walk[s] += rng.gauss(0, 0.002) - 0.05 * walk[s]
            mem = cfg["mem"] * (1 + walk[s]) * (1 + rng.gauss(0, 0.004))
            if is_app and cfg["java"]:
                ph = ((k + gc_phase[s]) % gc_period[s]) / gc_period[s]
                mem *= 1 + 0.04 * ph
            mem = mem * eff.mem_mult[s][k] + eff.mem_add[s][k]
            mem_col[k] = mem
            if is_app:
                l50_col[k] = l50[k]
                l90_col[k] = l90[k]
                n_req = poisson(rng, load * STEP)
                rps_col[k] = n_req / STEP
                err_col[k] = poisson(rng, load * STEP * er[k]) / STEP
        cols[f"{s}_cpu"] = cpu_col
        cols[f"{s}_mem"] = mem_col
        if is_app:
            cols[f"{s}_latency-50"] = l50_col
            cols[f"{s}_latency-90"] = l90_col
            cols[f"{s}_errors"] = err_col
            cols[f"{s}_rps"] = rps_col

    for n in NODES:
        ncpu, nmem, ready = [NAN] * N, [NAN] * N, [1.0] * N
        base_cpu = rng.uniform(0.25, 0.45)
        base_mem = rng.uniform(1500, 2100)
        for k in range(N):
            if eff.node_notready[n][k]:
                ready[k] = 0.0
            if eff.node_down[n][k]:
                continue
            c = base_cpu * (1 + rng.gauss(0, 0.08)) + eff.node_cpu_add[n][k]
            m = base_mem * (1 + rng.gauss(0, 0.003)) + eff.node_mem_add[n][k]
            for s in ALL:
                if eff.node_of[s][k] == n:
                    v = cols[f"{s}_cpu"][k]
                    if not math.isnan(v):
                        c += v
                        m += cols[f"{s}_mem"][k]
            ncpu[k], nmem[k] = c, m
        cols[f"{n}_cpu"] = ncpu
        cols[f"{n}_mem"] = nmem
        cols[f"{n}_ready"] = ready
    return cols


def step_shape(ramp):
    return lambda d: min(1.0, (d + 1) / ramp) if ramp > 0 else 1.0


def column_order():
    out = []
    for s in APP:
        out += [f"{s}_{m}" for m in APP_METRICS]
    for s in DATA:
        out += [f"{s}_{m}" for m in DATA_METRICS]
    for n in NODES:
        out += [f"{n}_{m}" for m in NODE_METRICS]
    return out


def callers_of(s):
    return [c for c, ds in DEPS.items() if any(d == s for d, _ in ds)]


def residents(node):
    return [s for s in ALL if (APP.get(s) or DATA[s])["node"] == node]


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

def fault_cpu(rng, eff, sc, k0, ev, t_of):
    s = sc["root"]
    hog = sc.get("hog", rng.uniform(0.6, 1.2))
    eff.add(eff.cpu_add, s, k0, N, hog, step_shape(2))
    if "limit" in sc:
        # The container hits its CPU limit: throttling (in simulate) stretches its latency.
        eff.cpu_limit[s] = sc["limit"]
    if sc.get("slow", 0) > 0:
        # Contention beyond throttling (shared caches, lock holders descheduled).
        eff.mul(eff.lat_mult, s, k0, N, 1 + sc["slow"], step_shape(2))
    node = (APP.get(s) or DATA[s])["node"]
    for r in residents(node):
        if r != s:
            eff.mul(eff.lat_mult, r, k0, N, 1 + rng.uniform(0.03, 0.1))
    if sc.get("throttle_event", False):
        ev.append(dict(type="kube_event", service=s, time=t_of(k0 + rng.randint(6, 14)), reason="Unhealthy",
                       message="Liveness probe failed: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                       count=rng.randint(2, 5)))


def fault_memory(rng, eff, sc, k0, ev, t_of):
    s = sc["root"]
    cfg = APP.get(s) or DATA[s]
    limit = sc.get("limit", cfg["mem"] * rng.uniform(0.5, 0.9))
    to_oom = sc.get("to_oom", rng.randint(22, 40))  # steps from the start of the leak to the OOM kill
    slope = limit / to_oom
    java = cfg.get("java", True)
    leaked = 0.0
    ooms = []
    k = k0
    restart = 0
    while k < N:
        if restart > 0:
            eff.down[s][k] = True
            restart -= 1
            k += 1
            continue
        leaked += slope * (1 + rng.gauss(0, 0.05))
        if leaked >= limit:
            ooms.append(k)
            leaked = 0.0
            restart = rng.randint(1, 2)
            eff.down[s][k] = True
            k += 1
            continue
        eff.mem_add[s][k] += leaked
        frac = leaked / limit
        if frac > 0.5:
            pressure = ((frac - 0.5) / 0.5) ** 2
            eff.lat_mult[s][k] *= 1 + (1.8 if java else 0.8) * pressure
            eff.cpu_add[s][k] += (0.25 if java else 0.06) * pressure
        k += 1
    if ooms:
        ev.append(dict(type="kube_event", service=s, time=t_of(ooms[0]), reason="OOMKilled",
                       message=f"Container {s} exceeded its memory limit", count=len(ooms)))
        if len(ooms) >= 2:
            ev.append(dict(type="kube_event", service=s, time=t_of(ooms[1] + 1), reason="BackOff",
                           message=f"Back-off restarting failed container {s}", count=1))


def fault_latency(rng, eff, sc, k0, ev, t_of):
    s = sc["root"]
    delay = sc.get("delay", rng.uniform(60, 250))
    eff.add(eff.lat_add, s, k0, N, delay)
    if sc.get("mem_up", 0) > 0:
        # Slow queries pile up connections and their buffers.
        cfg = APP.get(s) or DATA[s]
        eff.add(eff.mem_add, s, k0, N, cfg["mem"] * sc["mem_up"], step_shape(6))


def fault_error(rng, eff, sc, k0, ev, t_of):
    s = sc["root"]
    ratio = sc.get("ratio", rng.uniform(0.15, 0.4))
    eff.add(eff.err_add, s, k0, N, ratio, step_shape(1))
    eff.mul(eff.lat_mult, s, k0, N, 0.85)
    ev.append(dict(type="log_signal", service=s, time=t_of(k0 + 1), signal="error_burst",
                   template="ERROR <*> request failed: <*>", count=rng.randint(40, 400)))


def fault_rollout(rng, eff, sc, k0, ev, t_of):
    s = sc["root"]
    cfg = APP.get(s) or DATA[s]
    t_change = k0 - rng.randint(3, 10)
    # Pods replaced over a few steps before the new version takes all traffic.
    for d in range(0, 4):
        k = k0 - 3 + d
        eff.mem_mult[s][k] *= 0.55 + 0.1 * d
        eff.cpu_add[s][k] += cfg["cpu"] * 1.5
    for d in range(0, 10):
        if k0 + 1 + d < N:
            eff.mem_mult[s][k0 + 1 + d] *= 0.95 + 0.005 * d
    if sc.get("err", 0) > 0:
        eff.add(eff.err_add, s, k0, N, sc["err"])
        ev.append(dict(type="log_signal", service=s, time=t_of(k0 + 1), signal="new_template",
                       template="ERROR <*> unexpected response schema from <*>", count=rng.randint(30, 300)))
    if sc.get("slow", 0) > 0:
        eff.mul(eff.lat_mult, s, k0, N, 1 + sc["slow"])
    if sc.get("cpu", 0) > 0:
        eff.add(eff.cpu_add, s, k0, N, sc["cpu"])
    v_from = sc.get("from", "v1.4.2")
    v_to = sc.get("to", "v1.5.0")
    ev.append(dict(type="change", service=s, time=t_of(t_change), change="rollout",
                   **{"from": f"{s}:{v_from}", "to": f"{s}:{v_to}"}, description=f"Deployment {s} image updated"))


def fault_node(rng, eff, sc, k0, ev, t_of):
    mode = sc.get("mode", "down")
    if mode == "network":
        node_network(rng, eff, sc, k0, ev, t_of)
    elif mode == "memory_pressure":
        node_memory_pressure(rng, eff, sc, k0, ev, t_of)
    else:
        node_down(rng, eff, sc, k0, ev, t_of)


def restart_elsewhere(rng, eff, s, node, k_from, k_back):
    """A pod killed at k_from comes back on another node at k_back, cold."""
    others = [x for x in NODES if x != node]
    for k in range(k_from, min(N, k_back)):
        eff.down[s][k] = True
    new_node = others[ALL.index(s) % len(others)]
    for k in range(k_back, N):
        eff.node_of[s][k] = new_node
    eff.mul(eff.lat_mult, s, k_back, N, 1.6, lambda d: max(0.0, 1 - d / 8))
    eff.add(eff.cpu_add, s, k_back, N, (APP.get(s) or DATA[s])["cpu"] * 2, lambda d: max(0.0, 1 - d / 4))
    eff.mul(eff.mem_mult, s, k_back, N, 0.6, lambda d: max(0.0, 1 - d / 10))


def node_down(rng, eff, sc, k0, ev, t_of):
    """The kubelet stops: NotReady after the 40 s grace period, metrics gone, pods evicted
    after five minutes and restarted elsewhere."""
    n = sc["root"]
    grace = 3
    evict = 20
    for k in range(k0, N):
        eff.node_down[n][k] = True
    for k in range(k0 + grace, N):
        eff.node_notready[n][k] = True
    for s in residents(n):
        restart_elsewhere(rng, eff, s, n, k0, k0 + evict + rng.randint(2, 5))
        ev.append(dict(type="kube_event", service=s, time=t_of(k0 + evict), reason="Evicted",
                       message=f"Pod {s} evicted: node {n} is not ready", count=1))
    ev.append(dict(type="kube_event", node=n, time=t_of(k0 + grace), reason="NodeNotReady",
                   message=f"Node {n} status is now: NodeNotReady", count=1))
    if rng.random() < 0.7:
        victim = rng.choice([x for x in residents(n) if x in APP] or residents(n))
        ev.append(dict(type="kube_event", service=victim, time=t_of(k0 + evict + 1), reason="FailedScheduling",
                       message="0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient cpu.",
                       count=rng.randint(1, 3)))


def node_network(rng, eff, sc, k0, ev, t_of):
    """Packet loss on the node's NIC: everything on it gets slower and fails a little (TCP
    retransmits), the kernel spends CPU on softirqs, and the node flaps NotReady once, minutes
    later, when a heartbeat is lost."""
    n = sc["root"]
    for s in residents(n):
        eff.mul(eff.lat_mult, s, k0, N, rng.uniform(1.8, 3.0), step_shape(2))
        if s in APP:
            eff.add(eff.err_add, s, k0, N, rng.uniform(0.02, 0.06))
    eff.add(eff.node_cpu_add, n, k0, N, 0.12)
    flap = k0 + rng.randint(10, 16)
    for k in range(flap, min(N, flap + 2)):
        eff.node_notready[n][k] = True
    ev.append(dict(type="kube_event", node=n, time=t_of(flap), reason="NodeNotReady",
                   message=f"Node {n} status is now: NodeNotReady", count=1))
    ev.append(dict(type="kube_event", node=n, time=t_of(flap + 2), reason="NodeReady",
                   message=f"Node {n} status is now: NodeReady", count=1))


def node_memory_pressure(rng, eff, sc, k0, ev, t_of):
    """A host process outside Kubernetes leaks memory: the node's memory climbs, page cache is
    reclaimed (everything on it slows down), and the kubelet evicts best-effort pods."""
    n = sc["root"]
    ramp = 16
    eff.add(eff.node_mem_add, n, k0, N, 2600.0, lambda d: min(1.0, (d + 1) / ramp))
    for s in residents(n):
        eff.mul(eff.lat_mult, s, k0 + ramp // 2, N, rng.uniform(1.2, 1.5), step_shape(4))
    k_evict = k0 + ramp
    evicted = [s for s in residents(n) if s in sc.get("best_effort", [])]
    for s in evicted:
        restart_elsewhere(rng, eff, s, n, k_evict, k_evict + rng.randint(3, 5))
        ev.append(dict(type="kube_event", service=s, time=t_of(k_evict), reason="Evicted",
                       message=f"The node was low on resource: memory. Container {s} was using 50Mi.", count=1))
    ev.append(dict(type="kube_event", node=n, time=t_of(k_evict), reason="EvictionThresholdMet",
                   message="Attempting to reclaim memory", count=1))


FAULTS = dict(cpu=fault_cpu, memory=fault_memory, latency=fault_latency, error=fault_error, rollout=fault_rollout,
              node=fault_node)


# ---------------------------------------------------------------------------
# Distractors
# ---------------------------------------------------------------------------

def distractor_bump(rng, eff, s, k, length, kind, size):
    """A transient, unrelated bump: a cron job, a GC storm, a slow batch query."""
    if kind == "cpu":
        eff.add(eff.cpu_add, s, k, k + length, size)
    elif kind == "latency":
        eff.mul(eff.lat_mult, s, k, k + length, 1 + size)
    elif kind == "errors":
        eff.add(eff.err_add, s, k, k + length, size)
    elif kind == "mem":
        eff.add(eff.mem_add, s, k, k + length, size)


def add_distractors(rng, eff, sc, k0, ev, t_of):
    root = sc["root"]
    candidates = [s for s in ALL if s != root and not (sc["fault"] == "node" and (APP.get(s) or DATA[s])["node"] == root)]
    # Transient bumps, before and after the start.
    for _ in range(sc.get("bumps", rng.randint(1, 3))):
        s = rng.choice(candidates)
        kind = "cpu" if s in DATA else rng.choice(["cpu", "latency", "errors", "latency"])
        size = {"cpu": rng.uniform(0.05, 0.3), "latency": rng.uniform(0.3, 1.2), "errors": rng.uniform(0.02, 0.1)}[kind]
        when = rng.choice([rng.randint(15, k0 - 12), rng.randint(k0 + 6, N - 10)])
        distractor_bump(rng, eff, s, when, rng.randint(2, 6), kind, size)
    # An unrelated bump that begins just before the recorded start: it moved first.
    if sc.get("prestart"):
        s, kind, size = sc["prestart"]
        distractor_bump(rng, eff, s, k0 - rng.randint(1, 3), rng.randint(3, 5), kind, size)
    # A traffic surge: every service's load rises for a few minutes.
    if sc.get("surge"):
        k = k0 + rng.randint(3, 8)
        for j in range(k, min(N, k + 12)):
            eff.traffic[j] *= 1 + sc["surge"]
    # A persistent unrelated change after the start (a batch job, a traffic shift).
    if sc.get("batch"):
        s, size = sc["batch"]
        k = k0 + rng.randint(4, 12)
        eff.add(eff.cpu_add, s, k, N, size, step_shape(3))
    if sc.get("benign_leak"):
        s = sc["benign_leak"]
        cfg = APP.get(s) or DATA[s]
        eff.add(eff.mem_add, s, 0, N, cfg["mem"] * 0.25, lambda d: d / N)
    # Harmless events a live system would also have seen.
    if sc.get("harmless_change"):
        s, minutes, kind = sc["harmless_change"]
        t = t_of(k0) - int(minutes * 60)
        if kind == "rollout":
            ev.append(dict(type="change", service=s, time=t, change="rollout", **{"from": f"{s}:v2.3.0", "to": f"{s}:v2.3.1"},
                           description=f"Deployment {s} image updated"))
        else:
            ev.append(dict(type="change", service=s, time=t, change="config", description=f"ConfigMap {s}-config updated"))
    if sc.get("victim_probe"):
        s = sc["victim_probe"]
        ev.append(dict(type="kube_event", service=s, time=t_of(k0 + rng.randint(3, 8)), reason="Unhealthy",
                       message="Readiness probe failed: HTTP probe failed with statuscode: 503", count=rng.randint(2, 6)))
    if sc.get("caller_errors"):
        s = sc["caller_errors"]
        ev.append(dict(type="log_signal", service=s, time=t_of(k0 + 2), signal="error_burst",
                       template="WARN <*> upstream call failed after <*> retries", count=rng.randint(100, 900)))
    if sc.get("hpa"):
        ev.append(dict(type="change", service=sc["hpa"], time=t_of(k0 + rng.randint(8, 16)), change="autoscaler",
                       description="HorizontalPodAutoscaler scaled from 2 to 4 replicas"))


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

SCENARIOS = [
    # CPU hogs
    dict(name="cpu-carts", fault="cpu", root="carts", symptom="front-end", hog=0.6, limit=0.3, bumps=2,
         victim_probe="front-end", amp={("front-end", "carts"): 2.0},
         description="stress-ng in carts pushes it to its 0.3-core limit; throttling slows carts and front-end"),
    dict(name="cpu-catalogue", fault="cpu", root="catalogue", symptom="front-end", hog=0.7, slow=1.2,
         benign_leak="user", harmless_change=("user", 20, "config"),
         description="CPU hog in catalogue on node-a, next to front-end and user (noisy neighbours)"),
    dict(name="cpu-payment", fault="cpu", root="payment", symptom="orders", hog=0.5, limit=0.06, amp={("orders", "payment"): 3.0},
         noise={"payment": 2.0}, throttle_event=True,
         description="CPU hog in payment, capped by its 0.06-core limit (its CPU barely moves); orders retries the slow calls"),
    dict(name="cpu-carts-db", fault="cpu", root="carts-db", symptom="front-end", hog=0.5, limit=0.2, bumps=2,
         description="CPU hog in carts-db at its limit: carts' latency moves more than carts-db's own CPU"),
    dict(name="cpu-user", fault="cpu", root="user", symptom="front-end", hog=0.8, slow=1.0, batch=("queue-master", 0.25),
         prestart=("catalogue", "latency", 0.8),
         description="CPU hog in user; a catalogue blip just before, an unrelated queue-master batch job just after"),
    # Memory leaks
    dict(name="memory-orders", fault="memory", root="orders", symptom="front-end", to_oom=24, victim_probe="front-end",
         description="heap leak in orders: GC pressure, then OOM kills and restarts"),
    dict(name="memory-carts", fault="memory", root="carts", symptom="front-end", to_oom=45, caller_errors="front-end",
         prestart=("payment", "cpu", 0.05), description="slow leak in carts, one OOM kill late in the recording"),
    dict(name="memory-user", fault="memory", root="user", symptom="front-end", to_oom=90, limit=40, bumps=3,
         description="leak in user too slow to be killed within the recording"),
    dict(name="memory-shipping", fault="memory", root="shipping", symptom="orders", to_oom=28, batch=("catalogue-db", 0.15),
         description="leak in shipping with OOM kills; an unrelated catalogue-db job starts after the fault"),
    dict(name="memory-catalogue-db", fault="memory", root="catalogue-db", symptom="front-end", to_oom=30, limit=300,
         description="catalogue-db (MySQL) buffer growth until it is OOM killed; catalogue fails meanwhile"),
    # Latency injection
    dict(name="latency-payment", fault="latency", root="payment", symptom="orders", delay=180, amp={("orders", "payment"): 2.5},
         noise={"payment": 3.0}, caller_errors="orders",
         description="tc delay on payment; orders' timeouts and retries amplify it, payment's latency is noisy"),
    dict(name="latency-catalogue", fault="latency", root="catalogue", symptom="front-end", delay=60, bumps=2, surge=0.3,
         description="60 ms injected into catalogue, the most-called service of front-end; a traffic surge follows"),
    dict(name="latency-user", fault="latency", root="user", symptom="front-end", delay=90, noise={"user": 3.0},
         amp={("front-end", "user"): 2.0}, victim_probe="front-end", prestart=("carts", "latency", 1.0),
         description="delay on user, whose latency is noisy; front-end retries; a carts blip just before the start"),
    dict(name="latency-shipping", fault="latency", root="shipping", symptom="orders", delay=250,
         harmless_change=("orders", 25, "config"),
         description="250 ms on shipping; orders calls it on every checkout"),
    dict(name="latency-carts", fault="latency", root="carts", symptom="front-end", delay=45, noise={"carts": 2.0},
         amp={("front-end", "carts"): 2.0, ("orders", "carts"): 2.0}, batch=("catalogue-db", 0.2),
         description="small delay on noisy carts, amplified by both callers; an unrelated job starts after"),
    dict(name="latency-orders-db", fault="latency", root="orders-db", symptom="front-end", delay=35, mem_up=0.06,
         caller_errors="orders",
         description="slow disk under orders-db: it has no latency metric, only its memory grows with piled-up connections; orders' latency moves most"),
    # Error injection
    dict(name="error-payment", fault="error", root="payment", symptom="orders", ratio=0.3, caller_errors="orders",
         description="payment gateway returns 500 for 30% of calls"),
    dict(name="error-user", fault="error", root="user", symptom="front-end", ratio=0.2, victim_probe="front-end",
         prestart=("shipping", "errors", 0.08), description="user service fails 20% of logins; a shipping error blip just before"),
    dict(name="error-carts", fault="error", root="carts", symptom="front-end", ratio=0.4, bumps=3, caller_errors="front-end",
         description="carts fails 40% of requests"),
    dict(name="error-catalogue", fault="error", root="catalogue", symptom="front-end", ratio=0.12,
         harmless_change=("carts", 12, "rollout"), hpa="front-end",
         description="catalogue fails 12%; a harmless carts rollout 12 minutes before"),
    # Bad rollouts
    dict(name="rollout-orders", fault="rollout", root="orders", symptom="front-end", err=0.12, slow=0.4, surge=0.25,
         harmless_change=("user", 20, "config"), description="orders v1.5.0 fails 12% of checkouts and is slower"),
    dict(name="rollout-catalogue", fault="rollout", root="catalogue", symptom="front-end", slow=1.5, cpu=0.05,
         description="catalogue v1.5.0 is slower (an N+1 query), no errors"),
    dict(name="rollout-front-end", fault="rollout", root="front-end", symptom="front-end", err=0.08, slow=0.3,
         victim_probe="front-end", description="front-end v1.5.0 breaks a page: errors at the symptom itself"),
    dict(name="rollout-carts", fault="rollout", root="carts", symptom="front-end", err=0.15, caller_errors="front-end",
         description="carts v1.5.0 fails 15% of requests"),
    dict(name="rollout-user", fault="rollout", root="user", symptom="front-end", err=0.2, harmless_change=("shipping", 8, "rollout"),
         bumps=2, prestart=("orders", "latency", 0.6),
         description="user v1.5.0 fails 20%; shipping was also rolled out 8 minutes before (harmless)"),
    # Node failures
    dict(name="node-a", fault="node", root="node-a", symptom="front-end", mode="down",
         description="node-a goes down (kubelet stops): NotReady, its pods evicted and restarted elsewhere"),
    dict(name="node-b", fault="node", root="node-b", symptom="front-end", mode="network", victim_probe="front-end",
         description="packet loss on node-b: orders, payment, orders-db and rabbitmq slow down and fail a little; one NotReady flap minutes later"),
    dict(name="node-c", fault="node", root="node-c", symptom="front-end", mode="memory_pressure", bumps=2,
         best_effort=["shipping", "user-db"],
         description="a host process on node-c leaks memory: everything on it slows down, best-effort pods are evicted"),
]


def fmt(v):
    if isinstance(v, float) and math.isnan(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.4g}"


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s == "" or any(c in s for c in ":#{}[],&*!|>'\"%@`") or s.strip() != s or s.lower() in ("yes", "no", "true", "false", "null", "on", "off") or s[0] in "-?":
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def write_yaml(path, sc, start, events):
    lines = [
        f"# Generated by tests/rca/generate.py (seed {sc['seed']}); do not edit by hand.",
        f"start: {start}",
        f"fault: {sc['fault']}",
        f"root_cause: {sc['root']}",
        f"symptom: {sc['symptom']}",
        f"description: {yaml_scalar(sc['description'])}",
        "events:",
    ]
    key_order = ["type", "service", "node", "time", "change", "from", "to", "reason", "signal", "template", "message", "count",
                 "depends_on", "nodes", "description"]
    for e in events:
        first = True
        for k in key_order:
            if k not in e:
                continue
            v = e[k]
            if isinstance(v, list):
                val = "[" + ", ".join(yaml_scalar(x) for x in v) + "]"
            else:
                val = yaml_scalar(v)
            lines.append(("  - " if first else "    ") + f"{k}: {val}")
            first = False
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def build(idx, sc, out_dir, seed_base=7000):
    seed = seed_base + idx
    sc = dict(sc, seed=seed)
    rng = random.Random(seed)
    t0 = BASE_T0 + idx * 86400
    k0 = rng.randint(76, 96)
    jitter = rng.choice([-45, -30, -15, 0, 0, 15, 30, 45])
    start = t0 + k0 * STEP + jitter
    t_of = lambda k: t0 + k * STEP

    eff = Effects()
    for s, m in sc.get("noise", {}).items():
        eff.noise_mult[s] = m
    eff.amp.update(sc.get("amp", {}))
    events = []
    topo = []
    for s in ALL:
        deps = [d for d, _ in DEPS.get(s, [])]
        e = dict(type="topology", service=s)
        if deps:
            e["depends_on"] = deps
        e["nodes"] = [(APP.get(s) or DATA[s])["node"]]
        topo.append(e)
    FAULTS[sc["fault"]](rng, eff, sc, k0, events, t_of)
    add_distractors(rng, eff, sc, k0, events, t_of)
    lags = {}
    for caller, ds in DEPS.items():
        for callee, _ in ds:
            lags[(caller, callee)] = rng.choices([0, 1, 2], weights=[1, 6, 3])[0]
    cols = simulate(rng, eff, lags)

    name = f"{idx + 1:02d}-{sc['name']}"
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    order = column_order()
    with open(os.path.join(d, "metrics.csv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("time," + ",".join(order) + "\n")
        for k in range(N):
            row = [str(t_of(k))]
            for c in order:
                v = cols[c][k]
                # Missing scrapes.
                if rng.random() < 0.003:
                    v = NAN
                row.append(fmt(v))
            f.write(",".join(row) + "\n")
    events.sort(key=lambda e: (e.get("time", 0), e["type"], e.get("service", e.get("node", ""))))
    write_yaml(os.path.join(d, "scenario.yaml"), sc, start, topo + events)
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios"))
    ap.add_argument("--seed-base", type=int, default=7000,
                    help="seed of the first scenario; another value gives a held-out suite of the same scenarios")
    args = ap.parse_args()
    if os.path.isdir(args.out):
        for entry in os.listdir(args.out):
            p = os.path.join(args.out, entry)
            if os.path.isdir(p) and entry[:2].isdigit():
                shutil.rmtree(p)
    os.makedirs(args.out, exist_ok=True)
    for i, sc in enumerate(SCENARIOS):
        print(build(i, sc, args.out, args.seed_base))


if __name__ == "__main__":
    main()
