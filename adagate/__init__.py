"""adagate: adaptive-computation building blocks for PyTorch.

Gumbel gates, a recurrent multi-modal policy, masked late fusion, FLOP-aware losses, routing that
really skips the compute a gate turns off, and MAC accounting, after AdaMML (ICCV 2021).
"""

from adagate.flops import ModalityCosts, count_macs, expected_gflops
from adagate.fusion import MaskedLateFusion, masked_late_fusion
from adagate.gates import GumbelGate, gumbel_sigmoid, gumbel_softmax
from adagate.losses import BudgetLoss, efficiency_loss
from adagate.policy import MultiModalPolicy, PolicyOutput, PolicyState
from adagate.routing import run_selected
from adagate.schedules import (
    CosineDecay,
    ExponentialDecay,
    LinearDecay,
    TemperatureSchedule,
    set_tau,
)

__version__ = "0.0.1"

__all__ = [
    "BudgetLoss",
    "MaskedLateFusion",
    "ModalityCosts",
    "MultiModalPolicy",
    "PolicyOutput",
    "PolicyState",
    "efficiency_loss",
    "expected_gflops",
    "masked_late_fusion",
    "CosineDecay",
    "ExponentialDecay",
    "GumbelGate",
    "LinearDecay",
    "TemperatureSchedule",
    "__version__",
    "count_macs",
    "gumbel_sigmoid",
    "gumbel_softmax",
    "run_selected",
    "set_tau",
]
