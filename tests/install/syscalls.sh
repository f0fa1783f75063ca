#!/bin/bash
# syscalls.sh UNIT TRACE -- prints the system calls that TRACE (the output of
# `strace -f -o TRACE`) shows and that UNIT's SystemCallFilter= lines do not
# allow, one per line; exits 1 if there is any, or if UNIT has no allow list.
# The lines apply in order, as systemd applies them: the first sets the
# allow list, a later "~" line takes its calls out, a later plain line puts
# its calls back. Groups (@name) are expanded with systemd-analyze.
set -euo pipefail
unit=$1 trace=$2

expand() {
    local w
    for w in "$@"; do
        case $w in
        @*) systemd-analyze syscall-filter "$w" | sed -e 1d -e '/^ *#/d' -e 's/^ *//' |
                grep . | while read -r s; do expand "$s"; done ;;
        *) echo "$w" ;;
        esac
    done
}

allowed=
first=1
while IFS= read -r value; do
    if [ $first = 1 ]; then
        case $value in ~*) echo "syscalls: $unit starts with a deny list"; exit 1 ;; esac
        allowed=$(expand $value | sort -u)
        first=0
    else
        case $value in
        ~*) allowed=$(comm -23 <(echo "$allowed") <(expand ${value#\~} | sort -u)) ;;
        *)  allowed=$( (echo "$allowed"; expand $value) | sort -u) ;;
        esac
    fi
done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
[ $first = 0 ] || { echo "syscalls: $unit has no SystemCallFilter="; exit 1; }

used=$(sed -n 's/^[0-9]\{1,\} \{1,\}\([a-z_0-9]\{1,\}\)(.*/\1/p' "$trace" | sort -u)
[ -n "$used" ] || { echo "syscalls: no system call in $trace"; exit 1; }
denied=$(comm -23 <(echo "$used") <(echo "$allowed"))
[ -z "$denied" ] || { echo "$denied"; exit 1; }
