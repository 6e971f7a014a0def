import os

import torch
from hypothesis import HealthCheck, settings

# Two CPU cores: keep each test process to one intra-op thread so parallel work does not thrash.
torch.set_num_threads(int(os.environ.get("ADAGATE_TEST_THREADS", "1")))

settings.register_profile(
    "default",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")
