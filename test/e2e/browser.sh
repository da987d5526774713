#!/usr/bin/env bash
# browser.sh — what the status page test needs besides the brokers: a
# headless Chromium (Debian's `chromium`, with a font so text renders) and
# the W3C Nu Html Checker (nu.validator:validator from Maven Central, run on
# the Java that brokers.sh installs for Kafka).
#
#   browser.sh install          install what is missing (idempotent, cached)
#   browser.sh chromium         print the path of the chromium binary
#   browser.sh validate FILE... check HTML files with the Nu checker, errors
#                               only; exit non-zero when any has an error
#
# It fails, never skips, when something cannot be installed.
#
# Environment (all optional):
#   E2E_CACHE   downloads (~/.cache/mistbridge-e2e): the checker's jars go
#               to $E2E_CACHE/vnu-<version>/libs
set -euo pipefail

VNU_VERSION=26.5.2

CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mistbridge-e2e}"
VNU_HOME="$CACHE/vnu-$VNU_VERSION"
VNU_LIBS="$VNU_HOME/libs"
VNU_MARKER="$VNU_HOME/.installed"

LOG_TAG=browser
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

chromium_path() {
	local c
	for c in chromium chromium-browser; do
		if command -v "$c" >/dev/null 2>&1; then
			command -v "$c"
			return 0
		fi
	done
	return 1
}

install_chromium() {
	local missing=()
	chromium_path >/dev/null || missing+=(chromium)
	# Without recommends, chromium brings no font: text would be boxes.
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
	if [ ${#missing[@]} -eq 0 ]; then
		log "chromium: $(chromium_path)"
		return
	fi
	apt_install "${missing[@]}"
	chromium_path >/dev/null || die "chromium is still missing after apt-get install chromium"
	log "chromium: $(chromium_path) ($("$(chromium_path)" --version 2>/dev/null || echo '?'))"
}

# vnu_pom is not a build: a list of jars, like test/e2e/pom.xml for Kafka.
vnu_pom() {
	cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.github.mistbridge</groupId>
  <artifactId>mistbridge-e2e-vnu</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>nu.validator</groupId>
      <artifactId>validator</artifactId>
      <version>$VNU_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

install_vnu() {
	if [ -f "$VNU_MARKER" ] && [ "$(vnu_pom)" = "$(cat "$VNU_HOME/pom.xml" 2>/dev/null)" ] &&
		[ "$(find "$VNU_LIBS" -name '*.jar' | wc -l)" -ge "$(cat "$VNU_MARKER")" ]; then
		log "nu validator $VNU_VERSION: cached in $VNU_LIBS"
		return
	fi
	log "nu validator $VNU_VERSION: copying jars from Maven Central into $VNU_LIBS"
	rm -rf "$VNU_HOME"
	mkdir -p "$VNU_LIBS"
	vnu_pom >"$VNU_HOME/pom.xml"
	maven_copy "$VNU_HOME/pom.xml" "nu.validator:validator:$VNU_VERSION" -DoutputDirectory="$VNU_LIBS"
	local n
	n="$(find "$VNU_LIBS" -name '*.jar' | wc -l)"
	[ -f "$VNU_LIBS/validator-$VNU_VERSION.jar" ] || die "validator-$VNU_VERSION.jar was not copied"
	echo "$n" >"$VNU_MARKER"
	log "nu validator $VNU_VERSION: $n jars"
}

cmd_validate() { # cmd_validate FILE...
	[ -f "$VNU_MARKER" ] || die "the nu validator is not installed: run '$0 install' first"
	[ $# -gt 0 ] || die "validate: no file given"
	# Exit status 1 and the messages on stderr when a file has an error.
	java -Xss4m -cp "$VNU_LIBS/*" nu.validator.client.SimpleCommandLineValidator \
		--errors-only --format gnu "$@"
}

[ $# -gt 0 ] || {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
}
case "$1" in
install)
	t0=$SECONDS
	mkdir -p "$CACHE"
	install_chromium
	install_vnu
	log "install done in $((SECONDS - t0))s"
	;;
chromium) chromium_path || die "chromium is not installed: run '$0 install' first" ;;
validate)
	shift
	cmd_validate "$@"
	;;
*) die "unknown subcommand $1 (install, chromium, validate)" ;;
esac
