"""What an instance of a given memory size gets: Divio's table of memory to CPU share.

Both the control panel (which sizes are offered) and the controller (what a release's
containers run with) read it here, so the two never disagree."""

# Memory in MB -> CPUs, as Divio sizes its application containers.
CPU_SHARE_BY_MEMORY_MB: dict[int, float] = {256: 0.2, 512: 0.25, 1024: 0.5, 2048: 1.0, 4096: 2.0}
MEMORY_SIZES_MB = tuple(sorted(CPU_SHARE_BY_MEMORY_MB))


def cpu_share(memory_mb: int) -> float:
    """The CPUs of an instance of ``memory_mb``: the table's, or for a size between two
    entries the smaller one's (never more CPU than a customer's size buys)."""
    fitting = [size for size in MEMORY_SIZES_MB if size <= memory_mb]
    return CPU_SHARE_BY_MEMORY_MB[fitting[-1]] if fitting else CPU_SHARE_BY_MEMORY_MB[MEMORY_SIZES_MB[0]]
