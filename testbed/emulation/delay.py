"""Which delay mechanism a cluster gets, and running the userspace delay line.

Where the kernel has ``sch_netem`` the netem leaf under HTB does delay and jitter
(``testbed/commands/shaping.py``). Elsewhere one delay-line process per cluster
(``delay_line.py``) holds packets handed to it by iptables NFQUEUE rules. Where a
packet is held depends on its protocol (measured; docs/emulation.md):

- everything but ICMP on the *receiving* side (mangle PREROUTING): a packet held in
  its sender's stack counts against its socket (TCP Small Queues capped TCP at 3 of
  24 Mbit/s, the socket buffer UDP at 31 of 90). Uplink in the host namespace, in our
  chain ``FBDL<hash>`` jumped to from PREROUTING for our bridges only; downlink in
  the node's PREROUTING ``-i IF``.
- ICMP on the *sending* side (mangle POSTROUTING), before the receiver's kernel
  stamps it: held on the receiving side, a ping reply was stamped before it waited,
  so plain ``ping`` showed half the RTT. Downlink in the host chain ``FBDE<hash>``
  jumped to from POSTROUTING ``-o`` our bridges; uplink in the node's POSTROUTING
  ``-o IF``.

A network whose rate exceeds ``max_mbit()`` (Ethernet-class) gets rate only: the
delay line could not keep up, and the manifest says so.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inventory.models import Inventory
from testbed.commands.shaping import Direction
from testbed.emulation import helper, nfqueue
from testbed.emulation.delay_line import QueueConfig
from testbed.emulation.delay_schedule import DelaySpec
from testbed.emulation.errors import ClusterUpError
from testbed.emulation.features import EmulationFeatures
from testbed.emulation.plan import ClusterPlan, FeatureUse
from testbed.transport.executor import CommandError, Executor, NetnsExecutor

DelayMechanism = Literal["netem", "delay-line", "none"]
# Per-packet cost ~12.5 us: 400 Mbit/s of 1400-byte datagrams took 44 % of a
# core (bench/delay_line.py, docs/emulation.md); TCP's GSO segments are far cheaper.
DEFAULT_MAX_MBIT = 400.0
MAX_MBIT_ENV = "DELAY_LINE_MAX_MBIT"
CHAIN_PREFIX = "FBDL"
EGRESS_CHAIN_PREFIX = "FBDE"
HOST_QUEUE_BASE = 0x8000
QUEUES_PER_CLUSTER = 128
QUEUE_MAXLEN = 8192
NAME = "userspace delay line (NFQUEUE)"


def max_mbit() -> float:
    """The highest link rate the delay line is trusted with (``$DELAY_LINE_MAX_MBIT``).

    Measured by ``bench/delay_line.py``; see docs/benchmarks.md.
    """
    raw = os.environ.get(MAX_MBIT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_MAX_MBIT
    except ValueError as exc:
        raise ValueError(
            f"${MAX_MBIT_ENV}={raw!r} is not a number; give Mbit/s, e.g. 400"
        ) from exc


def delay_mechanism(features: EmulationFeatures) -> DelayMechanism:
    """netem where the kernel has it, else the delay line where NFQUEUE works."""
    if features.delay:
        return "netem"
    if features.nfqueue:
        return "delay-line"
    return "none"


@dataclass(frozen=True)
class DelayQueuePlan:
    """One direction of one node's link through the delay line."""

    node: str
    network: str
    direction: Direction
    namespace: str | None  # None: the host namespace
    chain: str  # mangle chain holding the rule (ours on the host, else the hook's)
    queue: int
    match: tuple[str, ...]  # iptables match before ``-j NFQUEUE``
    spec: DelaySpec

    @property
    def protocol(self) -> str:
        """``icmp`` (held where it is sent) or ``non-icmp`` (where it is received)."""
        return "non-icmp" if "!" in self.match else "icmp"


