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
import argparse
import csv
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
LABEL = "progression"  # disease progression one year after baseline
SEED = 15
# SGD step sizes: the target is not standardised (mean about 152, standard deviation about 77),
# and at 0.002 or more the MLP's updates grow until the loss is NaN.
LEARNING_RATES = {"mlp.pt": 0.001, "linear.pt": 0.01}


def load(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        label = header.index(LABEL)
        rows = [[float(v) for v in row] for row in reader]
    data = torch.tensor(rows, dtype=torch.float64)
    features = torch.cat([data[:, :label], data[:, label + 1:]], dim=1)
    return features, data[:, label:label + 1]


def standardise(x, mean, std):
    return ((x - mean) / std).float()


def evaluate(model, x, y):
    with torch.no_grad():
        predicted = model(x).double()
    y = y.double()
    error = predicted - y
    sse = (error ** 2).sum().item()
    sst = ((y - y.mean()) ** 2).sum().item()
    return {
        "mse": sse / len(y),
        "mae": error.abs().mean().item(),
        "r2": 1 - sse / sst,
    }


def train(model, x, y, epochs, batch_size, lr):
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=os.path.join(HERE, "data", "pooled.csv"))
    parser.add_argument("--test", default=os.path.join(HERE, "data", "test.csv"))
    parser.add_argument("--models", nargs="+", default=["mlp.pt", "linear.pt"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, help="every model's step size (default: per model)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same sums in the same order on every run

    train_x, train_y = load(args.train)
    test_x, test_y = load(args.test)
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False)
    std[std == 0] = 1
    train_x, test_x = standardise(train_x, mean, std), standardise(test_x, mean, std)
    train_y, test_y = train_y.float(), test_y.float()

    print(f"train {os.path.relpath(args.train, HERE)} ({len(train_x)} rows), "
          f"test {os.path.relpath(args.test, HERE)} ({len(test_x)} rows), "
          f"{args.epochs} epochs, batch {args.batch_size}, SGD")
    print("| model | lr | MSE | MAE | R² |")
    print("|---|---|---|---|---|")
    for name in args.models:
        model = torch.jit.load(os.path.join(HERE, name))
        lr = args.lr or LEARNING_RATES[name]
        train(model, train_x, train_y, args.epochs, args.batch_size, lr)
        m = evaluate(model, test_x, test_y)
        print(f"| {name} | {lr} | {m['mse']:.1f} | {m['mae']:.2f} | {m['r2']:.4f} |")


if __name__ == "__main__":
    main()
