#!/bin/sh
# The JSON and text fixtures of each ruleset, as nft 1.0.6 lists it (as root; a throwaway
# network namespace for each, nothing of the host's ruleset is read or changed). NAME.sh,
# where there is one, runs first (iptables commands); then iptables-save is kept too.
set -eu
cd "$(dirname "$0")"
for source in *.nft; do
    name=${source%.nft}
    if [ -e "$name.sh" ]; then
        unshare --net sh -c "sh -e '$name.sh' && nft -f '$source' && nft -j list ruleset > '$name.json' && nft list ruleset > '$name.txt' && iptables-save > '$name.save'"
    else
        unshare --net sh -c "nft -f '$source' && nft -j list ruleset > '$name.json' && nft list ruleset > '$name.txt'"
    fi
done
