#!/bin/sh
# The campus gateway's outbound mail policy: the corrected block (as in
# fixed-screened-block), for every inside segment: staff (eth0), students
# (eth1) and the IPv6-only wifi (eth2). The mail server's own SMTP is accepted
# first; every other inside host's 25/465 towards the outside is logged, then
# dropped. Submission (587) to the campus mail server stays open.
/sbin/iptables -A FORWARD -o eth3 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -o eth3 -p tcp -m multiport -s 2001:db8:ca:1::25 --dports 25,465 -j ACCEPT

/sbin/iptables -A FORWARD -o eth3 -p tcp -m multiport --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -o eth3 -p tcp -m multiport --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -o eth3 -p tcp -m multiport --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -o eth3 -p tcp -m multiport --dports 25,465 -j DROP
