#!/usr/bin/python3
"""Writes the diabetes example's two models as TorchScript files.

  mlp.pt     10 -> 16 -> 1, ReLU
  linear.pt  10 -> 1 (linear regression)

Each forward takes an N x 10 float tensor (the standardised features, in data/*.csv's column
order) and returns N x 1 predictions of the progression; the loss is the mean squared error.
The weights in the files are the initial weights of a federation, drawn with a fixed seed.

Run with Debian's python3-torch (PyTorch 1.13, matching libtorch-dev), from any folder:
  ./make_models.py
The output is deterministic (with Debian 12's python3 and python3-torch), so rerunning the
script reproduces the committed files' SHA-256; ../common/tabular_torch.py says how.
TorchScript also records the forward methods' source text and their line numbers in this
file: an edit above a forward gives new files with new hashes, even with the same weights.

Each model first standardises its inputs with a BatchNorm without weights, whose running
statistics the federation averages with the weights (more in tabular_torch.py); they are in
the data's units, total cholesterol running to 300 and its variance to 10^3.
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_torch  # noqa: E402 (found through the path above)

N_FEATURES = 10
HIDDEN = 16
SEED = 15


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(N_FEATURES, affine=False)
        self.fc1 = nn.Linear(N_FEATURES, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.norm(x))))


class LinearRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(N_FEATURES, affine=False)
        self.linear = nn.Linear(N_FEATURES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


def main():
    models = {"mlp.pt": Mlp, "linear.pt": LinearRegression}
    tabular_torch.write_models(__file__, models, N_FEATURES, SEED)


if __name__ == "__main__":
    main()
