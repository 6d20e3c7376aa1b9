# Everything a fresh Debian 12 root machine needs, then the job.
# Idempotent: each step leaves a stamp and is skipped when already done.
VENV      := .venv
PY        := $(VENV)/bin/python
STAMPS    := $(VENV)/.stamps
DEB_PKGS  := mininet iptables iproute2 tcpdump bridge-utils python3-venv procps iputils-ping \
             postfix dovecot-core miredo miredo-server ulogd2 ulogd2-json \
             fail2ban python3-pyinotify openssh-server openssh-client bubblewrap conntrack \
             graphviz chromium fonts-dejavu-core nftables python3-nftables
BENCH_PKGS := nmap swaks libnet-ssleay-perl libio-socket-inet6-perl
# graphviz: `dot` draws the site in the HTML report; chromium (and a font): the tests
# read that report in a real browser, headless.
# The lab runs private instances of these daemons; the services of a package
# this set-up installs are not wanted on the host (a system miredo would open a
# real Teredo tunnel, a system fail2ban would watch the host's own logs). A
# package that was already installed keeps its services as they were.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
SHELL     := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: demo test bench bench-deps setup lint clean

demo: setup
	@$(VENV)/bin/port25lab verify --all --json port25lab-report.json; \
	  rc=$$?; if [ $$rc -le 1 ]; then exit 0; else exit $$rc; fi

test: setup
	@$(VENV)/bin/ruff check lab topologies probes tests bench
	@$(VENV)/bin/mypy
	@$(PY) -m pytest -q

bench: setup bench-deps
	@$(PY) -m bench $(BENCH_ARGS)

# What the bench compares the lab with, and the tests do not need: nmap (SYN rows),
# swaks (mail rows; Net::SSLeay for its STARTTLS and implicit TLS, IO::Socket::INET6 for IPv6).
bench-deps: $(STAMPS)/bench-deb

$(STAMPS)/bench-deb: Makefile
	@missing=$$(for p in $(BENCH_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages for the bench:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi
	@mkdir -p $(STAMPS) && touch $@

setup: $(STAMPS)/deb $(STAMPS)/venv

$(STAMPS)/deb: Makefile
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    if [ -d /run/systemd/system ]; then \
	      for p in $$missing; do case $$p in \
	        postfix|miredo|ulogd2|fail2ban) s=$$p;; dovecot-core) s=dovecot;; openssh-server) s=ssh;; *) continue;; \
	      esac; systemctl disable --now $$s >/dev/null 2>&1 || true; done; \
	    fi; \
	  fi
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: pyproject.toml $(STAMPS)/deb
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@echo "installing port25lab into $(VENV)"
	@# (pip warns about this machine's unused local indexes: noise, filtered)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
	  | { grep -v '^WARNING: Location' || true; }
	@mkdir -p $(STAMPS) && touch $@

clean:
	rm -rf $(VENV) port25lab-report.json
