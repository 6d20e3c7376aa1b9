# Strategy 2 — divert to a "translucent proxy", screened host, exactly as published.
# open 25,465 for the server (screened host)
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT

# the small mischief: divert what comes on 25 to 587
/sbin/iptables -t nat -A PREROUTING -i eth0 -p tcp -s 203.0.113.0/24 --dport 25 \
    -j DNAT --to-destination 203.0.113.25:587

# Not on the slide: the IPv6 counterpart the talk announces ("ip6tables can do
# the same with NAT support"), written the same way for the IPv6 prefix.
/sbin/ip6tables -t nat -A PREROUTING -i eth0 -p tcp -s 2001:db8:b01a:70da::/64 --dport 25 \
    -j DNAT --to-destination [2001:db8:b01a:70da::25]:587
