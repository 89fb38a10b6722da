#!/usr/bin/env bash
# Vendors the board's browser libraries from npm, at the pinned versions below, into
# static/vendor/NAME/: the files the board loads, the package's LICENSE and a VERSION file
# (name@version and the tarball's integrity as npm reported it). The board never loads from a
# CDN: a city operations room may be offline. Run from anywhere; commit what it changes.
# To update a library: change its version here, run this script, check the board
# (tests/board), commit. docs/BOARD.md describes it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/static/vendor"

# name@version  files to copy (paths inside the npm package)
PINS=(
    "uplot@1.6.32 dist/uPlot.esm.js dist/uPlot.min.css"
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for pin in "${PINS[@]}"; do
    read -r spec files <<<"$pin"
    name="${spec%@*}"
    (cd "$work" && npm pack --silent --json "$spec" >"$name.json")
    tarball="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["filename"])' "$work/$name.json")"
    integrity="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["integrity"])' "$work/$name.json")"
    mkdir -p "$work/$name"
    tar -xzf "$work/$tarball" -C "$work/$name"
    rm -rf "${dest:?}/$name"
    mkdir -p "$dest/$name"
    for f in $files LICENSE; do
        cp "$work/$name/package/$f" "$dest/$name/"
    done
    printf '%s\n%s\n' "$spec" "$integrity" >"$dest/$name/VERSION"
    echo "vendored $spec into ${dest#"$here"/}/$name"
done