@dataclass(frozen=True)
class DelayLinePlan:
    """Every queue, the host chain and the networks left at rate only (and why)."""

    cluster: str
    chain: str
    egress_chain: str
    bridges: tuple[str, ...]
    queues: tuple[DelayQueuePlan, ...]
    rate_only: tuple[tuple[str, str], ...] = ()
    limit_mbit: float = DEFAULT_MAX_MBIT
    host_base: int = HOST_QUEUE_BASE

    @property
    def host_queue_count(self) -> int:
        """How many queues the line binds in the host namespace."""
        return sum(q.namespace is None for q in self.queues)

    @property
    def delayed_networks(self) -> tuple[str, ...]:
        """Networks whose links go through the delay line."""
        return tuple(dict.fromkeys(q.network for q in self.queues))

    @property
    def node_namespaces(self) -> tuple[str, ...]:
        """Node namespaces holding downlink rules."""
        return tuple(dict.fromkeys(q.namespace for q in self.queues if q.namespace))


def chain_name(cluster: str) -> str:
    """The host mangle chain of ``cluster`` (``FBDL`` + 10 hex, under 29 chars)."""
    return CHAIN_PREFIX + hashlib.sha256(cluster.encode()).hexdigest()[:10]


def egress_chain_name(cluster: str) -> str:
    """The host mangle chain of ``cluster`` for POSTROUTING (``FBDE`` + 10 hex)."""
    return EGRESS_CHAIN_PREFIX + hashlib.sha256(cluster.encode()).hexdigest()[:10]


SLOTS = 256


def host_queue_base(cluster: str, shift: int = 0) -> int:
    """First host-namespace queue number of ``cluster``: a block of 128 in one of
    256 slots, hashed from the name (``shift``: that many slots further on)."""
    slot = int(hashlib.sha256(cluster.encode()).hexdigest()[:4], 16) + shift
    return HOST_QUEUE_BASE + (slot % SLOTS) * QUEUES_PER_CLUSTER


def free_host_base(cluster: str, count: int) -> int:
    """The first block from ``cluster``'s hashed slot on whose first ``count``
    queues no other process has bound (another cluster's delay line, say)."""
    for shift in range(SLOTS):
        base = host_queue_base(cluster, shift)
        if all(_queue_free(q) for q in range(base, base + count)):
            return base
    raise ClusterUpError(
        f"the delay line of {cluster} found no free block of {count} NFQUEUE "
        "numbers in the host namespace; stop other clusters (`flowerbed cluster "
        "down`) and try again"
    )


def _queue_free(queue: int) -> bool:
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER
    ) as sock:
        sock.bind((0, 0))
        sock.settimeout(2.0)
        sock.send(nfqueue.bind(queue))
        acks = [a for a in nfqueue.parse(sock.recv(4096)) if isinstance(a, nfqueue.Ack)]
        # The kernel refuses a queue bound by another socket with EPERM; any other
        # refusal the line itself reports.
        free = not acks or acks[0].error not in (-errno.EPERM, -errno.EBUSY)
        if free:
            sock.send(nfqueue.unbind(queue))
    return free


