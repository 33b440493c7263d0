#!/usr/bin/env bash
# Builds the FROM images application builds use when no registry is reachable:
# a Debian root filesystem made by mmdebstrap with Python 3, pip and venv, trusting
# the host's CA bundle, `docker import`ed and tagged.
#
#   deploy/base-images/build.sh [--force]
#
# Tags: regio/debian:bookworm, regio/python:3.11, regio/python:3
set -euo pipefail
suite=bookworm
force=${1:-}

have() { docker image inspect "$1" >/dev/null 2>&1; }
if [ "$force" != "--force" ] && have regio/debian:$suite && have regio/python:3.11; then
  echo "base images present (use --force to rebuild)"; exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "no CA bundle at $ca" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Use the host's own package sources, so the images come from the same mirror the host trusts.
sources=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
  [ -s "$f" ] && sources+=("$f")
done

# Copy the host's CA bundle in: builds inside containers then trust what the host trusts.
hook="copy-in $ca /etc/ssl/certs/"

build() { # name packages...
  local tag=$1; shift
  local pkgs; pkgs=$(IFS=,; echo "$*")
  echo "building $tag ($pkgs)"
  mmdebstrap --quiet --variant=minbase --include="$pkgs" \
    --customize-hook="$hook" \
    --customize-hook='chroot "$1" sh -c "rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*"' \
    "$suite" "$work/image.tar" "${sources[@]}"
  docker import \
    --change 'ENV LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' \
    "$work/image.tar" "$tag"
  rm -f "$work/image.tar"
}

build regio/debian:$suite ca-certificates
build regio/python:3.11 ca-certificates python3 python3-pip python3-venv
docker tag regio/python:3.11 regio/python:3
docker images 'regio/*'
