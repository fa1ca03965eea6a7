"""gngdb-style MinimizeWrapper: logistic regression on scikit-learn's digits (0 vs 1..9 one-vs-rest).

Run:  python examples/gngdb_logistic_regression.py

The code is what a pytorch-minimize user already writes: a dict of ``minimize`` arguments and
a plain closure. Only the import changes.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from torchzero_bridge import MinimizeWrapper

torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)

model = torch.nn.Linear(64, 10)
loss_fn = torch.nn.CrossEntropyLoss()

minimizer_args = dict(method="CG", options={"disp": False, "maxiter": 100})
optimizer = MinimizeWrapper(model.parameters(), minimizer_args)


def closure() -> torch.Tensor:
    optimizer.zero_grad()
    output = model(X)
    loss = loss_fn(output, y) + 1e-4 * (model.weight**2).sum()
    loss.backward()
    return loss


optimizer.step(closure)
with torch.no_grad():
    accuracy = float((model(X).argmax(1) == y).float().mean())
res = optimizer.res  # gngdb's attribute name; also optimizer.result
print(f"CG: loss {res.fun:.4f}, train accuracy {accuracy:.3f}, {res.nit} iterations, {res.nfev} closure runs")
assert accuracy > 0.95
