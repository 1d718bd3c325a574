"""The process's resident-set high-water mark, resettable on Linux: per-phase peak memory of a
process that runs several measured phases (a DCA fit, one seed of a grouped job)."""

from __future__ import annotations

import resource


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process to its current RSS (Linux >= 4.0:
    ``/proc/self/clear_refs`` ``5``); False where impossible (the mark then keeps earlier peaks)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The high-water mark in MB (2^20 bytes) since the process started or :func:`reset_peak_rss`."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
