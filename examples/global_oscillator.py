"""Global optimizers on a small physics model: a damped oscillator's parameters from a noisy trace.

Run:  python examples/global_oscillator.py

``x(t) = A exp(-gamma t) cos(omega t + phi)``: the loss over (omega, phi) has many local
minima. A local method depends on its starting guess; the global ones search the whole box
given by the per-group bounds and recover the true parameters.
"""

from __future__ import annotations

import numpy as np
import torch

import torchzero_bridge as tzb

torch.set_num_threads(1)
t = torch.linspace(0, 30, 300, dtype=torch.float64)
true = {"amplitude": 1.5, "gamma": 0.1, "omega": 2.7, "phi": 0.8}
noise = torch.tensor(np.random.default_rng(0).normal(0, 0.02, size=300))
trace = true["amplitude"] * torch.exp(-true["gamma"] * t) * torch.cos(true["omega"] * t + true["phi"]) + noise


class Oscillator(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.amplitude = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        self.gamma = torch.nn.Parameter(torch.tensor(0.1, dtype=torch.float64))
        self.omega = torch.nn.Parameter(torch.tensor(12.0, dtype=torch.float64))
        self.phi = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.exp(-self.gamma * t) * torch.cos(self.omega * t + self.phi)


def loss_fn(model: torch.nn.Module, t: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    return torch.mean((model(t) - trace) ** 2)


def groups(model: Oscillator) -> list[dict]:
    return [
        {"params": [model.amplitude], "bounds": (0.1, 3.0)},
        {"params": [model.gamma], "bounds": (0.0, 1.0)},
        {"params": [model.omega], "bounds": (0.5, 15.0)},
        {"params": [model.phi], "bounds": (-np.pi, np.pi)},
    ]


def report(name: str, model: Oscillator, loss: float) -> None:
    got = {k: round(float(getattr(model, k).detach()), 3) for k in true}
    print(f"{name:26s} loss {loss:.2e}  {got}")


model = Oscillator()
opt = tzb.MinimizeWrapper(groups(model), method="L-BFGS-B")
local = tzb.BatchObjective(model, loss_fn, t, trace)
report("L-BFGS-B from the guess", model, float(opt.step(local)))

solvers = {
    "differential evolution": lambda m: tzb.DifferentialEvolutionWrapper(groups(m), {"rng": 0, "popsize": 20}),
    "dual annealing": lambda m: tzb.DualAnnealingWrapper(groups(m), {"method": "L-BFGS-B"}, {"rng": 0, "maxiter": 200}),
    "basin hopping": lambda m: tzb.BasinHoppingWrapper(groups(m), {"method": "L-BFGS-B"}, {"niter": 100, "rng": 0}),
}
for name, make in solvers.items():
    model = Oscillator()
    opt = make(model)
    # a BatchObjective is also a closure; differential evolution evaluates whole generations with vmap
    loss = float(opt.step(tzb.BatchObjective(model, loss_fn, t, trace)))
    report(name, model, loss)
    assert loss < 1e-3 and abs(float(model.omega.detach()) - true["omega"]) < 0.05
