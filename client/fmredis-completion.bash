# bash completion for fmredis(1): commands, subcommands and options.
# Installed as $(BASHCOMPDIR)/fmredis, where bash-completion loads it on the
# first `fmredis <TAB>`; it also works sourced on its own, without
# bash-completion's helpers. The tables follow `fmredis --help`
# (client/cli.c), with the --help every command takes and the options of
# `stats`; tests/install/completion.sh checks them.

_fmredis_commands='ping hello lock with-lock wake cache stats raw help'
_fmredis_global_opts='-s --socket -t --timeout -h --help -V --version'

# The subcommands of a command, empty for one without.
_fmredis_subcommands()
{
    case $1 in
    lock)  echo 'acquire release extend status' ;;
    wake)  echo 'signal listen' ;;
    cache) echo 'get set invalidate get-many' ;;
    esac
}

# The options of a command (and subcommand), and those that take a value.
_fmredis_options()
{
    case $1 in
    ping)          echo '--redis' ;;
    hello)         echo '--name' ;;
    lock\ acquire) echo '--ttl --retry-delay --max-retries --keep' ;;
    lock\ extend)  echo '--ttl' ;;
    with-lock)     echo '--ttl --retry-delay --max-retries --' ;;
    wake\ signal)  echo '--channel' ;;
    wake\ listen)  echo '--channel --group --count --wait --json' ;;
    cache\ get|cache\ get-many) echo '--fresh' ;;
    cache\ set)    echo '--ttl' ;;
    stats)         echo '--redis-info --prometheus' ;;
    esac
    echo '--help'
}
# Offers the options $1 for a word that starts with "-", else the words $2.
_fmredis_offer()
{
    case $cur in
    -*) COMPREPLY=($(compgen -W "$1" -- "$cur")) ;;
    *)  COMPREPLY=($(compgen -W "$2" -- "$cur")) ;;
    esac
}

_fmredis_valued='--socket --timeout --name --ttl --retry-delay --max-retries
                 --channel --group --count --wait'

_fmredis()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local i=1 cmd='' sub='' w
    COMPREPLY=()

    # Global options come before the command; -s and -t take a value.
    while [ "$i" -lt "$COMP_CWORD" ]; do
        w=${COMP_WORDS[i]}
        case $w in
        -s | --socket | -t | --timeout) i=$((i + 2)); continue ;;
        -*) i=$((i + 1)); continue ;;
        esac
        cmd=$w
        break
    done

    case $prev in
    -s | --socket)
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
        return ;;
    esac
    if [ -z "$cmd" ]; then
        _fmredis_offer "$_fmredis_global_opts" "$_fmredis_commands"
        return
    fi

    # help COMMAND [SUBCOMMAND]
    if [ "$cmd" = help ]; then
        case $((COMP_CWORD - i)) in
        1) COMPREPLY=($(compgen -W "${_fmredis_commands% help}" -- "$cur")) ;;
        2) COMPREPLY=($(compgen -W "$(_fmredis_subcommands "${COMP_WORDS[i + 1]}")" -- "$cur")) ;;
        esac
        return
    fi

    # with-lock KEY [options] -- COMMAND...: after "--", a command line.
    if [ "$cmd" = with-lock ]; then
        local j
        for ((j = i + 1; j < COMP_CWORD; j++)); do
            if [ "${COMP_WORDS[j]}" = -- ]; then
                if [ "$j" -eq $((COMP_CWORD - 1)) ]; then
                    COMPREPLY=($(compgen -c -- "$cur"))
                else
                    compopt -o default 2>/dev/null
                fi
                return
            fi
        done
    fi

    # The subcommand is the first word after the command that is no option.
    local subs
    subs=$(_fmredis_subcommands "$cmd")
    if [ -n "$subs" ]; then
        for ((i = i + 1; i < COMP_CWORD; i++)); do
            case ${COMP_WORDS[i]} in
            -*) ;;
            *) sub=${COMP_WORDS[i]}; break ;;
            esac
        done
        if [ -z "$sub" ]; then
            _fmredis_offer --help "$subs"
            return
        fi
        cmd="$cmd $sub"
    fi

    # An option's value is the user's to type.
    case " $(echo $_fmredis_valued) " in
    *" $prev "*) return ;;
    esac
    _fmredis_offer "$(_fmredis_options "$cmd")" ''
}
complete -F _fmredis fmredis
