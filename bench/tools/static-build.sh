#!/bin/sh
# Builds supergo as one static executable (glibc linked in: `-C target-feature=+crt-static`)
# into target/static/<host triple>/release/supergo, and prints its path. Measure it with
# `cargo run --release -p bench -- footprint --supergo "$(bench/tools/static-build.sh)"`.
#
# Why a build of its own: a static supergo maps no libc.so, ld.so or libgcc_s, so ~0.8 MiB
# fewer file pages are resident (BENCHMARKS.md, issue 17), and it runs on a box whatever
# its libc. The flag needs an explicit --target: given to a plain `cargo build`, it would
# reach the proc-macro crates (serde_derive), which cannot be built static. Trade-off: user
# and group names (`user =`) are looked up with glibc's built-in `files` module
# (/etc/passwd, /etc/group); NSS modules such as sss or ldap would have to be the very
# glibc version linked in (the linker says so), so use numeric ids or the dynamic build
# where users come from a directory service.
set -eu
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release -p supergo --target "$host" --target-dir target/static >&2
echo "target/static/$host/release/supergo"
