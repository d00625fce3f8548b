//! Integration tests of the `vaurien` binary and library: one test binary, one module each.

mod support;

/// Command line, exit statuses, `--help`, INI files given to the binary.
mod cli;
