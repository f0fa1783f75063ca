#!/bin/sh
# plot.sh -- throughput vs client count, daemon path against direct path,
# one PNG per workload, from the CSV fmredis-bench wrote.
#
#   bench/plot.sh [CSV [OUTDIR]]     default: build/bench/results.csv, its directory
#
# Needs gnuplot; installs Debian's gnuplot-nox when it is missing and the
# script runs as root (nothing else in the project needs gnuplot).
set -eu

csv=${1:-build/bench/results.csv}
out=${2:-$(dirname "$csv")}

if [ ! -r "$csv" ]; then
    echo "plot.sh: no $csv; run 'make bench' first" >&2
    exit 1
fi
if ! command -v gnuplot >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "plot.sh: gnuplot is missing: apt-get install gnuplot-nox" >&2
        exit 1
    fi
    echo "plot.sh: installing gnuplot-nox" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# CSV columns: workload,unit,clients,path,ops,seconds,ops_per_s,... The unit
# is quoted and holds no comma, so a plain split on commas is right.
for wl in $(awk -F, 'NR > 1 && $7 != "" { print $1 }' "$csv" | sort -u); do
    unit=$(awk -F, -v w="$wl" '$1 == w { gsub(/"/, "", $2); print $2; exit }' "$csv")
    for path in daemon direct; do
        awk -F, -v w="$wl" -v p="$path" '$1 == w && $4 == p { print $3, $7 }' "$csv" \
            > "$tmp/$wl.$path"
    done
    gnuplot <<EOF
set terminal pngcairo size 800,500 noenhanced
set output "$out/$wl.png"
set title "$wl: throughput (one op = $unit)"
set xlabel "clients (threads, one connection each)"
set ylabel "operations per second"
set logscale x 2
set yrange [0:*]
set key below
set grid
plot "$tmp/$wl.daemon" using 1:2 with linespoints lw 2 title "through fmredisd (libfmredis)", \
     "$tmp/$wl.direct" using 1:2 with linespoints lw 2 title "direct (hiredis)"
EOF
    echo "$out/$wl.png"
done
