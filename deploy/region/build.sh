#!/usr/bin/env bash
# Builds regio/region:dev, the image of docker-compose.yml's containers.
#
#   deploy/region/build.sh
#
# The host's pip fetches the image's Python packages first, into deploy/region/wheels/,
# from its own configured indexes and caches, so the image build installs them without a
# second download. (`docker-compose build` alone works too, downloading them.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
venv="${REGIO_VENV:-$checkout/.venv}"
[ -x "$venv/bin/pip" ] || { echo "no virtualenv at $venv: run ./regio up first" >&2; exit 1; }

find "$here/wheels" -name '*.whl' -delete
(cd "$checkout" && "$venv/bin/python" deploy/region/dependencies.py) > "$here/wheels/requirements.txt"
"$venv/bin/pip" download --quiet --disable-pip-version-check --dest "$here/wheels" \
  -r "$here/wheels/requirements.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
docker-compose -f "$checkout/docker-compose.yml" build
