#!/usr/bin/env bash
# Lays out the Sign Language Digits Dataset (Turkey Ankara Ayrancı Anadolu High School,
# Apache-2.0; github.com/ardamavi/Sign-Language-Digits-Dataset) as data/sign_digits/{0..9}/,
# the layout `pipelines/sign_digits.yaml` reads (`format: image_folder`).
#
# Usage: scripts/get_sign_digits.sh [SOURCE]
#   SOURCE: an existing clone of the repository (its Dataset/ folder is copied), a git
#   directory of one (read with `git archive`), or a folder that already holds 0/ … 9/.
#   Without SOURCE the repository is cloned (`git clone --depth 1`) into a temp dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/data/sign_digits
url=https://github.com/ardamavi/Sign-Language-Digits-Dataset
src=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$src" ]; then
  git clone --quiet --depth 1 "$url" "$tmp/repo"
  src=$tmp/repo
fi
if [ -d "$src/Dataset/0" ]; then
  from=$src/Dataset
elif [ -d "$src/0" ]; then
  from=$src
elif git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null; then
  git --git-dir="$src" archive HEAD Dataset | tar -x -C "$tmp"
  from=$tmp/Dataset
else
  echo "error: $src holds neither Dataset/0 … 9 nor 0 … 9, and is no git directory" >&2
  exit 2
fi
rm -rf "$dest"
mkdir -p "$dest"
for d in 0 1 2 3 4 5 6 7 8 9; do
  if [ ! -d "$from/$d" ]; then
    echo "error: $from/$d is missing" >&2
    exit 2
  fi
  cp -r "$from/$d" "$dest/$d"
done
# Three of the repository's photos (7/IMG_5874, 7/IMG_5935, 7/IMG_5978 at the commit this was
# written for) are truncated JPEGs without an end-of-image marker, which pipe's sources refuse
# (as Pillow does by default): leave every such file out, and say which.
while IFS= read -r -d '' f; do
  if [ "$(tail -c 2 "$f" | od -An -tx1 | tr -d ' \n')" != "ffd9" ]; then
    echo "left out ${f#"$dest"/}: truncated JPEG (no end-of-image marker)"
    rm -f "$f"
  fi
done < <(find "$dest" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -print0)
echo "data/sign_digits: $(find "$dest" -type f \( -iname '*.jpg' -o -iname '*.png' \) | wc -l) images in 10 classes"
