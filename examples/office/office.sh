#!/bin/sh
# office: only the mail server (192.0.2.25) speaks SMTP to the world; ens19 is
# the WAN. The LAN has no IPv6, so no ip6tables rules and no tunnel rules...
# `port25lab verify fixed-screened-block --site office.yaml --rules office.sh`
# shows what that leaves open: Teredo and 6in4 carry IPv6 through IPv4.
/sbin/iptables -A FORWARD -i ens18 -o ens19 -s 192.0.2.25 -p tcp -m multiport --dports 25,465 -j ACCEPT
/sbin/iptables -A FORWARD -i ens18 -o ens19 -p tcp -m multiport --dports 25,465 -j DROP
