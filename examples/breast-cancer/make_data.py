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
import argparse
import csv
import os
import random

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


def write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(FEATURES + [LABEL])
        writer.writerows(rows)
    print(f"{os.path.basename(path)}: {len(rows)} rows, "
          f"{sum(r[-1] == MALIGNANT for r in rows)} malignant, "
          f"{sum(r[-1] == BENIGN for r in rows)} benign")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SOURCE)
    parser.add_argument("--out", default=os.path.join(here, "data"))
    args = parser.parse_args()

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

    os.makedirs(args.out, exist_ok=True)
    pooled = []
    taken = {MALIGNANT: 0, BENIGN: 0}
    for site, counts in SITES.items():
        site_rows = []
        for label, n in zip((MALIGNANT, BENIGN), counts):
            site_rows += by_class[label][taken[label]:taken[label] + n]
            taken[label] += n
        rng.shuffle(site_rows)  # classes interleaved, not in blocks
        write(os.path.join(args.out, f"{site}.csv"), site_rows)
        pooled += site_rows
    write(os.path.join(args.out, "pooled.csv"), pooled)
    rng.shuffle(test)
    write(os.path.join(args.out, "test.csv"), test)


if __name__ == "__main__":
    main()
