# Strategy 1 — plain block, DMZ topology, corrected (on the INTERNAL router).
# Differences from the published rules are marked "fixed:"; see README.md.

# fixed: the organisation's own mail server in the DMZ stays reachable on 465
# (submission over implicit TLS, RFC 8314) and 25; the published rules drop it.
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -d 192.0.2.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -d 2001:db8:b01a:d32::25 --dports 25,465 -j ACCEPT

/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP

# fixed: --dport instead of -dport; u32 tests anchored at the UDP header; >> 28.
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 --dport 3544 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 48 & 0xFFFF = 25,465" \
  -j DROP
