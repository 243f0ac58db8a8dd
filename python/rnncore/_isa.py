"""Instruction sets in words: what the kernels were built for, what this CPU runs (`rnncore info`).

The compiled core names x86 extensions the same way on both sides (``_core.build_info()
["isa_features"]``, ``_core.cpu_isa_features()``); the levels are RNNCORE_ARCH's names.
"""

from __future__ import annotations

import platform
from typing import Optional, Sequence

# Each level needs every extension of its own row and of the rows below it.
X86_LEVELS = (
    ("x86-64-v4", ("AVX512F", "AVX512BW", "AVX512VL", "AVX512DQ", "AVX512CD")),
    ("x86-64-v3", ("AVX", "AVX2", "FMA")),
    ("x86-64-v2", ("SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT")),
)
# Named on every x86-64 build, so left out of the short description unless nothing else is there.
X86_COMMON = ("SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT", "AVX")


def x86_level(features: Sequence[str]) -> str:
    """The highest of RNNCORE_ARCH's levels that ``features`` cover: 'x86-64-v4', ..., 'x86-64'."""
    have = set(features)
    for index, (name, _) in enumerate(X86_LEVELS):
        if all(set(needs) <= have for _, needs in X86_LEVELS[index:]):
            return name
    return "x86-64"


def describe(arch: str, features: Sequence[str]) -> str:
    """'x86-64-v3 (AVX2, FMA, F16C, BMI2)', 'x86-64 (SSE2)', 'aarch64 (NEON)', ..."""
    if arch != "x86-64":
        return f"{arch} ({', '.join(features)})" if features else arch
    shown = [f for f in features if f not in X86_COMMON] or list(features[-2:])
    return f"{x86_level(features)} ({', '.join(shown)})" if shown else x86_level(features)


def missing(built_for: Sequence[str], cpu: Optional[Sequence[str]]) -> list[str]:
    """The extensions the kernels use that the CPU lacks ([] when the CPU cannot be asked)."""
    return [] if cpu is None else [f for f in built_for if f not in set(cpu)]


def cpu_model_name(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, with its family and model numbers where /proc/cpuinfo has them (a
    VM may show only 'AMD EPYC': family 25 model 1 is then Zen 3); elsewhere what the platform
    module says."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or fields.get("Model") or fields.get("Hardware")
    if not name:
        return platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name
