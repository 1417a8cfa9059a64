#!/usr/bin/python3
"""The pooled baseline for the breast-cancer federation: each example model trained with plain
PyTorch on all three sites' rows at once (data/pooled.csv), evaluated on data/test.csv.

Features are standardised with the training file's mean and population standard deviation
(what the federation's pooled standardisation computes from the sites' sums). Training
starts from the committed .pt files' weights: SGD, BCE with logits, fixed seed.

  ./pooled_baseline.py                           # both models, pooled.csv
  ./pooled_baseline.py --train data/site-a.csv   # one site alone, for comparison
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_torch  # noqa: E402 (found through the path above)

LABEL = "diagnosis"  # 0 = malignant, 1 = benign (sklearn's encoding)
SEED = 15


def auc(scores, labels):
    """AUC-ROC by counting pairs: the chance that a random positive (label 1) scores above a
    random negative, ties counting one half. The same figure for malignant with -score."""
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    above = (pos[:, None] > neg[None, :]).sum().item()
    ties = (pos[:, None] == neg[None, :]).sum().item()
    return (above + 0.5 * ties) / (len(pos) * len(neg))


def evaluate(model, x, y):
    """Accuracy, balanced accuracy and AUC, the threshold at logit 0."""
    with torch.no_grad():
        logits = model(x).squeeze(1)
    labels = y.squeeze(1)
    predicted = (logits > 0).double()
    recall = [((predicted == c) & (labels == c)).sum().item() / (labels == c).sum().item()
              for c in (0, 1)]
    accuracy = (predicted == labels).double().mean().item()
    return [f"{accuracy:.4f}", f"{sum(recall) / 2:.4f}", f"{auc(logits, labels):.4f}"]


def main():
    tabular_torch.pooled_baseline(
        __doc__, __file__, label=LABEL, models=["mlp.pt", "logistic.pt"],
        loss_fn=torch.nn.BCEWithLogitsLoss(), learning_rate=0.05, seed=SEED,
        columns=["accuracy", "balanced accuracy", "AUC"], evaluate=evaluate)


if __name__ == "__main__":
    main()
