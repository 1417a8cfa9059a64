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
script reproduces the committed files' SHA-256:
TorchScript files hold the generated code and the source file's name, so the script fixes
Python's hash seed (which orders a module's constants in that code) and names its source
by its base name wherever the checkout lies.
Each model first standardises its inputs with a BatchNorm without weights (norm.running_mean
and norm.running_var, float32 buffers): while training, by each batch's own statistics; when
evaluating, by running statistics that the federation averages with the weights (the
coordinator's [model] buffers = "average", the default). No site's feature statistics leave
it except inside that average, so the raw CSV values can be fed as they are.
"""
import hashlib
import os
import sys

import torch
from torch import nn

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


def save(model, path):
    scripted = torch.jit.script(model)
    out = scripted(torch.zeros(2, N_FEATURES))
    assert out.shape == (2, 1), out.shape
    scripted.save(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{digest}  {os.path.basename(path)}  ({n_params} parameters)")


def reproducible(*models):
    """Re-runs the script under a fixed hash seed, and has TorchScript record the models'
    source as "make_models.py" rather than the checkout's absolute path."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)  # where the relative name finds the source
    for cls in models:
        code = cls.forward.__code__
        cls.forward.__code__ = code.replace(co_filename=os.path.basename(code.co_filename))
    return here


def main():
    here = reproducible(Mlp, Logistic)
    torch.manual_seed(SEED)
    save(Mlp(), os.path.join(here, "mlp.pt"))
    torch.manual_seed(SEED)
    save(Logistic(), os.path.join(here, "logistic.pt"))


if __name__ == "__main__":
    main()
