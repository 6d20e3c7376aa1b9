"""Real daemons in lab nodes: recorder, ulogd2, Postfix + Dovecot, fail2ban, miredo, sshd."""
