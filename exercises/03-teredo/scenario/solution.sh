# Exercise 3, a solution: the corrected rules of fixed-screened-block (see its README).
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT

/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP

# fixed: Teredo. The kernel must see whole datagrams: a conntrack match makes
# the router reassemble IPv4 fragments before the filter table.
/sbin/iptables -A FORWARD -i eth0 -m conntrack --ctstate INVALID -j DROP
# fixed: --dport (the slide's -dport does not load), every u32 test anchored at
# the UDP header (each "&&" test starts again at the IP header), the IPv6
# version in the top 4 bits (>> 28), and no UDP port: a relay may listen on any.
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 48 & 0xFFFF = 25,465" \
  -j DROP
# fixed: Teredo with an origin indication (8 bytes starting 0x0000) before IPv6
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 16 = 0 && 0 >> 22 & 0x3C @ 16 >> 28 = 6 && 0 >> 22 & 0x3C @ 20 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 56 & 0xFFFF = 25,465" \
  -j DROP
# fixed: Teredo with an authentication header with empty client id and value
# (13 bytes starting 0x0001 0x00 0x00) before IPv6
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 = 0x10000 && 0 >> 22 & 0x3C @ 21 >> 28 = 6 && 0 >> 22 & 0x3C @ 24 & 0xFF = 6 && 0 >> 22 & 0x3C @ 61 & 0xFFFF = 25,465" \
  -j DROP
# fixed: one IPv6 hop-by-hop or destination options header before TCP (its
# length byte, times 8, is jumped over)
/sbin/iptables -A FORWARD -i eth0 -p udp -s 203.0.113.0/24 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 0,60 && 0 >> 22 & 0x3C @ 48 >> 24 = 6 && 0 >> 22 & 0x3C @ 48 >> 13 & 0x7F8 @ 56 & 0xFFFF = 25,465" \
  -j DROP
# fixed: 6in4 (IPv4 protocol 41) carrying TCP to 25 or 465
/sbin/iptables -A FORWARD -i eth0 -p 41 -s 203.0.113.0/24 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 4 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 40 & 0xFFFF = 25,465" \
  -j DROP
