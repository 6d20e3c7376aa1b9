#!/bin/sh
# campus: outbound mail only from the mail server; clients submit to it on
# 587/465. ens18+ is both client VLANs (ens18 and ens18.20); ens20 is the WAN.

# NAT: the client VLANs leave with the firewall's WAN address
/sbin/iptables -t nat -A POSTROUTING -o ens20 -s 203.0.113.0/24 -j MASQUERADE

# no client speaks SMTP (25) or SMTPS (465) to the world; the DMZ's mx does
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p tcp -m multiport --dports 25,465 -j LOG --log-prefix "p25 "
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p tcp -m multiport --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i ens18 -o ens20 -p tcp -m multiport --dports 25,465 -j LOG --log-prefix "p25 "
/sbin/ip6tables -A FORWARD -i ens18 -o ens20 -p tcp -m multiport --dports 25,465 -j DROP

# nor through IPv6 tunnelled in IPv4: the kernel reassembles fragments first
/sbin/iptables -A FORWARD -i ens18+ -m conntrack --ctstate INVALID -j DROP
# Teredo: IPv6 right after the UDP header, carrying TCP to 25 or 465
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p udp -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 48 & 0xFFFF = 25,465" \
  -j DROP
# Teredo with an origin indication before IPv6
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p udp -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 16 = 0 && 0 >> 22 & 0x3C @ 16 >> 28 = 6 && 0 >> 22 & 0x3C @ 20 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 56 & 0xFFFF = 25,465" \
  -j DROP
# Teredo with an (empty) authentication header before IPv6
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p udp -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 = 0x10000 && 0 >> 22 & 0x3C @ 21 >> 28 = 6 && 0 >> 22 & 0x3C @ 24 & 0xFF = 6 && 0 >> 22 & 0x3C @ 61 & 0xFFFF = 25,465" \
  -j DROP
# Teredo with one IPv6 hop-by-hop or destination options header before TCP
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p udp -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 8 >> 28 = 6 && 0 >> 22 & 0x3C @ 12 >> 8 & 0xFF = 0,60 && 0 >> 22 & 0x3C @ 48 >> 24 = 6 && 0 >> 22 & 0x3C @ 48 >> 13 & 0x7F8 @ 56 & 0xFFFF = 25,465" \
  -j DROP
# 6in4 (IPv4 protocol 41) carrying TCP to 25 or 465
/sbin/iptables -A FORWARD -i ens18+ -o ens20 -p 41 -m u32 \
  --u32 "4 & 0x3FFF = 0 && 0 >> 22 & 0x3C @ 4 >> 8 & 0xFF = 6 && 0 >> 22 & 0x3C @ 40 & 0xFFFF = 25,465" \
  -j DROP
