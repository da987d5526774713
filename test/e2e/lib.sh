# lib.sh — what brokers.sh and browser.sh share: logging, installing Debian
# packages, and copying jars from Maven Central. Source it after setting
# LOG_TAG (the word in each log line's brackets) and CACHE.

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
fi

apt_install() { # apt_install PKG...
	command -v apt-get >/dev/null 2>&1 || die "need $* but there is no apt-get: install it by hand"
	export DEBIAN_FRONTEND=noninteractive
	# An empty package list (a fresh image) knows no package: update first.
	if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
		log "apt-get update (the package lists are empty)"
		"${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
	fi
	log "apt-get install $*"
	if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
		log "apt-get install $* failed; updating the package lists and trying again"
		"${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
		"${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
	fi
}

# maven_copy POM WHAT [-Dname=value...] copies the dependencies of POM from
# Maven Central (Java and Maven installed first when missing), through a
# repository of its own under $CACHE so a second run needs no network.
maven_copy() {
	local pom="$1" what="$2"
	shift 2
	command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null 2>&1 || apt_install maven
	mvn -q -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$CACHE/m2" "$@" \
		dependency:copy-dependencies 2>&1 | sed "s/\x1b\[[0-9;]*m//g" >&2 ||
		die "mvn dependency:copy-dependencies ($what) failed"
}
