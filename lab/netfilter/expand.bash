# The lab's shell around a policy script (lab.netfilter.shell runs it in a sandbox).
#
# The script at /p25/script is sourced as written, with `start` as its argument
# (what a boot runs a firewall script with). Every netfilter tool it calls is a
# stand-in that records the call and succeeds; the records go, NUL-separated, to
# file descriptor 99:
#   C LINE COUNT NAME ARG...   a netfilter call (NAME as called: iptables, /sbin/iptables…)
#   N LINE NAME                a command the sandbox does not have (not run)
#   X LINE STATUS              an `exit` of the script itself
#   D STATUS                   the script ran to its end
# LINE is the script line bash gives the call (BASH_LINENO: the line of the
# command's second word when a `\` continues its first; lab.netfilter.script
# takes it back to the first).

exec 99>&"$P25_FD" && exec {P25_FD}>&-

# Stand-ins for the netfilter tools as functions (no process per call), by name, in
# the folders scripts name them in, and at the paths the script spells (P25_PATHS);
# the files of the same names in those folders (/p25/standin) serve the calls that
# pass functions by (`command iptables`, `exec`).
p25_call() {
    local name=$1 line=$2 word
    shift 2
    printf '%s\0' C "$line" "$#" "$name" "$@" >&99
    # a fresh router holds no rule yet: `iptables -C …` (is it there?) says no, so that
    # `iptables -C R || iptables -A R` adds R as it does at boot
    for word; do
        if [[ $word == -C || $word == --check ]]; then return 1; fi
    done
    return 0
}
for p25_name in $P25_PROGRAMS; do
    for p25_folder in "" /sbin/ /usr/sbin/ /bin/ /usr/bin/; do
        eval "$p25_folder$p25_name() { p25_call \"\${FUNCNAME[0]}\" \"\${BASH_LINENO[0]}\" \"\$@\"; }"
    done
done
for p25_name in $P25_PATHS; do  # a script's own paths to a tool: only the name counts
    eval "$p25_name() { p25_call \"\${FUNCNAME[0]}\" \"\${BASH_LINENO[0]}\" \"\$@\"; }"
done
unset p25_name p25_folder

command_not_found_handle() {
    printf '%s\0' N "${BASH_LINENO[0]}" "$1" >&99
    return 127
}

exit() {
    # only the script's own shell ends the script; a subshell's exit ends the subshell
    if [[ $BASHPID == "$$" ]]; then
        printf '%s\0' X "${BASH_LINENO[0]}" "${1:-$?}" >&99
    fi
    builtin exit "$@"
}

# `set -e` would stop the script at the first thing the sandbox lacks (a write to
# /proc, a missing program) where the gateway goes on: every command runs as if
# errexit were off. P25_LINE tells the stand-in files the line they are called from.
export P25_LINE=0
set -T
# no pathname expansion: a glob would match the sandbox's few files, not the gateway's
# (where the script's globs name files the lab does not have anyway)
set -f
trap 'set +e; P25_LINE=$LINENO' DEBUG

ulimit -v 262144 -u "$P25_PROCESSES" -f 0
unset P25_PROCESSES
BASH_ARGV0=$P25_NAME
. /p25/script start
printf '%s\0' D "$?" >&99
