"""Device classes: `device_class: pi4` in the inventory becomes a CPU quota and memory.

An emulated node of class ``pi4`` gets the compute of a Raspberry Pi 4 in cores
of this machine (``cpu_quota``) and its memory (``memory_mb``); explicit
``cpu_quota`` / ``memory_mb`` beside the class override it. A real lab ignores
both for limits and records the class in the manifest.

The quota is the device's whole CPU in this machine's cores::

    cpu_quota = cores * per_core / host_core_speed     (rounded to 0.05)

- ``per_core``: one core of the device relative to the **reference core**, a
  recent x86 server core with a Geekbench 6 single-core score of about 1500
  (AMD Zen 3/Zen 4 EPYC or Intel Ice Lake/Sapphire Rapids Xeon at 2.5-3.5 GHz).
- ``cores``: the device's cores (4 for every class here): the device can never
  give a node more than ``cores * per_core`` reference cores.
- ``host_core_speed``: this machine's core relative to the reference (inventory
  key ``host_core_speed``, any level, default 1.0). This machine (an AMD EPYC
  with AVX-512, Zen 4, 2.6 GHz in a VM) is taken as 1.0; ``bench/device_classes.py``
  measures how each class's quota slows training here.

The per-core figures are **approximate** Geekbench 6 single-core scores, from
published results as remembered without internet access (Geekbench Browser
entries, Jeff Geerling's sbc-reviews, vendor launch claims), and cross-checked
with clock x IPC where a board has few results: Cortex-A53 has about half the
IPC of a Cortex-A72, a Cortex-A57 about 0.85 of it. They are good to about
±20%. On ML kernels the gap to x86 is larger than Geekbench's (AVX2/AVX-512
against 128-bit NEON); docs/benchmarks.md shows what this machine measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from inventory.values import BadValue, describe

# Geekbench 6 single-core score of the reference x86 core (approximate).
REFERENCE_GB6_SINGLE = 1500.0
QUOTA_STEP = 0.05


@dataclass(frozen=True)
class DeviceClass:
    """One board: its CPU, cores, approximate single-core score and memory."""

    name: str
    board: str
    cpu: str
    cores: int
    gb6_single: float  # approximate Geekbench 6 single-core score
    memory_mb: int
    source: str

    @property
    def per_core(self) -> float:
        """One core of this board relative to the reference x86 core."""
        return self.gb6_single / REFERENCE_GB6_SINGLE

    def cpu_quota(self, host_core_speed: float = 1.0) -> float:
        """The board's whole CPU in cores of a machine ``host_core_speed`` times
        the reference core (at least one step of 0.05)."""
        if not host_core_speed > 0:
            raise ValueError(f"host_core_speed must be > 0, got {host_core_speed!r}")
        cores = self.cores * self.per_core / host_core_speed
        return max(QUOTA_STEP, round(round(cores / QUOTA_STEP) * QUOTA_STEP, 2))

    def slowdown(self, host_core_speed: float = 1.0) -> float:
        """How much slower one thread runs on this board than on this machine."""
        return host_core_speed / self.per_core


DEVICE_CLASSES: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        DeviceClass(
            "pi3",
            "Raspberry Pi 3 Model B",
            "Cortex-A53 @ 1.2 GHz",
            4,
            95.0,
            1024,
            "A53 at half the A72's IPC, scaled from the Pi 4 by clock (1.2/1.5)",
        ),
        DeviceClass(
            "pi3b+",
            "Raspberry Pi 3 Model B+",
            "Cortex-A53 @ 1.4 GHz",
            4,
            110.0,
            1024,
            "as pi3, at 1.4 GHz",
        ),
        DeviceClass(
            "pi4",
            "Raspberry Pi 4 Model B",
            "Cortex-A72 @ 1.5 GHz",
            4,
            240.0,
            4096,
            "Geekbench 6 results of the Pi 4 at 1.5 GHz (about 220-260)",
        ),
        DeviceClass(
            "pi4-1.8",
            "Raspberry Pi 4 Model B (1.8 GHz boards) / Pi 400",
            "Cortex-A72 @ 1.8 GHz",
            4,
            290.0,
            4096,
            "as pi4, at 1.8 GHz",
        ),
        DeviceClass(
            "pi5",
            "Raspberry Pi 5",
            "Cortex-A76 @ 2.4 GHz",
            4,
            770.0,
            8192,
            "Geekbench 6 results of the Pi 5 (about 730-800); Raspberry Pi's "
            "launch claim of 2-3x a Pi 4",
        ),
        DeviceClass(
            "jetson-nano",
            "NVIDIA Jetson Nano (4 GB)",
            "Cortex-A57 @ 1.43 GHz",
            4,
            195.0,
            4096,
            "A57 at about 0.85 of the A72's IPC, scaled from the Pi 4 by clock "
            "(1.43/1.5); CPU only, its GPU is not emulated",
        ),
    )
}


def device_class(value: object) -> DeviceClass:
    """The class an inventory names (``device_class: pi4``); else BadValue
    listing the known ones."""
    known = ", ".join(DEVICE_CLASSES)
    if not isinstance(value, str) or not value.strip():
        raise BadValue(
            f"device_class must name a class, got {describe(value)}",
            f"use one of: {known}",
        )
    found = DEVICE_CLASSES.get(value.strip().lower())
    if found is None:
        raise BadValue(
            f"unknown device_class {value!r}; the known classes are: {known}",
            "use one of them, or give cpu_quota (cores) and memory_mb instead",
        )
    return found


def host_core_speed(value: object) -> float:
    """This machine's core relative to the reference (``host_core_speed``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadValue(
            f"host_core_speed must be a number > 0, got {describe(value)}",
            "give this machine's core relative to the reference core "
            "(inventory/device_classes.py), like 1.0 or 0.8",
        )
    return float(value)
