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


_SIZE_UNITS = {
    **{"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4},
    **{"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4},
}


def parse_size(text: str) -> int:
    """``"2GB"`` -> ``2_000_000_000``; ``"512MiB"``, ``"1.5GB"`` and plain bytes work too."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 2GB, 500MB, 1GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def plural(count: int, noun: str) -> str:
    """``1 file``, ``3 files``, ``1,024 batches``."""
    ending = "es" if noun.endswith(("s", "sh", "ch", "x")) else "s"
    return f"{count:,} {noun if count == 1 else noun + ending}"
