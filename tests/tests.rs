//! Integration tests of the `vaurien` binary and library: one test binary, one module each.

mod support;

/// Command line, exit statuses, `--help`, INI files given to the binary.
mod cli;
/// Shell completions: in step with `--help`, and what bash, zsh and fish make of them.
mod completions;
/// The man page: every `--help` flag documented, generated regions in step, groff clean.
mod man;

/// Stream protocols end to end: data integrity, half-close, server-first, timeouts, limits.
mod stream;

/// Behaviors on a stream as a client sees them: delay, error, hang, blackout, abort, seeds.
mod behaviors;

/// The Toxiproxy faults on a stream: latency, bandwidth, slicer, limit_data, reset_peer,
/// slow_close, timeout; their bad values.
mod faults;

/// Toxics through Toxiproxy's API on the one proxy: statuses, shapes, merges, reset.
mod toxics;

/// Several proxies: `GET /metrics` with Toxiproxy's labels, proxies moved to another address.
mod proxies;

/// Against a real MariaDB server and `mariadb` client (ignored: `make test-real`).
mod real_mysql;

/// `--protocol http` against a real nginx and curl, and a test server (ignored: `make test-real`).
mod real_http;

/// `--protocol redis` against a real redis-server, redis-cli and redis-benchmark (ignored:
/// `make test-real`).
mod real_redis;

/// Toxiproxy's Python and Node clients against the drop-in (ignored: `make test-real`).
mod real_toxiproxy;

/// The control API, vaurienctl, statistics and statsd, and a Makefile driving vaurien.
mod control;

/// The library API of SPEC §9, used only through the public crate interface.
mod library;

/// The framed-protocol driver through a minimal line protocol: pipelining, behaviors, pool.
mod framed;

/// `--protocol memcache` against a real memcached and pymemcache (ignored: `make test-real`).
mod real_memcache;

/// `--protocol smtp` against a real aiosmtpd server and smtplib (ignored: `make test-real`).
mod real_smtp;

/// What never breaks (SPEC §13): live changes, hangs, limits, calls that wait, the API.
mod reliability;
