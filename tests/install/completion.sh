#!/bin/bash
# completion.sh FILE -- sources the bash completion FILE (the installed one)
# and checks what it offers for command lines, as bash would call it on TAB.
# Prints one line per failed case and exits 1 if any failed.
set -u
. "$1" || { echo "completion: cannot source $1"; exit 1; }

func=$(complete -p fmredis 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
[ -n "$func" ] || { echo "completion: $1 registers no function for fmredis"; exit 1; }

failed=0
# expect LINE WORDS...: completing LINE (the last word is the one under the
# cursor; a trailing space starts an empty one) offers exactly WORDS.
expect()
{
    local line=$1 got want
    shift
    read -r -a COMP_WORDS <<< "$line"
    [ "${line: -1}" = " " ] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMPREPLY=()
    "$func" fmredis "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    if [ "$got" != "$want" ]; then
        echo "completion: '$line' offered [${got% }], expected [${want% }]"
        failed=1
    fi
}

expect "fmredis lo" lock
expect "fmredis " ping hello lock with-lock wake cache stats raw help
expect "fmredis w" with-lock wake
expect "fmredis --t" --timeout
expect "fmredis -s /nonexistent/x.sock lo" lock
expect "fmredis -t 500 --socket /x.sock ca" cache
expect "fmredis lock " acquire release extend status
expect "fmredis lock ac" acquire
expect "fmredis lock --" --help
expect "fmredis lock acquire job:1 --" --ttl --retry-delay --max-retries --keep --help
expect "fmredis lock acquire job:1 --ttl " 
expect "fmredis lock extend k t --" --ttl --help
expect "fmredis cache get" get get-many
expect "fmredis cache set --t" --ttl
expect "fmredis wake listen --j" --json
expect "fmredis wake listen --channel c --g" --group
expect "fmredis wake signal e1 --" --channel --help
expect "fmredis ping --" --redis --help
expect "fmredis lock status k --h" --help
expect "fmredis with-lock k --ttl 100 --" --ttl --retry-delay --max-retries -- --help
expect "fmredis with-lock k -- bas" $(compgen -c -- bas)
expect "fmredis stats --" --redis-info --prometheus --help
expect "fmredis stats --p" --prometheus
expect "fmredis help " ping hello lock with-lock wake cache stats raw
expect "fmredis help ca" cache
expect "fmredis help wake " signal listen
expect "fmredis help wake signal "

# -s completes file names.
dir=$(mktemp -d) || exit 1
touch "$dir/fm.sock"
expect "fmredis -s $dir/f" "$dir/fm.sock"
rm -rf "$dir"

exit $failed
