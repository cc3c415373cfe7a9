#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into bench/gpu/wheels/ (gitignored), built for its Python (CPython 3.12,
# manylinux x86-64; see the device notes), and print their sizes. Run it where PyPI is reachable, once; then name
# bench/gpu/wheels in the device run's `carry` (the working tree and carried paths travel within 64 MiB in all).
#
#   bench/gpu/fetch_wheels.sh                  # hydra-core, omegaconf, antlr4 runtime, datasets, dill, multiprocess, fsspec (~1.5 MiB)
#   bench/gpu/fetch_wheels.sh --with-pyarrow   # + pyarrow (~53 MiB): the GPU image has a pyarrow; datasets needs a recent one
#
# Versions are the ones installed here (what the CPU suite tests); bench/gpu/deps.py installs, on the GPU machine,
# only the carried wheels it lacks or whose installed version a needed wheel's requirements exclude.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PYVER=${GPU_PYTHON_VERSION:-3.12}  # the GPU machine's python3 (3.12.3, seen 2026-11)
DEST=wheels
WITH_PYARROW=0
for arg in "$@"; do
    case $arg in
        --with-pyarrow) WITH_PYARROW=1 ;;
        *) echo "usage: $0 [--with-pyarrow]" >&2; exit 2 ;;
    esac
done

version() {  # the version installed here, so the GPU runs what the CPU suite tested
    $PY -c "from importlib.metadata import version; print(version('$1'))"
}
PACKAGES=(hydra-core omegaconf datasets dill multiprocess fsspec)
[ "$WITH_PYARROW" = 1 ] && PACKAGES+=(pyarrow)
SPECS=()
for name in "${PACKAGES[@]}"; do SPECS+=("$name==$(version "$name")"); done

rm -rf "$DEST" && mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
$PY -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${SPECS[@]}"
# antlr4-python3-runtime 4.9.3 (what hydra-core 1.3 pins) exists only as a source archive: build its pure-Python wheel
$PY -m pip wheel -q --disable-pip-version-check --no-deps -w "$DEST" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

ls -l "$DEST" | awk 'NR > 1 {printf "%8.2f MiB  %s\n", $5 / 1048576, $9}'
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(cd ../.. && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
awk -v w="$total" -v t="$tree" 'BEGIN {
    printf "wheels: %.2f MiB; tracked files: %.2f MiB; together %.2f MiB of the 64 MiB a device run carries\n",
           w / 1048576, t / 1048576, (w + t) / 1048576
    if (w + t > 60 * 1048576) { print "WARNING: within 4 MiB of the limit: leave out --with-pyarrow"; exit 1 }
}'