def plan_delay_line(
    inventory: Inventory,
    plan: ClusterPlan,
    limit_mbit: float,
    host_base: int | None = None,
) -> DelayLinePlan:
    """Return the queues for every link whose profile asks for delay or jitter.

    ``host_base``: the first host-namespace queue number (default: the hashed one;
    ``cluster up`` passes ``free_host_base``'s, which the running line records).
    """
    if host_base is None:
        host_base = host_queue_base(plan.cluster)
    host_queue = host_base
    chain, egress = chain_name(plan.cluster), egress_chain_name(plan.cluster)
    queues: list[DelayQueuePlan] = []
    rate_only: dict[str, str] = {}
    bridges: list[str] = []
    for node in plan.nodes:
        local_queue = 0
        for link in node.links:
            if link.management:
                continue
            profile = inventory.network(link.network).profile
            if not profile.needs_delay:
                continue
            fastest = max(profile.downlink_mbit, profile.uplink_mbit)
            if fastest > limit_mbit:
                rate_only[link.network] = (
                    f"{fastest:g} Mbit/s is above the delay line's {limit_mbit:g} "
                    f"Mbit/s (${MAX_MBIT_ENV})"
                )
                continue
            spec = DelaySpec(profile.delay_ms, profile.jitter_ms)
            host_ip = ("-s", f"{link.address.ip}/32")
            node_ip = ("-d", f"{link.address.ip}/32")
            icmp, other = ("-p", "icmp"), ("!", "-p", "icmp")
            # (direction, namespace, chain, match): ICMP where it is sent, the
            # rest where it is received (module docstring).
            wanted: list[tuple[Direction, str | None, str, tuple[str, ...]]] = [
                ("uplink", None, chain, ("-i", link.bridge, *host_ip, *other)),
                ("uplink", node.namespace, "POSTROUTING",
                 ("-o", link.node_ifname, *icmp)),
                ("downlink", node.namespace, "PREROUTING",
                 ("-i", link.node_ifname, *other)),
                ("downlink", None, egress, ("-o", link.bridge, *node_ip, *icmp)),
            ]  # fmt: skip
            for direction, namespace, in_chain, match in wanted:
                if namespace is None:
                    if host_queue >= host_base + QUEUES_PER_CLUSTER:
                        raise ValueError(
                            f"cluster {plan.cluster}: more than "
                            f"{QUEUES_PER_CLUSTER // 2} delayed links; the delay "
                            "line takes at most that many per cluster"
                        )
                    number = host_queue
                    host_queue += 1
                else:
                    number = local_queue
                    local_queue += 1
                queues.append(
                    DelayQueuePlan(
                        node.host,
                        link.network,
                        direction,
                        namespace,
                        in_chain,
                        number,
                        match,
                        spec,
                    )
                )
            if link.bridge not in bridges:
                bridges.append(link.bridge)
    return DelayLinePlan(
        plan.cluster,
        chain,
        egress,
        tuple(bridges),
        tuple(queues),
        tuple(sorted(rate_only.items())),
        limit_mbit,
        host_base,
    )


# --- iptables commands (pure) ------------------------------------------------------

_IPT = ("iptables", "-w", "5", "-t", "mangle")


def nfqueue_rule(queue: DelayQueuePlan) -> list[str]:
    """Append ``queue``'s NFQUEUE rule to its chain (ours on the host, or a hook's)."""
    return [
        *_IPT,
        "-A",
        queue.chain,
        *queue.match,
        "-j",
        "NFQUEUE",
        "--queue-num",
        str(queue.queue),
    ]


def chain_create(chain: str) -> list[str]:
    """Create one of our host mangle chains."""
    return [*_IPT, "-N", chain]


def chain_flush(chain: str) -> list[str]:
    """Empty a mangle chain (ours on the host, or a node's PREROUTING/POSTROUTING)."""
    return [*_IPT, "-F", chain]


def chain_delete(chain: str) -> list[str]:
    """Delete one of our (empty, unreferenced) host mangle chains."""
    return [*_IPT, "-X", chain]


def jump(action: Literal["-C", "-I", "-D"], bridge: str, chain: str) -> list[str]:
    """Check, insert or delete the jump from ``bridge`` to our ``chain``.

    The ingress chain (``FBDL``) is jumped to from PREROUTING ``-i bridge``, the
    egress chain (``FBDE``) from POSTROUTING ``-o bridge``.
    """
    if chain.startswith(EGRESS_CHAIN_PREFIX):
        return [*_IPT, action, "POSTROUTING", "-o", bridge, "-j", chain]
    return [*_IPT, action, "PREROUTING", "-i", bridge, "-j", chain]


def mangle_rules() -> list[str]:
    """List the mangle table in ``-S`` form."""
    return [*_IPT, "-S"]


# --- the process -------------------------------------------------------------------

MODULE = "testbed.emulation.delay_line"
DelayLineFiles = helper.HelperFiles


def files_for(cluster: str) -> DelayLineFiles:
    """The delay line's files of ``cluster``."""
    return helper.files_for(cluster, "delay_line")


def process_config(plan: DelayLinePlan, ready_file: Path) -> dict[str, object]:
    """The JSON config the delay-line process reads."""
    return {
        "cluster": plan.cluster,
        "maxlen": QUEUE_MAXLEN,
        "max_mbit": plan.limit_mbit,
        "host_base": plan.host_base,
        "ready_file": str(ready_file),
        "queues": [
            QueueConfig(
                q.namespace,
                q.queue,
                q.spec,
                f"{q.node} {q.network} {q.direction} {q.protocol}",
            ).as_dict()
            for q in plan.queues
        ],
    }


