# Strategy 2 — divert to a "translucent proxy", DMZ topology, on the INTERNAL router.
# The talk shows the divert for the screened host only; this is the same intent
# where the mail server sits in the DMZ (192.0.2.25, 2001:db8:b01a:d32::25).

# the clients' own mail server stays reachable on 25 and 465
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -d 192.0.2.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -d 2001:db8:b01a:d32::25 --dports 25,465 -j ACCEPT

# divert what the clients send to foreign port 25 to the submission server
/sbin/iptables -t nat -A PREROUTING -i eth0 -p tcp -s 203.0.113.0/24 ! -d 192.0.2.25 --dport 25 \
    -j DNAT --to-destination 192.0.2.25:587
/sbin/ip6tables -t nat -A PREROUTING -i eth0 -p tcp -s 2001:db8:b01a:70da::/64 ! -d 2001:db8:b01a:d32::25 --dport 25 \
    -j DNAT --to-destination [2001:db8:b01a:d32::25]:587

# 465 is not diverted: block it (and anything on 25 that escaped the divert)
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP
