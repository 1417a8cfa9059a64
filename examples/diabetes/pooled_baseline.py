#!/usr/bin/python3
"""The pooled baseline for the diabetes federation: each example model trained with plain
PyTorch on all three sites' rows at once (data/pooled.csv), evaluated on data/test.csv.

Features are standardised with the training file's mean and population standard deviation
(what the federation's pooled standardisation computes from the sites' sums). Training
starts from the committed .pt files' weights: SGD, mean squared error on the raw target (not
standardised), fixed seed.

  ./pooled_baseline.py                           # both models, pooled.csv, 20 epochs
  ./pooled_baseline.py --train data/site-a.csv   # one site alone, for comparison
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_torch  # noqa: E402 (found through the path above)

LABEL = "progression"  # disease progression one year after baseline
SEED = 15
# SGD step sizes: the target is not standardised (mean about 152, standard deviation about 77),
# and at 0.002 or more the MLP's updates grow until the loss is NaN.
LEARNING_RATES = {"mlp.pt": 0.001, "linear.pt": 0.01}


def evaluate(model, x, y):
    """The mean squared and absolute errors, in the target's units, and R²."""
    with torch.no_grad():
        predicted = model(x).double()
    y = y.double()
    error = predicted - y
    sse = (error ** 2).sum().item()
    sst = ((y - y.mean()) ** 2).sum().item()
    mae = error.abs().mean().item()
    return [f"{sse / len(y):.1f}", f"{mae:.2f}", f"{1 - sse / sst:.4f}"]


def main():
    tabular_torch.pooled_baseline(
        __doc__, __file__, label=LABEL, models=list(LEARNING_RATES),
        loss_fn=torch.nn.MSELoss(), learning_rate=LEARNING_RATES, seed=SEED,
        columns=["MSE", "MAE", "R²"], evaluate=evaluate)


if __name__ == "__main__":
    main()
