# Vaurien — build, test, demo and install.
#   make            build the release binary
#   make test       unit and integration tests (no external server needed)
#   make test-real  tests against real servers and clients (MariaDB...), see .ci/run
#   make demo       a self-contained demo: local backend, proxy with a mix, a report
#   make bench      vaurien vs direct and haproxy on loopback, a markdown table (BENCH_ARGS=--quick)
#   make fuzz       every parser under cargo-fuzz (nightly), FUZZ_SECS seconds each (default 60)
#   make soak       tcp, http, redis, memcache through real servers with live changes and
#                   backend restarts, every byte checked (SOAK_SECS, default 600)
#   make install    PREFIX=/usr/local MANPREFIX=$(PREFIX)/share/man DESTDIR=
#   make install-toxiproxy-link  also a toxiproxy-server symlink (drop-in mode)
#   make deb        target/debian/vaurien_VERSION_ARCH.deb (dpkg-deb, dpkg-shlibdeps; lintian
#                   where installed); make deb-check installs, tries and removes it (root)

PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
DESTDIR   ?=
CARGO     ?= cargo
# Extra arguments for the test runner, e.g. make test TESTS=stream::
TESTS     ?=
# Arguments for the benchmark, e.g. make bench BENCH_ARGS="--quick --only bulk-1,http"
BENCH_ARGS ?=
# Seconds per fuzz target, and its memory bound in MiB; FUZZ_TARGETS="redis smtp" picks some
FUZZ_SECS   ?= 60
FUZZ_RSS_MB ?= 1024
# Seconds of make soak
SOAK_SECS ?= 600
# Who builds the Debian package, "Name <mail>" (empty: a placeholder at example.org)
DEB_MAINTAINER ?=

BINS = vaurien vaurienctl
MANS = man/vaurien.1 man/vaurienctl.1
# Where each shell looks for completions under PREFIX.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

.PHONY: all build test test-real demo bench fuzz soak man lint install install-toxiproxy-link uninstall deb deb-check clean

all: build

build:
	$(CARGO) build --release

test:
	$(CARGO) test -- $(TESTS)

test-real: tests/node/node_modules/.package-lock.json
	$(CARGO) test --test tests -- --ignored --test-threads=1 $(TESTS)

# Toxiproxy's Node client for make test-real, as tests/node/package-lock.json pins it.
tests/node/node_modules/.package-lock.json: tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund; \
	else echo "npm not found: the Node client's test will fail (install nodejs and npm, see .ci/run)"; fi

demo: build
	$(CARGO) run --quiet --release --example demo

bench:
	$(CARGO) bench --bench bench -- $(BENCH_ARGS)

soak:
	$(CARGO) bench --bench soak -- --secs $(SOAK_SECS)

fuzz:
	FUZZ_SECS=$(FUZZ_SECS) FUZZ_RSS_MB=$(FUZZ_RSS_MB) bash tests/fuzz/run.sh

# Rewrites the generated regions of the man pages from the option declarations.
man:
	VAURIEN_BLESS=1 $(CARGO) test --test tests -- man::

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	for m in $(MANS); do groff -man -ww -z $$m || exit 1; done

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1
	for b in $(BINS); do install -m 755 target/release/$$b $(DESTDIR)$(PREFIX)/bin/$$b || exit 1; done
	for m in $(MANS); do install -m 644 $$m $(DESTDIR)$(MANPREFIX)/man1/ || exit 1; done
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	for b in $(BINS); do \
		target/release/$$b --completions bash > $(DESTDIR)$(BASHCOMPDIR)/$$b && \
		target/release/$$b --completions zsh > $(DESTDIR)$(ZSHCOMPDIR)/_$$b && \
		target/release/$$b --completions fish > $(DESTDIR)$(FISHCOMPDIR)/$$b.fish || exit 1; \
	done

# Drop-in mode: `toxiproxy-server` runs vaurien with Toxiproxy's flags and config file.
install-toxiproxy-link: install
	ln -sf vaurien $(DESTDIR)$(PREFIX)/bin/toxiproxy-server

uninstall:
	for b in $(BINS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done
	[ -L $(DESTDIR)$(PREFIX)/bin/toxiproxy-server ] && rm -f $(DESTDIR)$(PREFIX)/bin/toxiproxy-server || true
	for m in $(MANS); do rm -f $(DESTDIR)$(MANPREFIX)/man1/$$(basename $$m); done
	for b in $(BINS); do rm -f $(DESTDIR)$(BASHCOMPDIR)/$$b $(DESTDIR)$(ZSHCOMPDIR)/_$$b $(DESTDIR)$(FISHCOMPDIR)/$$b.fish; done

deb: build
	DEB_MAINTAINER="$(DEB_MAINTAINER)" bash src/dist/deb.sh

deb-check: deb
	bash src/dist/deb-check.sh

clean:
	$(CARGO) clean
	rm -rf tests/node/node_modules
