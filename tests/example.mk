# How a project's Makefile can put Vaurien in front of a backend for its tests: start it in
# the background, wait until it answers, run the tests, stop it by its pid file. No sleep.
#
#   make -f tests/example.mk check BACKEND=127.0.0.1:6379
#
# `make test` runs this file against an echo backend (tests/control.rs).

SHELL      := /bin/bash
VAURIEN    ?= vaurien
VAURIENCTL ?= vaurienctl
BACKEND    ?= 127.0.0.1:6379
PROXY_PORT ?= 8000
HTTP_PORT  ?= 8080
RUN        ?= .
API         = --http-host 127.0.0.1 --http-port $(HTTP_PORT)
SELF        = $(MAKE) -s -f $(firstword $(MAKEFILE_LIST))

.PHONY: check start client stop

# Stops vaurien whether the client passes or fails.
check: start
	@$(SELF) client; status=$$?; $(SELF) stop; exit $$status

start:
	@$(VAURIEN) --proxy 127.0.0.1:$(PROXY_PORT) --backend $(BACKEND) --http $(API) \
		--pid-file $(RUN)/vaurien.pid --log-output $(RUN)/vaurien.log > $(RUN)/vaurien.out &
	@$(VAURIENCTL) $(API) wait --timeout 10

# The "test suite": one exchange that works, then one under a blackout.
client:
	@exec 3<>/dev/tcp/127.0.0.1/$(PROXY_PORT); printf hello >&3; \
		read -r -t 5 -n 5 reply <&3; echo "through vaurien: $$reply"
	@$(VAURIENCTL) $(API) set-behavior blackout > /dev/null
	@exec 3<>/dev/tcp/127.0.0.1/$(PROXY_PORT); printf hello >&3; \
		if read -r -t 5 -n 5 reply <&3; then echo "with blackout: answered $$reply"; exit 1; \
		else echo "with blackout: closed"; fi
	@$(VAURIENCTL) $(API) set-behavior dummy > /dev/null

# SIGTERM, then wait for the process to be gone (vaurien exits within 1 s).
stop:
	@pid=$$(cat $(RUN)/vaurien.pid) && kill $$pid && timeout 5 tail --pid=$$pid -s 0.02 -f /dev/null
