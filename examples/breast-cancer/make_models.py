#!/usr/bin/python3
"""Writes the breast-cancer example's two models as TorchScript files.

  mlp.pt       30 -> 16 -> 1, ReLU
  logistic.pt  30 -> 1 (logistic regression)

Each forward takes an N x 30 float tensor (the standardised features, in data/*.csv's column
order) and returns N x 1 logits (of sklearn's class 1, benign); the loss is BCE with logits.
The weights in the files are the initial weights of a federation, drawn with a fixed seed.

Run with Debian's python3-torch (PyTorch 1.13, matching libtorch-dev), from any folder:
  ./make_models.py
The output is deterministic (with Debian 12's python3 and python3-torch), so rerunning the
script reproduces the committed files' SHA-256; ../common/tabular_torch.py says how.
TorchScript also records the forward methods' source text and their line numbers in this
file: an edit above a forward gives new files with new hashes, even with the same weights.

Each model first standardises its inputs with a BatchNorm without weights, whose running
statistics the federation averages with the weights (more in tabular_torch.py); they are in
the data's units, a tumour's area running to 2,500 and its variance to 10^5.
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_torch  # noqa: E402 (found through the path above)

N_FEATURES = 30
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


class Logistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(N_FEATURES, affine=False)
        self.linear = nn.Linear(N_FEATURES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


def main():
    models = {"mlp.pt": Mlp, "logistic.pt": Logistic}
    tabular_torch.write_models(__file__, models, N_FEATURES, SEED)


if __name__ == "__main__":
    main()
