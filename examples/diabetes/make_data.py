#!/usr/bin/python3
"""Writes the diabetes example's CSV files from the diabetes data that Debian's python3-sklearn
installs (sklearn's load_diabetes(scaled=False): 442 patients, 10 baseline variables, and
disease progression one year later).

Standard library only. The output is deterministic (fixed seed, the source's own number
strings copied verbatim), so rerunning the script reproduces the committed files byte for byte.

  data/site-a.csv   patients younger than 45
  data/site-b.csv   patients aged 45 to 55
  data/site-c.csv   patients aged 56 and older
  data/pooled.csv   the three sites concatenated (for the pooled baseline)
  data/test.csv     held-out test set: 20%, stratified by the target's quantiles, all ages
"""
import gzip
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import tabular_data  # noqa: E402 (found through the path above)

SOURCE_DIR = "/usr/lib/python3/dist-packages/sklearn/datasets/data"
FEATURES_FILE = "diabetes_data_raw.csv.gz"  # 442 lines of 10 space-separated values
TARGET_FILE = "diabetes_target.csv.gz"  # 442 lines of one value ("1.51e+02")
SEED = 15

# sklearn's feature_names: age (years), sex (1 or 2), body mass index, average blood
# pressure, and six blood serum measurements.
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
LABEL = "progression"

# Sites by age: [lowest, highest] in years, inclusive.
SITES = {"site-a": (0, 44), "site-b": (45, 55), "site-c": (56, 200)}


def read_lines(path):
    with gzip.open(path, "rt") as f:
        return [line.split() for line in f if line.strip()]


def read_source(source_dir):
    """Returns the rows as lists of strings: the 10 features, then the target."""
    features = read_lines(os.path.join(source_dir, FEATURES_FILE))
    targets = read_lines(os.path.join(source_dir, TARGET_FILE))
    assert len(features) == len(targets) == 442, (len(features), len(targets))
    rows = []
    for x, (y,) in zip(features, targets):
        assert len(x) == len(FEATURES), x
        value = float(y)
        assert value == int(value), y  # whole numbers, written in scientific notation
        rows.append(x + [str(int(value))])
    return rows


def summary(rows):
    ages = [int(r[0]) for r in rows]
    targets = [int(r[-1]) for r in rows]
    return f"age {min(ages)}-{max(ages)}, mean progression {sum(targets) / len(targets):.1f}"


def main():
    args = tabular_data.arguments(__doc__.splitlines()[0], __file__, "--source-dir", SOURCE_DIR)
    rows = read_source(args.source_dir)
    rng = random.Random(SEED)

    # Test split stratified by the target: sorted by progression (ties by file order), one
    # row drawn from every run of five, so the test set spans the whole range.
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i][-1]), i))
    test_index = set()
    for start in range(0, len(order) - len(order) % 5, 5):
        test_index.add(order[start + rng.randrange(5)])
    test = [rows[i] for i in sorted(test_index)]
    train = [rows[i] for i in range(len(rows)) if i not in test_index]

    sites = {site: [r for r in train if low <= int(r[0]) <= high]
             for site, (low, high) in SITES.items()}
    assert sum(len(site_rows) for site_rows in sites.values()) == len(train)
    tabular_data.write_federation(args.out, FEATURES + [LABEL], sites, test, rng, summary)


if __name__ == "__main__":
    main()
