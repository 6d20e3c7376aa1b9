# Exercise 2, a solution: the same block for IPv6 (ip6tables), with the server's
# IPv6 address and the clients' IPv6 prefix.
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.25 --dports 25,465 -j ACCEPT
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::25 --dports 25,465 -j ACCEPT
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j LOG
/sbin/iptables -A FORWARD -i eth0 -p tcp -m multiport -s 203.0.113.0/24 --dports 25,465 -j DROP
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j LOG
/sbin/ip6tables -A FORWARD -i eth0 -p tcp -m multiport -s 2001:db8:b01a:70da::/64 --dports 25,465 -j DROP
