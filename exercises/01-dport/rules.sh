# Strategy 1 — plain block, screened host topology, exactly as published.
# allow the server (screened host)
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT

# block the other clients
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP

# block clients tunnelled through Teredo
# (the slide warns: "this is the highest witchcraft")
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -dport 3544 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 26 = 6 && 11 & 0xFF = 6 && 48 & 0xFFFF = 25,465" \
  -j DROP
