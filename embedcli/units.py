"""Human-readable sizes and rates for messages and summaries (decimal units, as disks are sold)."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """``1234567`` -> ``'1.2 MB'``."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def rate(count: float, seconds: float, unit: str) -> str:
    """``rate(1.2e6, 1, "tok")`` -> ``'1.2M tok/s'``."""
    if seconds <= 0:
        return "-"
    value = count / seconds
    for prefix in ("", "k", "M", "G"):
        if value < 1000 or prefix == "G":
            return f"{value:.1f}{prefix} {unit}/s"
        value /= 1000
    return "-"


def bytes_rate(nbytes: float, seconds: float) -> str:
    """``bytes_rate(5e8, 2)`` -> ``'250.0 MB/s'``."""
    return f"{human_bytes(nbytes / seconds)}/s" if seconds > 0 else "-"
