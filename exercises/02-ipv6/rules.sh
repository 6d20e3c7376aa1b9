# Exercise 2 — a block written for IPv4 only. The network "has no IPv6"... or has it?
# allow the mail server
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
# block the other clients
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
