"""What the CSV examples' make_models.py and pooled_baseline.py scripts share: saving a study's
models as TorchScript files that a rerun reproduces byte for byte, and the pooled baseline's
training and table.

Run with Debian's python3-torch (PyTorch 1.13, matching libtorch-dev); each example imports it
with ../common on its sys.path.

Reproducible models: a TorchScript file holds the generated code, which orders a module's
constants by Python's hash seed, and each forward's source text, source file name and line
numbers. So write_models re-runs the script under PYTHONHASHSEED=0 and names the source by its
base name (make_models.py) wherever the checkout lies; the model classes stay in the example's
own make_models.py, and any edit there above a forward gives new files with new hashes, even
with the same weights. With Debian 12's python3 and python3-torch the SHA-256 is the same on
every run.

Each example model first standardises its inputs with a BatchNorm without weights
(norm.running_mean and norm.running_var, float32 buffers): while training, by each batch's own
statistics; when evaluating, by running statistics that the federation averages with the
weights (the coordinator's [model] buffers = "average", the default). No site's feature
statistics leave it except inside that average, so the raw CSV values can be fed as they are.
"""
import argparse
import csv
import hashlib
import os
import sys

import torch


def _reproducible(script, models):
    """Re-runs the script under a fixed hash seed, and has TorchScript record the models'
    source as the script's base name rather than the checkout's absolute path. Returns the
    script's folder."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    here = os.path.dirname(os.path.abspath(script))
    os.chdir(here)  # where the relative name finds the source
    for cls in models:
        code = cls.forward.__code__
        cls.forward.__code__ = code.replace(co_filename=os.path.basename(code.co_filename))
    return here


def _save(model, path, n_features):
    scripted = torch.jit.script(model)
    out = scripted(torch.zeros(2, n_features))
    assert out.shape == (2, 1), out.shape
    scripted.save(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{digest}  {os.path.basename(path)}  ({n_params} parameters)")


def write_models(script, models, n_features, seed):
    """Saves each model class of models (file name -> class, defined in the script whose
    __file__ is script) as TorchScript beside the script, its initial weights drawn under
    torch.manual_seed(seed); each forward maps N x n_features to N x 1. Prints each file's
    SHA-256."""
    here = _reproducible(script, models.values())
    for name, cls in models.items():
        torch.manual_seed(seed)
        _save(cls(), os.path.join(here, name), n_features)


def load(path, label):
    """Reads a CSV file with a header row: returns the features (every column but label) and
    the label column (N x 1), both float64."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        column = header.index(label)
        rows = [[float(v) for v in row] for row in reader]
    data = torch.tensor(rows, dtype=torch.float64)
    features = torch.cat([data[:, :column], data[:, column + 1:]], dim=1)
    return features, data[:, column:column + 1]


def train(model, x, y, loss_fn, epochs, batch_size, lr, seed):
    """Plain SGD over shuffled batches, the order drawn from a generator seeded with seed."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()


def _standardised(train_x, test_x):
    """Both standardised with the training rows' mean and population standard deviation (what
    the federation's pooled standardisation computes from the sites' sums), as float32."""
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False)
    std[std == 0] = 1
    return ((train_x - mean) / std).float(), ((test_x - mean) / std).float()


def _arguments(doc, here, models, learning_rate):
    """The pooled baseline's command line; learning_rate None: each model's own step size."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--train", default=os.path.join(here, "data", "pooled.csv"))
    parser.add_argument("--test", default=os.path.join(here, "data", "test.csv"))
    parser.add_argument("--models", nargs="+", default=models)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    if learning_rate is None:
        parser.add_argument("--lr", type=float,
                            help="every model's step size (default: per model)")
    else:
        parser.add_argument("--lr", type=float, default=learning_rate)
    return parser.parse_args()


def pooled_baseline(doc, script, *, label, models, loss_fn, learning_rate, seed, columns,
                    evaluate):
    """The pooled baseline's command line and table: trains each model file beside the script
    (script: its __file__) on --train (default data/pooled.csv) and prints a Markdown row of its
    metrics on --test (default data/test.csv).

    label: the target's column. models: the default files. columns: the metrics' headings;
    evaluate(model, x, y) returns their cells, as formatted strings.
    learning_rate: one SGD step size for every model, the default of --lr; or a dict (file
    name -> step size), which --lr overrides for every model and the table shows as a column.
    """
    here = os.path.dirname(os.path.abspath(script))
    per_model = isinstance(learning_rate, dict)
    args = _arguments(doc, here, models, None if per_model else learning_rate)
    torch.set_num_threads(1)  # the same sums in the same order on every run

    train_x, train_y = load(args.train, label)
    test_x, test_y = load(args.test, label)
    train_x, test_x = _standardised(train_x, test_x)
    train_y, test_y = train_y.float(), test_y.float()

    print(f"train {os.path.relpath(args.train, here)} ({len(train_x)} rows), "
          f"test {os.path.relpath(args.test, here)} ({len(test_x)} rows), "
          f"{args.epochs} epochs, batch {args.batch_size}, SGD"
          + ("" if per_model else f" lr {args.lr}"))
    headings = ["model"] + (["lr"] if per_model else []) + columns
    print("| " + " | ".join(headings) + " |")
    print("|" + "---|" * len(headings))
    for name in args.models:
        model = torch.jit.load(os.path.join(here, name))
        lr = (args.lr or learning_rate[name]) if per_model else args.lr
        train(model, train_x, train_y, loss_fn, args.epochs, args.batch_size, lr, seed)
        cells = [name] + ([f"{lr}"] if per_model else []) + evaluate(model, test_x, test_y)
        print("| " + " | ".join(cells) + " |")
