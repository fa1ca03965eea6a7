"""Global optimizers on a small physics model: a damped oscillator's parameters from a noisy trace.

Run:  python examples/global_oscillator.py

``x(t) = A exp(-gamma t) cos(omega t + phi)``: the loss over (omega, phi) has many local
minima. The output shows a local method depending on its starting guess (L-BFGS-B from
omega = 2 finds the true omega = 2.7; from omega = 12 it stops in a local minimum near 11 with
a loss about 500 times higher), while the global methods, started from the bad guess, search
the whole box given by the per-group bounds and recover the true parameters.
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
        {"params": [model.amplitude], "bounds": (0.5, 3.0)},
        {"params": [model.gamma], "bounds": (0.0, 0.3)},
        {"params": [model.omega], "bounds": (0.5, 15.0)},
        {"params": [model.phi], "bounds": (-np.pi, np.pi)},
    ]


def report(name: str, model: Oscillator, loss: float) -> None:
    got = {k: round(float(getattr(model, k).detach()), 3) for k in true}
    print(f"{name:26s} loss {loss:.2e}  {got}")


local_losses = {}
for omega0 in (2.0, 12.0):
    model = Oscillator()
    with torch.no_grad():
        model.omega.fill_(omega0)
    opt = tzb.MinimizeWrapper(groups(model), method="L-BFGS-B")
    local_losses[omega0] = float(opt.step(tzb.BatchObjective(model, loss_fn, t, trace)))
    report(f"L-BFGS-B from omega={omega0:g}", model, local_losses[omega0])
# the claim in the docstring: the local answer depends on the start
assert local_losses[2.0] < 1e-3 < 0.1 < local_losses[12.0]

solvers = {
    "differential evolution": lambda m: tzb.DifferentialEvolutionWrapper(groups(m), {"rng": 0, "popsize": 20}),
    # no minimizer_args: the default local search (L-BFGS-B) then stays inside the bounds, as in scipy
    "dual annealing": lambda m: tzb.DualAnnealingWrapper(groups(m), None, {"rng": 0, "maxiter": 200}),
    "basin hopping": lambda m: tzb.BasinHoppingWrapper(groups(m), {"method": "L-BFGS-B"}, {"niter": 100, "rng": 0}),
}
for name, make in solvers.items():
    model = Oscillator()
    opt = make(model)
    # a BatchObjective is also a closure; differential evolution evaluates whole generations with vmap
    loss = float(opt.step(tzb.BatchObjective(model, loss_fn, t, trace)))
    report(name, model, loss)
    assert loss < 1e-3 and abs(float(model.omega.detach()) - true["omega"]) < 0.05
