#!/bin/sh
# fuzz.sh runs every fuzz target of the module for FUZZTIME each (make fuzz,
# make test): .ci/fuzz.sh 5s
#
# Go 1.26's fuzzing coordinator can stop a target with a bare "context
# deadline exceeded" at the end of a -fuzztime window when a worker is slow
# to acknowledge the stop (golang/go#75804, fixed in Go 1.27): no failing
# input is written, and a rerun passes. A target that fails that way is run
# once more; any other failure, a failing input written to
# testdata/fuzz/<target>/, or a second failure fails the run.
set -eu
fuzztime=${1:-30s}
go=${GO:-go}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for pkg in $($go list ./...); do
	dir=$($go list -f '{{.Dir}}' "$pkg")
	for f in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $f ($fuzztime)"
		attempt=1
		while :; do
			before=$(ls "$dir/testdata/fuzz/$f" 2>/dev/null | wc -l)
			if $go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
				tail -n 1 "$out"
				break
			fi
			cat "$out"
			after=$(ls "$dir/testdata/fuzz/$f" 2>/dev/null | wc -l)
			if [ "$attempt" -ge 2 ] || [ "$after" != "$before" ] || ! grep -q '^    context deadline exceeded$' "$out"; then
				exit 1
			fi
			echo "fuzz: $f stopped on Go's fuzztime race (golang/go#75804) with no failing input: running it again"
			attempt=$((attempt + 1))
		done
	done
done
