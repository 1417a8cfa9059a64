#!/usr/bin/env bash
# scripts/run-example.sh EXAMPLE [BUILD]: a three-site federation on a study's own model and
# data, as "Your own model and data" in the README walks through it: provisions sites a, b and
# c on 127.0.0.1 over mutual TLS with secure aggregation, prints the model's SHA-256 and writes
# its initial weights (hansa model inspect --write-init), gives each site its CSV file, a copy
# of the model and a policy that allows that hash, runs the rounds and prints the metrics.
#
# EXAMPLE is a folder with model.pt (or HANSA_EXAMPLE_MODEL), data/site-{a,b,c}.csv,
# data/test.csv, coordinator.toml (appended to the provisioned coordinator.toml: [task],
# [rounds], [training]) and site.toml (appended to each site.toml: [data.csv]).
# HANSA_EXAMPLE_PORT (50061) and HANSA_EXAMPLE_DIR (EXAMPLE-run under the build folder) change
# the run.
set -euo pipefail
example=$(cd "${1:?usage: scripts/run-example.sh EXAMPLE [BUILD]}" && pwd)
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/federation.sh
. "$root/scripts/federation.sh"
bin=$root/$build
name=$(basename "$example")
out=${HANSA_EXAMPLE_DIR:-$bin/$name-run}
port=${HANSA_EXAMPLE_PORT:-50061}
model=$example/${HANSA_EXAMPLE_MODEL:-mlp.pt}
sites=(a b c)

rm -rf "$out"
mkdir -p "$out/logs"
"$bin/tools/hansa" provision --out "$out/federation" --federation "$name" \
  --coordinator coordinator:DE:Study-Coordinator --site a:DE:Site-A --site b:FR:Site-B \
  --site c:IT:Site-C --listen "127.0.0.1:$port" >"$out/provision.txt"
kit=$out/federation

# The data scientist's step: the model's hash (what each site's officer approves) and its
# initial weights for the coordinator.
"$bin/tools/hansa" model inspect "$model" --write-init "$kit/coordinator/init.safetensors" \
  | tee "$out/model.txt"
sha=$(sed -n 's/^  sha256 *//p' "$out/model.txt")

cp "$model" "$kit/coordinator/model.pt"
{
  printf '\n[model]\nfile = "model.pt"\ninit = "init.safetensors"\n'
  cat "$example/coordinator.toml"
} >>"$kit/coordinator/coordinator.toml"
for site in "${sites[@]}"; do
  dir=$kit/sites/$site
  cp "$model" "$dir/model.pt"
  cp "$example/data/site-$site.csv" "$dir/train.csv"
  cp "$example/data/test.csv" "$dir/test.csv"
  # The officer's approval, by hash; the site loads no other model file.
  sed -i "s/^\[policy\]$/[policy]\nallowed_models = [\"sha256:$sha\"]/" "$dir/site.toml"
  {
    printf 'format = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n'
    cat "$example/site.toml"
    printf '\n[model]\nfiles = ["model.pt"]\n\n[compute]\nthreads = 1\n'
  } >>"$dir/site.toml"
done

echo "Federation '$name': sites a (DE), b (FR), c (IT) on 127.0.0.1:$port; logs in $out/logs"
start_federation "$bin" "$kit" "$out/logs" "${sites[@]}"
finish_federation "$bin" "$kit" "$out/logs"
echo "metrics: $kit/coordinator/state/metrics.jsonl"
