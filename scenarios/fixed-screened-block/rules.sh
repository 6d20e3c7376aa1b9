# Strategy 1 — plain block, screened host topology, corrected.
# Differences from the published rules are marked "fixed:"; see README.md.
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT

/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP

# fixed: --dport (the slide has -dport, which iptables refuses: the rule never loads);
# fixed: every u32 test is anchored at the UDP header ("&&" starts each test
#        again at the IP header) and the IPv6 version is the top 4 bits (>> 28).
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 --dport 3544 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 48 & 0xFFFF = 25,465" \
  -j DROP
