#!/bin/bash
# A netfilter tool's stand-in for the calls that pass expand.bash's functions by
# (`command iptables …`, `exec /sbin/iptables …`): records the call as they do.
printf '%s\0' C "${P25_LINE:-0}" "$#" "$0" "$@" >&99
for word; do
    if [[ $word == -C || $word == --check ]]; then exit 1; fi
done
exit 0
