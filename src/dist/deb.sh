#!/usr/bin/env bash
# make deb: builds target/debian/vaurien_VERSION_ARCH.deb with dpkg-deb from the release
# binaries (built first by make), the man pages (gzip -9n), the shell completions (written by
# the binaries themselves), the README, the example INI (also /etc/vaurien/vaurien.ini, a
# conffile), the copyright file, a changelog and the systemd unit (installed disabled: there
# is no maintainer script to enable it). Depends: comes from dpkg-shlibdeps on the binaries.
# Then lintian, where installed, must report no error. Prints the package's size and its
# installed size.
#
#   bash src/dist/deb.sh        (from the top of the tree; needs dpkg-deb and dpkg-shlibdeps)
#
# DEB_MAINTAINER="Name <mail>" names whoever builds the package (default: a placeholder at
# example.org, the domain reserved for examples, as the project has no mail address).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

need() {
    command -v "$1" >/dev/null || { echo "make deb: $1 not found: apt-get install $2" >&2; exit 1; }
}
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev

maintainer=${DEB_MAINTAINER:-vaurien packagers <packagers@example.org>}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
name="vaurien_${version}_${arch}"
out=target/debian
stage="$out/$name"
bin=target/release
for b in vaurien vaurienctl; do
    [ -x "$bin/$b" ] || { echo "make deb: $bin/$b is missing: run make build first" >&2; exit 1; }
done

rm -rf "$stage" "$out/$name.deb"
# Every directory 755 and every file 644 unless said, whatever the umask.
umask 022
d() { install -d "$stage/$1"; }
d DEBIAN
d usr/bin
d usr/share/man/man1
d usr/share/doc/vaurien/examples
d usr/share/bash-completion/completions
d usr/share/zsh/vendor-completions
d usr/share/fish/vendor_completions.d
d usr/lib/systemd/system
d etc/vaurien

for b in vaurien vaurienctl; do
    install -m 755 "$bin/$b" "$stage/usr/bin/$b"
    # The release profile strips already; strip again in case a profile did not.
    command -v strip >/dev/null && strip --strip-unneeded --remove-section=.comment \
        --remove-section=.note "$stage/usr/bin/$b"
    gzip -9n < "man/$b.1" > "$stage/usr/share/man/man1/$b.1.gz"
    "$bin/$b" --completions bash > "$stage/usr/share/bash-completion/completions/$b"
    "$bin/$b" --completions zsh > "$stage/usr/share/zsh/vendor-completions/_$b"
    "$bin/$b" --completions fish > "$stage/usr/share/fish/vendor_completions.d/$b.fish"
done
install -m 644 README.md "$stage/usr/share/doc/vaurien/README.md"
install -m 644 src/dist/vaurien.ini "$stage/usr/share/doc/vaurien/examples/vaurien.ini"
install -m 644 src/dist/vaurien.ini "$stage/etc/vaurien/vaurien.ini"
install -m 644 src/dist/copyright "$stage/usr/share/doc/vaurien/copyright"
install -m 644 src/dist/vaurien.service "$stage/usr/lib/systemd/system/vaurien.service"
# A native package's changelog, in Debian's format; its date is the last commit's, so that
# two builds of one commit give the same package.
when=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'vaurien (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$version" "$version" "$maintainer" "$when" | gzip -9n > "$stage/usr/share/doc/vaurien/changelog.gz"

# Depends: from the shared libraries the binaries link, as dpkg-shlibdeps finds them.
shlibs_dir=$(mktemp -d)
trap 'rm -rf "$shlibs_dir"' EXIT
mkdir -p "$shlibs_dir/debian"
printf 'Source: vaurien\n\nPackage: vaurien\nArchitecture: any\n' > "$shlibs_dir/debian/control"
top=$PWD
if ! shlibs=$(cd "$shlibs_dir" && dpkg-shlibdeps -O -e"$top/$stage/usr/bin/vaurien" \
    -e"$top/$stage/usr/bin/vaurienctl" 2>"$shlibs_dir/errors"); then
    echo "make deb: dpkg-shlibdeps failed:" >&2
    cat "$shlibs_dir/errors" >&2
    exit 1
fi
depends=$(echo "$shlibs" | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "make deb: dpkg-shlibdeps found no dependency" >&2; exit 1; }

installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: vaurien
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_kib
Depends: $depends
Section: net
Priority: optional
Homepage: https://github.com/mozilla-services/vaurien
Description: chaos TCP proxy with protocol-aware faults and Toxiproxy's API
 Vaurien sits between an application and a backend (MySQL, Redis, memcached,
 an HTTP or SMTP server, any TCP service) and makes calls fail, hang or crawl
 in a percentage mix, per protocol, with native error replies: delays, errors,
 hangs, blackouts, resets, latency, bandwidth limits and Toxiproxy's toxics.
 It is driven live over HTTP (its own API and Toxiproxy's, so Toxiproxy's
 clients work unchanged) or with vaurienctl.
CONTROL
echo /etc/vaurien/vaurien.ini > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' \
    | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 644 "$stage"/DEBIAN/*

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/$name.deb" >/dev/null
deb="$out/$name.deb"
echo "built $deb"
echo "package size: $(stat -c %s "$deb") bytes ($(du -k "$deb" | cut -f1) KiB)"
echo "installed size: $installed_kib KiB"
echo "Depends: $depends"

if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are shown.
    lintian --fail-on error --tag-display-limit 0 "$deb"
    echo "lintian: no error"
else
    echo "lintian: not installed (apt-get install lintian to check the package)"
fi
