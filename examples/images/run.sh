#!/usr/bin/env bash
# examples/images/run.sh FORM [BUILD]: a three-site federation (a/DE, b/FR, c/IT on 127.0.0.1,
# mutual TLS, secure aggregation) training the built-in `mlp` on Fashion-MNIST held in one of
# four forms, with coordinator.toml's settings whatever the form:
#   idx           the IDX files of dataset-fashion-mnist, each site its shard (the reference)
#   png           PNG class folders, labels from the folder names
#   png-manifest  the same PNG files, labels (and order) from each folder's labels.csv
#   dicom         DICOM files (12 bits, rescale slope/intercept and a window), labels.csv
# Site k gets the same examples in every form: shard k of 3 of each split, its first
# HANSA_IMAGES_TRAIN (5000) training and HANSA_IMAGES_TEST (0: all of its shard) test images,
# written by hansa-example-images into HANSA_IMAGES_DATA (BUILD/images-example-data) once for
# each pair of sizes.
# HANSA_EXAMPLE_PORT (50071) and HANSA_EXAMPLE_DIR (BUILD/images-FORM-run) change the run.
set -euo pipefail
form=${1:?usage: examples/images/run.sh idx|png|png-manifest|dicom [BUILD]}
build=${2:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/federation.sh
. "$root/scripts/federation.sh"
bin=$root/$build
train=${HANSA_IMAGES_TRAIN:-5000}
test=${HANSA_IMAGES_TEST:-0}
data=${HANSA_IMAGES_DATA:-$bin/images-example-data}
out=${HANSA_EXAMPLE_DIR:-$bin/images-$form-run}
port=${HANSA_EXAMPLE_PORT:-50071}
sites=(a b c)
classes='["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]'
case $form in idx | png | png-manifest | dicom) ;; *) echo "unknown form '$form'" >&2; exit 2 ;; esac

if [ "$form" != idx ] && [ "$(cat "$data/sizes" 2>/dev/null)" != "$train $test" ]; then
  rm -rf "$data"
  "$bin/client/hansa-example-images" "$data" --train "$train" --test "$test"
  echo "$train $test" >"$data/sizes"
fi

rm -rf "$out"
mkdir -p "$out/logs"
shard=()
[ "$form" = idx ] && shard=(--shard-shared-data)
"$bin/tools/hansa" provision --out "$out/federation" --federation "images-$form" \
  --coordinator coordinator:DE:Study-Coordinator --site a:DE:Site-A --site b:FR:Site-B \
  --site c:IT:Site-C --listen "127.0.0.1:$port" "${shard[@]}" >"$out/provision.txt"
kit=$out/federation
{ echo; cat "$here/coordinator.toml"; } >>"$kit/coordinator/coordinator.toml"
for site in "${sites[@]}"; do
  # [data] is the last section of a provisioned site.toml: these lines extend it.
  case $form in
    idx) printf 'train_limit = %s\ntest_limit = %s\n' "$train" "$test" ;;
    png | png-manifest)
      printf 'format = "image_folder"\ntrain_dir = "%s"\ntest_dir = "%s"\nclasses = %s\n' \
        "$data/png/site-$site/train" "$data/png/site-$site/test" "$classes"
      [ "$form" = png-manifest ] && printf 'manifest = "labels.csv"\n'
      ;;
    dicom)
      printf 'format = "dicom_folder"\ntrain_dir = "%s"\ntest_dir = "%s"\nclasses = %s\n' \
        "$data/dicom/site-$site/train" "$data/dicom/site-$site/test" "$classes"
      ;;
  esac >>"$kit/sites/$site/site.toml"
  # Three sites share the machine: one torch thread each.
  printf '\n[compute]\nthreads = 1\n' >>"$kit/sites/$site/site.toml"
done

echo "Federation 'images-$form': sites a (DE), b (FR), c (IT) on 127.0.0.1:$port; logs in $out/logs"
start_federation "$bin" "$kit" "$out/logs" "${sites[@]}"
finish_federation "$bin" "$kit" "$out/logs"
echo "metrics: $kit/coordinator/state/metrics.jsonl"
