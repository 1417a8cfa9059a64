"""What the CSV examples' make_data.py scripts share: their command line, and writing a
federation's files (one per site, the sites concatenated, the held-out test set).

Standard library only. Each example imports it with ../common on its sys.path; the files it
writes are deterministic, given the example's rows and seeded random.Random.
"""
import argparse
import csv
import os


def arguments(description, script, source_option, source_default):
    """Parses make_data.py's command line: where the source data lies (source_option, e.g.
    "--source") and --out, by default the data folder beside the script (script: __file__)."""
    here = os.path.dirname(os.path.abspath(script))
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(source_option, default=source_default)
    parser.add_argument("--out", default=os.path.join(here, "data"))
    return parser.parse_args()


def write(path, header, rows, summary):
    """Writes header and rows (lists of strings) as CSV with "\\n" line ends, and prints the
    file's name, its row count and summary(rows)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{os.path.basename(path)}: {len(rows)} rows, {summary(rows)}")


def write_federation(out, header, sites, test, rng, summary):
    """Writes each site's rows, shuffled by rng in the order of the dict sites (name -> rows),
    to out/<name>.csv; all of them, concatenated in that order, to out/pooled.csv (for the
    pooled baseline); and test, shuffled last, to out/test.csv."""
    os.makedirs(out, exist_ok=True)
    pooled = []
    for site, site_rows in sites.items():
        rng.shuffle(site_rows)  # classes or ages interleaved, not in blocks
        write(os.path.join(out, f"{site}.csv"), header, site_rows, summary)
        pooled += site_rows
    write(os.path.join(out, "pooled.csv"), header, pooled, summary)
    rng.shuffle(test)
    write(os.path.join(out, "test.csv"), header, test, summary)
