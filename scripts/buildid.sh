#!/bin/sh
# Prints the build id of the hv that this tree builds as release $1: a
# sha256 over the release and every Go and assembly source, go.mod and go.sum, in
# sorted order. Two trees with the same sources give the same id, which is
# what "the identical build" means for -dev interfaces (docs/versions.md).
set -eu
release=${1:?usage: buildid.sh RELEASE}
cd "$(dirname "$0")/.."
{
	printf 'release %s\n' "$release"
	find . -path ./.git -prune -o -path ./.cache -prune -o -path ./bin -prune -o \
		\( -name '*.go' -o -name '*.s' -o -name go.mod -o -name go.sum \) -type f -print |
		LC_ALL=C sort | while read -r f; do
			printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
		done
} | sha256sum | cut -c1-32
