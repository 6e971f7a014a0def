"""adagate: adaptive-computation building blocks for PyTorch.

Gumbel gates, a recurrent multi-modal policy, masked late fusion, FLOP-aware losses, routing that
really skips the compute a gate turns off, and MAC accounting, after AdaMML (ICCV 2021).
"""

from adagate.flops import ModalityCosts, count_macs, expected_gflops
from adagate.fusion import MaskedLateFusion, masked_late_fusion
from adagate.gates import GumbelGate, gumbel_sigmoid, gumbel_softmax
from adagate.inference import optimize_for_inference
from adagate.losses import BudgetLoss, efficiency_loss, recovery_loss
from adagate.operating import (
    OperatingPoint,
    choose_operating_point,
    log_likelihood,
    pareto_front,
    sweep_thresholds,
    threshold_grid,
    top1_accuracy,
)
from adagate.policy import MultiModalPolicy, PolicyOutput, PolicyState
from adagate.routing import route_segments, run_selected
from adagate.schedules import (
    CosineDecay,
    ExponentialDecay,
    LinearDecay,
    TemperatureSchedule,
    set_tau,
)
from adagate.streaming import (
    FusionState,
    StreamOutput,
    StreamState,
    online_late_fusion,
    route_segment,
    stream_step,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetLoss",
    "CosineDecay",
    "ExponentialDecay",
    "FusionState",
    "GumbelGate",
    "LinearDecay",
    "MaskedLateFusion",
    "ModalityCosts",
    "MultiModalPolicy",
    "OperatingPoint",
    "PolicyOutput",
    "PolicyState",
    "StreamOutput",
    "StreamState",
    "TemperatureSchedule",
    "__version__",
    "choose_operating_point",
    "count_macs",
    "efficiency_loss",
    "expected_gflops",
    "gumbel_sigmoid",
    "gumbel_softmax",
    "log_likelihood",
    "masked_late_fusion",
    "online_late_fusion",
    "optimize_for_inference",
    "pareto_front",
    "recovery_loss",
    "route_segment",
    "route_segments",
    "run_selected",
    "set_tau",
    "stream_step",
    "sweep_thresholds",
    "threshold_grid",
    "top1_accuracy",
]
