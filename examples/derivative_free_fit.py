"""Fit a small network without gradients: particle swarm on a batched objective, then a swarm of Adams.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. python examples/derivative_free_fit.py   # or with the package installed
"""

from __future__ import annotations

import torch

import torchzero_bridge as tzb


def main() -> None:
    torch.manual_seed(0)
    X = torch.linspace(-2, 2, 64).unsqueeze(1)
    y = torch.sin(2 * X) + 0.05 * torch.randn_like(X)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def mse(m: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((m(inputs) - targets) ** 2).mean()

    # 1. Particle swarm: the whole swarm is evaluated in one vmapped call per step.
    objective = tzb.BatchObjective(model, mse, X, y)
    pso = tzb.ParticleSwarm(model.parameters(), n_particles=64, bounds=(-4.0, 4.0), seed=0)
    for step in range(300):
        loss = pso.step(objective)
        if step % 100 == 0:
            print(f"PSO step {step:3d}  loss {float(loss):.4f}  evaluations {pso.nfev}")
    print(f"PSO final loss {float(loss):.4f} (the model holds the best particle)")

    # 2. A swarm of Adam optimizers refines it; laggards are replaced by crossovers of the best two.
    swarm = tzb.SwarmOfOptimizers(model.parameters(), lambda p: torch.optim.Adam(p, lr=1e-2), n=4, seed=0)

    def closure(backward: bool = True) -> torch.Tensor:
        swarm.zero_grad()
        value = mse(model, X, y)
        if backward:
            value.backward()
        return value

    for _ in range(300):
        loss = swarm.step(closure)
    print(f"swarm of Adams final loss {float(loss):.4f}")


if __name__ == "__main__":
    main()
