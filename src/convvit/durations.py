"""The one way convvit writes a duration for people: ``12.3 s``, ``1m32s``, ``2h05m`` (the epoch lines of ``fit``,
the progress lines of ``sweep``). Imports nothing: both use it before (or without) torch."""
from __future__ import annotations

__all__ = ["format_duration"]


def format_duration(seconds: float) -> str:
    """``seconds`` to a tenth under a minute, then in whole minutes and seconds, then hours and minutes."""
    seconds = max(0.0, seconds)
    if seconds < 59.95:  # 59.96 s would print as "60.0 s"
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
