# Strategy 2 — divert to a "translucent proxy", screened host, corrected.
# Differences from the published rules are marked "fixed:"; see README.md.
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT

# fixed: the mail server's own outbound SMTP is not diverted (it is inside the
# client prefix, so the published DNAT sends its mail back to itself).
/sbin/iptables -t nat -A PREROUTING -i eth0 -s 203.0.113.25 -j RETURN
/sbin/ip6tables -t nat -A PREROUTING -i eth0 -s 2001:db8:b01a:70da::25 -j RETURN

/sbin/iptables -t nat -A PREROUTING -i eth0 -p tcp -s 203.0.113.0/24 --dport 25 \
    -j DNAT --to-destination 203.0.113.25:587
/sbin/ip6tables -t nat -A PREROUTING -i eth0 -p tcp -s 2001:db8:b01a:70da::/64 --dport 25 \
    -j DNAT --to-destination [2001:db8:b01a:70da::25]:587

# fixed: the mail server shares the clients' LAN, so it would answer a diverted
# client directly, from its own address, and the connection never opens. The
# diverted connections leave through gw's own address, so that the answers
# come back through gw and its NAT.
/sbin/iptables -t nat -A POSTROUTING -o eth0 -d 203.0.113.25 -p tcp --dport 587 \
    -m conntrack --ctstate DNAT -j MASQUERADE
/sbin/ip6tables -t nat -A POSTROUTING -o eth0 -d 2001:db8:b01a:70da::25 -p tcp --dport 587 \
    -m conntrack --ctstate DNAT -j MASQUERADE

# fixed: 465 is not diverted (the talk: "unless the submission server speaks
# SSL"), so it is blocked as in strategy 1, or clients reach the world on it.
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP
