#!/bin/sh
# plot.sh -- throughput vs client count, daemon path against direct path,
# one PNG per workload, and wake's delivery latency (wake_latency.png),
# from the CSV fmredis-bench wrote.
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

# CSV columns: workload,unit,clients,path,ops,seconds,ops_per_s,p50_us,p99_us,...
# The unit is quoted and holds no comma, so a plain split on commas is right.
for wl in $(awk -F, 'NR > 1 && $7 != "" { print $1 }' "$csv" | sort -u); do
    unit=$(awk -F, -v w="$wl" '$1 == w { gsub(/"/, "", $2); print $2; exit }' "$csv")
    for path in daemon direct; do
        awk -F, -v w="$wl" -v p="$path" '$1 == w && $4 == p { print $3, $7, $8, $9 }' "$csv" \
            > "$tmp/$wl.$path"
    done
    # The direct line goes first and the daemon's, dashed, on top: where
    # the paths are equal (wake is paced) both stay visible.
    gnuplot <<EOF
set terminal pngcairo size 1000,500 noenhanced
set output "$out/$wl.png"
set title "$wl: throughput (one op = $unit)"
set xlabel "clients (threads, one connection each)"
set ylabel "operations per second"
set logscale x 2
set xrange [0.8:160]
set xtics (1, 8, 32, 128)
set yrange [0:*]
set key outside right top vertical box
set grid
plot "$tmp/$wl.direct" using 1:2 with linespoints lw 2 pt 7 ps 1.2 lc rgb "#1b9e77" title "direct (hiredis)", \
     "$tmp/$wl.daemon" using 1:2 with linespoints lw 2 dt 2 pt 5 ps 0.9 lc rgb "#7570b3" title "through fmredisd (libfmredis)"
EOF
    echo "$out/$wl.png"
done

# wake runs at a fixed 1,000 signals/s, so its throughput only shows that
# both paths kept up; what it measures is the delivery latency.
if [ -s "$tmp/wake.daemon" ]; then
    gnuplot <<EOF
set terminal pngcairo size 1000,500 noenhanced
set output "$out/wake_latency.png"
set title "wake: signal-to-delivery latency at 1,000 signals/s"
set xlabel "subscribers (threads, one connection each)"
set ylabel "microseconds"
set logscale x 2
set xrange [0.8:160]
set xtics (1, 8, 32, 128)
set yrange [0:1200<*]
set key outside right top vertical box
set grid
plot 1000 with lines lw 1 dt 3 lc rgb "#d95f02" title "target: p99 under 1 ms", \
     "$tmp/wake.direct" using 1:4 with linespoints lw 2 pt 7 lc rgb "#1b9e77" title "direct p99", \
     "$tmp/wake.daemon" using 1:4 with linespoints lw 2 pt 5 lc rgb "#7570b3" title "through fmredisd p99", \
     "$tmp/wake.direct" using 1:3 with linespoints lw 1 dt 2 pt 6 lc rgb "#1b9e77" title "direct p50", \
     "$tmp/wake.daemon" using 1:3 with linespoints lw 1 dt 2 pt 4 lc rgb "#7570b3" title "through fmredisd p50"
EOF
    echo "$out/wake_latency.png"
fi
