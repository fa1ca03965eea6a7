"""SPSA and MeZO fine-tune the last layer of a pretrained model without any backward pass.

Run:  python examples/spsa_mezo_finetune.py

A small MLP is trained on digits 0-4 with backprop, then its last layer is replaced and
fine-tuned for digits 5-9 using only loss values. Both regenerate each perturbation from its
seed and move the weights there and back exactly, and here both hand their estimate to Adam
through ``.grad``; with plain SGD (or no inner optimizer) MeZO needs no gradient buffer at all.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

import torchzero_bridge as tzb

torch.set_num_threads(1)
X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)
old, new = y < 5, y >= 5

torch.manual_seed(0)
body = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh())
head = torch.nn.Linear(32, 5)
pre = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-2)
for _ in range(200):  # ordinary pretraining with gradients
    pre.zero_grad()
    torch.nn.functional.cross_entropy(head(body(X[old])), y[old]).backward()
    pre.step()
with torch.no_grad():
    features = body(X[new])  # the body is frozen
targets = y[new] - 5


def finetune(estimator_cls: type, steps: int = 600) -> float:
    torch.manual_seed(1)
    new_head = torch.nn.Linear(32, 5)
    opt = estimator_cls(new_head.parameters(), h=1e-2, opt=lambda p: torch.optim.Adam(p, lr=3e-2), seed=0)

    def closure(backward: bool = True) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(new_head(features), targets)

    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        return float((new_head(features).argmax(1) == targets).float().mean())


for cls in (tzb.SPSA, tzb.MeZO):
    acc = finetune(cls)
    print(f"{cls.__name__:5s} fine-tuned head: accuracy {acc:.3f} on digits 5-9 (2 closure runs per step, no backward)")
    assert acc > 0.85
