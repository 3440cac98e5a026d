#!/usr/bin/env bash
# What compiled code would give: builds gearjob's per-job modules with mypyc (the same source,
# unchanged) into .venv-bench-compiled, then runs bench/run.sh with that interpreter as a fourth
# stack, "gearjob (mypyc)", beside C, gearjob and python3-gearman in the same rounds.
#
#   bench/compiled.sh --jobs 5000 --rounds 5 [--cpus 1] [--instructions]
#
# An experiment, not a supported build: the roles install the pure-Python wheel, and the test
# suite runs against the source. docs/benchmarks.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# the modules a job passes through in the worker (runners.py is left out: mypyc refuses its
# assignment to BadArguments.__module__)
MODULES=(protocol worker payload summary jobguard)
venv=.venv-bench-compiled
scripts/setup-python.sh
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q mypy "setuptools>=77" wheel
fi
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r worker/. "$build/"
rm -rf "$build/build" "$build"/*.egg-info
{
    echo "from setuptools import setup"
    echo "from mypyc.build import mypycify"
    printf 'setup(ext_modules=mypycify([%s], opt_level="3"))\n' \
        "$(printf '"gearjob/%s.py", ' "${MODULES[@]}")"
} >"$build/setup.py"
echo "compiled.sh: building ${MODULES[*]} with mypyc (about 30 s)" >&2
(cd "$build" && "$OLDPWD/$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps .)
"$venv/bin/python" -c 'import gearjob.worker as w, sys; sys.exit(not w.__file__.endswith(".so"))' \
    || { echo "compiled.sh: gearjob.worker is not the compiled module" >&2; exit 1; }
exec bench/run.sh --compiled-python "$PWD/$venv/bin/python" "$@"
