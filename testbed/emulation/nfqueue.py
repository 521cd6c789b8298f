"""The nfnetlink_queue wire format: config, verdict and packet messages as bytes.

Just the part of ``linux/netfilter/nfnetlink_queue.h`` a delay line needs, built and
parsed by pure functions (no dependency, no libnetfilter_queue): bind a queue, ask
for packet metadata only (``COPY_META``: the id, never the payload), accept GSO
packets whole, and give verdicts one by one or for every id up to one (batch).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 0x4

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (queue, big endian)
_NLATTR = struct.Struct("=HH")  # len, type (host order)


def _align(n: int) -> int:
    return (n + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """Return one netlink attribute (header, payload, padding to 4 bytes)."""
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def message(
    msg: int, queue: int, attributes: bytes, seq: int = 0, flags: int = NLM_F_REQUEST
) -> bytes:
    """Return one nfnetlink_queue message for ``queue`` with ``attributes``."""
    if not 0 <= queue <= 0xFFFF:
        raise ValueError(f"NFQUEUE numbers are 0-65535, got {queue}")
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attributes
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def bind(queue: int, seq: int = 1) -> bytes:
    """Bind this socket to ``queue`` (the kernel acks or refuses)."""
    cmd = struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC)
    return message(
        NFQNL_MSG_CONFIG,
        queue,
        attribute(NFQA_CFG_CMD, cmd),
        seq,
        NLM_F_REQUEST | NLM_F_ACK,
    )


def unbind(queue: int, seq: int = 1) -> bytes:
    """Unbind ``queue`` (packets still queued are dropped by the kernel)."""
    cmd = struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_UNSPEC)
    return message(NFQNL_MSG_CONFIG, queue, attribute(NFQA_CFG_CMD, cmd), seq)


def configure(queue: int, maxlen: int, seq: int = 2) -> bytes:
    """Metadata only, a queue of ``maxlen`` packets, GSO packets kept whole."""
    attrs = attribute(NFQA_CFG_PARAMS, struct.pack("!IBxxx", 0, NFQNL_COPY_META))
    attrs += attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
    attrs += attribute(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO))
    attrs += attribute(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO))
    return message(NFQNL_MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK)


def verdict(queue: int, packet_id: int, accept: bool = True) -> bytes:
    """Accept (or drop) the one packet ``packet_id`` of ``queue``."""
    hdr = struct.pack("!II", NF_ACCEPT if accept else NF_DROP, packet_id)
    return message(NFQNL_MSG_VERDICT, queue, attribute(NFQA_VERDICT_HDR, hdr))


def verdict_batch(queue: int, up_to_id: int) -> bytes:
    """Accept every packet of ``queue`` whose id is at most ``up_to_id``."""
    hdr = struct.pack("!II", NF_ACCEPT, up_to_id)
    return message(NFQNL_MSG_VERDICT_BATCH, queue, attribute(NFQA_VERDICT_HDR, hdr))


@dataclass(frozen=True)
class Queued:
    """One packet the kernel handed over: its queue and id."""

    queue: int
    packet_id: int


@dataclass(frozen=True)
class Ack:
    """The kernel's answer to a request: ``error`` 0 is success, else -errno."""

    seq: int
    error: int


def parse(data: bytes) -> list[Queued | Ack]:
    """Return the packets and acks in one ``recv`` buffer, in order."""
    found: list[Queued | Ack] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, body)
            found.append(Ack(seq, error))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            _, _, queue = _NFGENMSG.unpack_from(data, body)
            packet_id = _packet_id(data, body + _NFGENMSG.size, offset + length)
            if packet_id is not None:
                found.append(Queued(queue, packet_id))
        offset += _align(length)
    return found


def _packet_id(data: bytes, start: int, end: int) -> int | None:
    while start + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, start)
        if length < _NLATTR.size:
            return None
        if kind & 0x3FFF == NFQA_PACKET_HDR:
            (packet_id,) = struct.unpack_from("!I", data, start + _NLATTR.size)
            return int(packet_id)
        start += _align(length)
    return None