def start_command(config: Path) -> list[str]:
    """The argv that starts the delay line on ``config``."""
    return helper.start_command(MODULE, config)


def running_pid(cluster: str) -> int | None:
    """The pid of ``cluster``'s delay line if it runs, else None."""
    return helper.running_pid(files_for(cluster), MODULE)


def plan_in_use(inventory: Inventory, plan: ClusterPlan) -> DelayLinePlan:
    """The plan the running line of ``plan.cluster`` serves.

    ``cluster status`` and a campaign's manifest may run without the
    ``$DELAY_LINE_MAX_MBIT`` that ``up`` had, and ``up`` may have moved the host
    queues to a free block: the running line's config says both (without a
    running line: ``max_mbit()`` and the hashed block).
    """
    limit, base = max_mbit(), None
    if running_pid(plan.cluster) is not None:
        try:
            config = json.loads(files_for(plan.cluster).config.read_text())
            limit, base = float(config["max_mbit"]), int(config["host_base"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return plan_delay_line(inventory, plan, limit, base)


def scheduling(cluster: str) -> str:
    """What scheduling the running delay line got (from its ready file)."""
    ready = helper.read_ready(files_for(cluster))
    return str(ready.get("scheduling", "unknown scheduling"))


def stop(cluster: str, grace_s: float = 3.0) -> int | None:
    """Stop ``cluster``'s delay line (SIGTERM, then SIGKILL); return its pid."""
    return helper.stop(files_for(cluster), MODULE, grace_s)


def forget(cluster: str) -> None:
    """Remove the delay line's files of ``cluster`` (config, log), and the
    cluster's state folder if nothing else is left in it."""
    helper.forget(files_for(cluster))


def start(plan: DelayLinePlan) -> int:
    """Start the delay line of ``plan`` detached; return its pid once it is ready."""
    files = files_for(plan.cluster)
    return helper.start(
        files,
        MODULE,
        process_config(plan, files.ready),
        f"the delay line of {plan.cluster}",
        "check that the kernel module nfnetlink_queue is loaded (`modprobe "
        "nfnetlink_queue`). 'Operation not permitted' on a queue means another "
        "process bound it after `up` picked a free block: run `cluster up` again.",
    )


# --- rules --------------------------------------------------------------------------


NODE_HOOKS = ("PREROUTING", "POSTROUTING")


def remove_rules(
    host: Executor, cluster: str, bridges: tuple[str, ...], namespaces: tuple[str, ...]
) -> list[str]:
    """Remove our host chains, their jumps and the nodes' NFQUEUE rules; list them."""
    removed: list[str] = []
    listing = host.run(mangle_rules(), check=False).stdout
    for chain in (chain_name(cluster), egress_chain_name(cluster)):
        for bridge in bridges:
            while host.run(jump("-D", bridge, chain), check=False).returncode == 0:
                removed.append(f"iptables jump {bridge}->{chain}")
        # Jumps from bridges no longer in the inventory: any jump to our chain.
        for line in listing.splitlines():
            tokens = line.split()
            hook = tokens[1] if len(tokens) > 1 else ""
            if (
                tokens[:1] == ["-A"]
                and hook in NODE_HOOKS
                and tokens[-2:] == ["-j", chain]
            ):
                argv = [*_IPT, "-D", *tokens[1:]]
                if host.run(argv, check=False).returncode == 0:
                    removed.append(f"iptables jump {' '.join(tokens[2:-2])}->{chain}")
        if f"-N {chain}" in listing:
            host.run(chain_flush(chain), check=False)
            if host.run(chain_delete(chain), check=False).returncode == 0:
                removed.append(f"iptables chain {chain}")
    for namespace in namespaces:
        ns = NetnsExecutor(namespace, host)
        try:
            rules = ns.run(mangle_rules(), check=False).stdout
        except CommandError:
            continue
        if "NFQUEUE" in rules:
            # The namespace is ours alone: its mangle hooks hold only our rules.
            for hook in NODE_HOOKS:
                ns.run(chain_flush(hook), check=False)
            removed.append(f"NFQUEUE rules in {namespace}")
    return removed


def install_rules(host: Executor, plan: DelayLinePlan) -> None:
    """Install the NFQUEUE rules of ``plan`` (after ``start``: never unserved)."""
    for chain in (plan.chain, plan.egress_chain):
        host.run(chain_create(chain), check=False)
        host.run(chain_flush(chain))
    for queue in plan.queues:
        if queue.namespace is None:
            host.run(nfqueue_rule(queue))
    for namespace in plan.node_namespaces:
        ns = NetnsExecutor(namespace, host)
        for hook in NODE_HOOKS:
            ns.run(chain_flush(hook))
        for queue in plan.queues:
            if queue.namespace == namespace:
                ns.run(nfqueue_rule(queue))
    for chain in (plan.chain, plan.egress_chain):
        for bridge in plan.bridges:
            if host.run(jump("-C", bridge, chain), check=False).returncode != 0:
                host.run(jump("-I", bridge, chain))


def installed_rule_count(host: Executor, plan: DelayLinePlan) -> tuple[int, int]:
    """NFQUEUE rules and jumps of ``plan`` found installed, and how many it plans."""
    found = 0
    listings: dict[str | None, str] = {
        None: host.run(mangle_rules(), check=False).stdout
    }
    for queue in plan.queues:
        wanted = " ".join(nfqueue_rule(queue)[5:])
        namespace = queue.namespace
        if namespace is not None and namespace not in listings:
            try:
                listings[namespace] = (
                    NetnsExecutor(namespace, host).run(mangle_rules(), check=False)
                ).stdout
            except CommandError:
                listings[namespace] = ""
        listing = listings[queue.namespace]
        found += any(_same(line, wanted) for line in listing.splitlines())
    chains = (plan.chain, plan.egress_chain)
    found += sum(
        host.run(jump("-C", b, c), check=False).returncode == 0
        for c in chains
        for b in plan.bridges
    )
    return found, len(plan.queues) + len(chains) * len(plan.bridges)


def _same(line: str, wanted: str) -> bool:
    # iptables -S prints "-A CHAIN -s 10.0.0.1/32 -i br ..." in its own order
    return sorted(line.split()) == sorted(wanted.split())


# --- what gets reported ------------------------------------------------------------


def delay_use(
    inventory: Inventory,
    features: EmulationFeatures,
    plan: DelayLinePlan,
    serving: bool,
    how: str,
) -> FeatureUse:
    """The delay feature for the manifest and ``cluster status``, with mechanism.

    ``serving``: the delay line runs and its rules are in place; ``how`` says with
    which pid and scheduling (or what is missing).
    """
    delayed = tuple(n.name for n in inventory.networks if n.profile.needs_delay)
    mechanism = delay_mechanism(features)
    if not delayed:
        return FeatureUse("delay", False, False, "no profile asks for delay or jitter")
    if mechanism == "netem":
        return FeatureUse(
            "delay", True, True, "tc netem leaf under the HTB class", delayed, "netem"
        )
    rate_only = tuple(network for network, _ in plan.rate_only)
    fallback = "; ".join(
        f"{network} gets its rate only: {why}" for network, why in plan.rate_only
    )
    if mechanism == "none":
        why = (
            f"{features.details.get('delay', 'tc netem unavailable')}; "
            f"NFQUEUE unavailable too: {features.details.get('nfqueue', 'not probed')}"
        )
        return FeatureUse("delay", True, False, why, delayed, "none", delayed)
    if not plan.queues:
        return FeatureUse(
            "delay",
            True,
            False,
            f"{NAME}: {fallback}",
            delayed,
            "delay-line",
            rate_only,
        )
    served = ", ".join(plan.delayed_networks)
    detail = f"{NAME} ({how}) on {served}; tc netem unavailable here"
    if fallback:
        detail += f"; {fallback}"
    return FeatureUse("delay", True, serving, detail, delayed, "delay-line", rate_only)
