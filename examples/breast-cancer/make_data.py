#!/usr/bin/python3
"""Writes the breast-cancer example's CSV files from the copy of the Wisconsin diagnostic
breast cancer data that Debian's python3-sklearn installs.

Standard library only. The output is deterministic (fixed seed, the source's own number
strings copied verbatim), so rerunning the script reproduces the committed files byte for byte.

  data/site-a.csv   mostly malignant
  data/site-b.csv   mostly benign
  data/site-c.csv   balanced
  data/pooled.csv   the three sites concatenated (for the pooled baseline)
  data/test.csv     held-out test set, about 20% of each class
"""
import csv
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_data  # noqa: E402 (found through the path above)

SOURCE = "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv"
SEED = 15

# sklearn's feature_names, in the file's column order, with spaces replaced by underscores.
FEATURES = [
    name.replace(" ", "_")
    for name in [
        "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
        "mean compactness", "mean concavity", "mean concave points", "mean symmetry",
        "mean fractal dimension", "radius error", "texture error", "perimeter error",
        "area error", "smoothness error", "compactness error", "concavity error",
        "concave points error", "symmetry error", "fractal dimension error", "worst radius",
        "worst texture", "worst perimeter", "worst area", "worst smoothness",
        "worst compactness", "worst concavity", "worst concave points", "worst symmetry",
        "worst fractal dimension",
    ]
]
LABEL = "diagnosis"  # sklearn's target: 0 = malignant, 1 = benign
MALIGNANT, BENIGN = "0", "1"

# (malignant, benign) rows per site, taken from the rows left after the test split
# (170 malignant, 286 benign).
SITES = {"site-a": (100, 25), "site-b": (10, 201), "site-c": (60, 60)}


def read_source(path):
    """Returns the rows as lists of strings: 30 features, then the 0/1 target.

    The file has no header row: its first line holds counts and class names
    ("569,30,malignant,benign"), which this checks and skips."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        n_samples, n_features, *class_names = next(reader)
        n_samples, n_features = int(n_samples), int(n_features)
        assert n_features == len(FEATURES), n_features
        assert class_names == ["malignant", "benign"], class_names
        rows = [row for row in reader if row]
    assert len(rows) == n_samples, (len(rows), n_samples)
    for row in rows:
        assert len(row) == n_features + 1 and row[-1] in (MALIGNANT, BENIGN), row
    return rows


def summary(rows):
    return (f"{sum(r[-1] == MALIGNANT for r in rows)} malignant, "
            f"{sum(r[-1] == BENIGN for r in rows)} benign")


def main():
    args = tabular_data.arguments(__doc__.splitlines()[0], __file__, "--source", SOURCE)
    rows = read_source(args.source)
    rng = random.Random(SEED)
    by_class = {}
    for label in (MALIGNANT, BENIGN):
        members = [r for r in rows if r[-1] == label]
        rng.shuffle(members)
        by_class[label] = members

    # Stratified 20% test split: the same fraction of each class.
    test = []
    for label, members in by_class.items():
        n_test = round(0.2 * len(members))
        test += members[:n_test]
        by_class[label] = members[n_test:]
    assert sum(m for m, _ in SITES.values()) == len(by_class[MALIGNANT])
    assert sum(b for _, b in SITES.values()) == len(by_class[BENIGN])

    sites = {}
    taken = {MALIGNANT: 0, BENIGN: 0}
    for site, counts in SITES.items():
        sites[site] = []
        for label, n in zip((MALIGNANT, BENIGN), counts):
            sites[site] += by_class[label][taken[label]:taken[label] + n]
            taken[label] += n
    tabular_data.write_federation(args.out, FEATURES + [LABEL], sites, test, rng, summary)


if __name__ == "__main__":
    main()
