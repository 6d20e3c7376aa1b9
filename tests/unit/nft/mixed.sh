# iptables-nft's rules beside a native table (as with Docker or fail2ban on an nft host)
iptables -A FORWARD -i ens18 -p tcp -m multiport --dports 25,465 -j LOG
iptables -A FORWARD -i ens18 -p tcp -m multiport --dports 25,465 -j DROP
