"""adagate: adaptive-computation building blocks for PyTorch.

Gumbel gates, a recurrent multi-modal policy, masked late fusion, FLOP-aware losses, routing that
really skips the compute a gate turns off, and MAC accounting, after AdaMML (ICCV 2021).
"""

from adagate.flops import count_macs

__version__ = "0.0.1"

__all__ = [
    "__version__",
    "count_macs",
]
