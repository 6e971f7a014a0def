"""End to end on a toy problem: the policy learns to switch off a modality that carries nothing.

Two synthetic modalities per segment: "signal" holds a noisy class prototype, "noise" holds
noise. Policy + recognition heads + masked late fusion + the efficiency loss (AdaMML Eq. 4) are
trained jointly, as in the paper's second stage (dense recognition, decisions multiply the
logits); evaluation routes each recognition head over the selected segments only.
"""

import torch
from torch import nn
from torch.nn import functional as F

from adagate.fusion import MaskedLateFusion
from adagate.losses import efficiency_loss
from adagate.policy import MultiModalPolicy
from adagate.routing import run_selected
from adagate.schedules import ExponentialDecay, set_tau

CLASSES, SEGMENTS, DIM, BATCH, STEPS = 4, 5, 8, 64, 300
MODALITIES = ("signal", "noise")


def make_batch(prototypes, batch, generator):
    labels = torch.randint(CLASSES, (batch,), generator=generator)
    # One segment shows the class poorly (noise of scale 2); the mean over 5 shows it well.
    signal = prototypes[labels][:, None] + 2.0 * torch.randn(
        batch, SEGMENTS, DIM, generator=generator
    )
    noise = torch.randn(batch, SEGMENTS, DIM, generator=generator)
    return {"signal": signal, "noise": noise}, labels


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.policy = MultiModalPolicy(
            dict.fromkeys(MODALITIES, DIM), hidden_size=16, mlp_sizes=(32,)
        )
        self.recognition = nn.ModuleDict({name: nn.Linear(DIM, CLASSES) for name in MODALITIES})
        self.fusion = MaskedLateFusion(self.policy.modalities)

    def forward(self, inputs, decisions=None, generator=None, route=False):
        if decisions is None:
            decisions = self.policy(inputs, generator=generator).decisions
        logits = []
        for m, name in enumerate(self.policy.modalities):
            x = inputs[name].flatten(0, 1)
            if route:
                chosen = decisions[..., m].detach().flatten().bool()
                out = run_selected(self.recognition[name], x, chosen)
            else:
                out = self.recognition[name](x)
            logits.append(out.unflatten(0, (-1, SEGMENTS)))
        return self.fusion(torch.stack(logits, 2), decisions), decisions


def train(model, prototypes, adaptive):
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = ExponentialDecay(start=5.0, rate=0.5)
    for step in range(STEPS):
        inputs, labels = make_batch(prototypes, BATCH, generator)
        if adaptive:
            set_tau(model, schedule(step / 100))
            fused, decisions = model(inputs, generator=generator)
            correct = fused.detach().argmax(-1) == labels
            loss = F.cross_entropy(fused, labels) + efficiency_loss(
                decisions, correct, lambdas=[0.1, 0.1], gamma=10.0
            )
        else:
            fused, _ = model(inputs, decisions=torch.ones(BATCH, SEGMENTS, len(MODALITIES)))
            loss = F.cross_entropy(fused, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model, prototypes, adaptive):
    model.eval()
    inputs, labels = make_batch(prototypes, 2000, torch.Generator().manual_seed(2))
    if adaptive:
        fused, decisions = model(inputs, route=True)
    else:
        decisions = torch.ones(2000, SEGMENTS, len(MODALITIES))
        fused, _ = model(inputs, decisions=decisions)
    accuracy = (fused.argmax(-1) == labels).float().mean().item()
    return accuracy, decisions.mean(dim=(0, 1))


def test_policy_learns_to_skip_the_useless_modality_at_no_accuracy_loss():
    prototypes = torch.randn(CLASSES, DIM, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    dense = ToyModel()
    train(dense, prototypes, adaptive=False)
    dense_accuracy, _ = evaluate(dense, prototypes, adaptive=False)

    torch.manual_seed(0)
    adaptive = ToyModel()
    initial_rate = adaptive.policy(make_batch(prototypes, 256, torch.Generator())[0]).decisions
    assert initial_rate.mean() > 0.8
    train(adaptive, prototypes, adaptive=True)
    accuracy, rates = evaluate(adaptive, prototypes, adaptive=True)

    signal_rate, noise_rate = rates.tolist()
    assert noise_rate < 0.2, rates
    assert signal_rate > 0.5, rates
    # 2000 test videos: a 2-point margin is ~3 standard errors of an accuracy near 0.9.
    assert accuracy >= dense_accuracy - 0.02, (accuracy, dense_accuracy)
    assert dense_accuracy > 0.8
