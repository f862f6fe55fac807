# shellcheck shell=bash
#
# Helpers shared by the project's scripts (./scripts/test, the quickstart).
# Source this file; it only defines functions and changes nothing by itself.
#
# Everything a script needs is installed on demand from Debian's packages or
# the Go module proxy, so a fresh Debian 12 machine runs the tests unaided.
#
#   ensure_go               go on PATH; installs Go $LIB_GO_VERSION when there is none
#   ensure_cc               a C compiler for cgo (go test -race needs one)
#   ensure_postgres         PostgreSQL server binaries; exports PG_BIN
#   ensure_chromium         headless Chromium for the status page test; exports CHROMIUM
#   pg_tempdir              prints a new empty directory for pg_start_throwaway
#   pg_start_throwaway DIR  initdb + start a private server in DIR; exports PG_DSN & co
#   pg_stop DIR [MODE]      stops the server in DIR (MODE: immediate, the default, or fast)
#   pg_destroy DIR          pg_stop, then removes DIR
#   pg_run CMD [ARG...]     runs CMD as the server's owner (the postgres user when root)
#
# Functions report failure by exit status after saying why on stderr, so they
# work under `set -euo pipefail`.

LIB_GO_VERSION=1.26.8

# SHA-256 of the toolchain module zips, so a download is checked even without
# a go command to consult the checksum database.
declare -A LIB_GO_ZIP_SHA256=(
	[amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
	[arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)

lib_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
lib_die() {
	lib_log "error: $*"
	return 1
}

# as_root CMD...: runs CMD as root, through sudo when we are not root.
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		lib_die "'$*' needs root: run this script as root, or install sudo"
	fi
}

# apt_install PKG...: installs Debian packages, refreshing the index once per script.
apt_install() {
	command -v apt-get >/dev/null 2>&1 ||
		lib_die "apt-get not found: install $* yourself (this script knows only Debian's packages)" || return
	if [[ -z ${LIB_APT_UPDATED:-} ]]; then
		lib_log "apt-get update"
		as_root apt-get update -qq || return
		LIB_APT_UPDATED=1
	fi
	lib_log "installing from Debian's packages: $*"
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return
}

# ensure_go: makes `go` runnable. Prefers a go already on PATH, then
# /usr/local/go; otherwise installs the toolchain module golang.org/toolchain
# (Go $LIB_GO_VERSION) from the first proxy in $GOPROXY (default
# https://proxy.golang.org) into $GO_TOOLCHAIN_DIR (default
# /usr/local/go-toolchain as root, ~/.local/go-toolchain otherwise).
# Prepends the chosen bin directory to PATH.
ensure_go() {
	if command -v go >/dev/null 2>&1; then
		return 0
	fi
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:$PATH"
		return 0
	fi

	local dest=${GO_TOOLCHAIN_DIR:-}
	if [[ -z $dest ]]; then
		if ((EUID == 0)); then dest=/usr/local/go-toolchain; else dest=$HOME/.local/go-toolchain; fi
	fi
	if [[ ! -x $dest/bin/go ]]; then
		lib_install_go "$dest" || return
	fi
	export PATH="$dest/bin:$PATH"
	go version >/dev/null || lib_die "$dest/bin/go does not run"
}

lib_install_go() {
	local dest=$1 arch proxy
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) lib_die "no Go toolchain known for $(uname -m): install Go $LIB_GO_VERSION yourself" || return ;;
	esac
	# The first entry of GOPROXY, as the go command would try it. "direct" and
	# "off" name no proxy to download a zip from, so they fall back to the default.
	proxy=${GOPROXY:-}
	proxy=${proxy%%[,|]*}
	case $proxy in
	http://* | https://* | file://*) proxy=${proxy%/} ;;
	*) proxy=https://proxy.golang.org ;;
	esac

	command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates || return
	command -v unzip >/dev/null 2>&1 || apt_install unzip || return

	local version="v0.0.1-go$LIB_GO_VERSION.linux-$arch"
	local url="$proxy/golang.org/toolchain/@v/$version.zip"
	local parent tmp
	parent=$(dirname "$dest")
	mkdir -p "$parent" || return
	# Unpack beside the destination so the final step is a rename, and an
	# interrupted install never leaves a half-filled $dest behind.
	tmp=$(mktemp -d "$parent/.go-toolchain.XXXXXX") || return
	lib_log "installing Go $LIB_GO_VERSION from $url into $dest"
	if ! curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"; then
		rm -rf -- "$tmp"
		lib_die "download of $url failed"
		return
	fi
	local sum
	sum=$(sha256sum "$tmp/go.zip" | cut -d' ' -f1)
	if [[ $sum != "${LIB_GO_ZIP_SHA256[$arch]}" ]]; then
		rm -rf -- "$tmp"
		lib_die "checksum mismatch for $url: got $sum, want ${LIB_GO_ZIP_SHA256[$arch]}"
		return
	fi
	# The zip holds a whole GOROOT under golang.org/toolchain@<version>/.
	if ! unzip -q "$tmp/go.zip" -d "$tmp/x"; then
		rm -rf -- "$tmp"
		lib_die "unpacking $tmp/go.zip failed"
		return
	fi
	rm -rf -- "$dest"
	mv "$tmp/x/golang.org/toolchain@$version" "$dest" || return
	rm -rf -- "$tmp"
}

# ensure_cc: installs gcc when the C compiler that go uses for cgo is missing.
# Call it after ensure_go.
ensure_cc() {
	local cc
	cc=$(go env CC) || return
	cc=${cc%% *}
	if command -v "${cc:-gcc}" >/dev/null 2>&1; then
		return 0
	fi
	apt_install gcc libc6-dev
}

# lib_find_pg_bin prints the newest /usr/lib/postgresql/NN/bin that has initdb.
lib_find_pg_bin() {
	local f initdb
	initdb=$(
		for f in /usr/lib/postgresql/*/bin/initdb; do
			if [[ -x $f ]]; then printf '%s\n' "$f"; fi
		done | sort -V | tail -n 1
	)
	[[ -n $initdb ]] || return 1
	dirname "$initdb"
}

# ensure_postgres: exports PG_BIN, the directory of initdb, pg_ctl and postgres.
# A PG_BIN set by the caller wins (for machines that are not Debian); otherwise
# Debian's postgresql package is installed when no server is there. As root it
# also makes sure the postgres user exists, since the server refuses to run as root.
ensure_postgres() {
	if [[ -n ${PG_BIN:-} ]]; then
		[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] ||
			lib_die "PG_BIN=$PG_BIN holds no initdb and pg_ctl" || return
	elif ! PG_BIN=$(lib_find_pg_bin); then
		# The package would otherwise create and start a "main" cluster on port
		# 5432 that nothing here uses.
		as_root mkdir -p /etc/postgresql-common/createcluster.d || return
		printf 'create_main_cluster = false\n' |
			as_root tee /etc/postgresql-common/createcluster.d/onesignal-cdc-no-main-cluster.conf >/dev/null || return
		apt_install postgresql || return
		PG_BIN=$(lib_find_pg_bin) || lib_die "postgresql installed, but no /usr/lib/postgresql/*/bin/initdb" || return
	fi
	export PG_BIN

	if ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
		lib_log "creating the postgres system user"
		useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
			--shell /usr/sbin/nologin postgres || return
	fi
}

# ensure_chromium: exports CHROMIUM, the path of a Chromium (or Chrome)
# binary, for the test that loads the status page in a headless browser. A
# CHROMIUM set by the caller wins; otherwise Debian's chromium package is
# installed when none is on PATH (its fonts come with it as dependencies).
ensure_chromium() {
	if [[ -n ${CHROMIUM:-} ]]; then
		[[ -x $CHROMIUM ]] || lib_die "CHROMIUM=$CHROMIUM is not an executable file" || return
		export CHROMIUM
		return 0
	fi
	local name
	for name in chromium chromium-browser google-chrome; do
		if CHROMIUM=$(command -v "$name"); then
			export CHROMIUM
			return 0
		fi
	done
	apt_install chromium || return
	CHROMIUM=$(command -v chromium) || lib_die "chromium installed, but not on PATH" || return
	export CHROMIUM
}

# pg_run CMD [ARG...]: runs CMD as the owner of the throwaway clusters: the
# postgres user when we are root, ourselves otherwise. Pass absolute paths: it
# runs from / because the postgres user may not enter the current directory.
pg_run() {
	if ((EUID == 0)); then
		(cd / && exec runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pg_tempdir prints a new empty directory to hand to pg_start_throwaway. As
# root it is under /tmp, because the postgres user must reach it (TMPDIR might
# be under /root).
pg_tempdir() {
	local base=${TMPDIR:-/tmp}
	((EUID == 0)) && base=/tmp
	mktemp -d "$base/onesignal-cdc-pg.XXXXXXXX"
}

# lib_port_free PORT: true when nothing listens on PORT, on any address.
lib_port_free() {
	local port=$1
	if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
		return 1
	fi
	# A connection that succeeds means a listener, whatever ss said.
	! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# lib_pick_port prints a loopback port nobody listens on. It stays below
# 32768, where Linux does not hand out ephemeral ports for outgoing connections.
lib_pick_port() {
	local i port
	for ((i = 0; i < 200; i++)); do
		port=$((15000 + RANDOM % 17000))
		if lib_port_free "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	lib_die "no free port found in 15000-31999"
}

# pg_start_throwaway DIR: creates a cluster in DIR/data (DIR must be empty or
# missing), configured for logical replication and for speed over durability,
# and starts it on a free port of 127.0.0.1 with its socket in DIR and its log in
# DIR/log. Settings live in DIR/data/postgresql.conf, so `pg_ctl restart` keeps
# them. Calls ensure_postgres first. Exports:
#   PG_DSN      postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#   PG_LOG      DIR/log, the server's log
#   PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres PGDATA=DIR/data,
#               so psql, pg_ctl and pg_recvlogical need no arguments
#   PG_BIN      (from ensure_postgres)
pg_start_throwaway() {
	local dir=${1:?pg_start_throwaway needs a directory}
	local data=$dir/data log=$dir/log
	ensure_postgres || return
	mkdir -p "$dir" || return
	if ((EUID == 0)); then
		chown postgres:postgres "$dir" || return
	fi

	if ! pg_run "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
		--locale=C.UTF-8 --no-sync --no-instructions >"$dir/initdb.out" 2>&1; then
		cat "$dir/initdb.out" >&2
		lib_die "initdb -D $data failed"
		return
	fi
	printf "\n# Throwaway test cluster (scripts/lib.sh).\ninclude 'throwaway.conf'\n" |
		pg_run tee -a "$data/postgresql.conf" >/dev/null || return

	# Another process may take the port between the check and the bind, so a
	# start that failed on the port is tried again with another one.
	local attempt port
	for ((attempt = 1; attempt <= 5; attempt++)); do
		port=$(lib_pick_port) || return
		pg_run tee "$data/throwaway.conf" >/dev/null <<-EOF || return
			listen_addresses = '127.0.0.1'
			port = $port
			unix_socket_directories = '$dir'
			max_connections = 200
			wal_level = logical
			max_replication_slots = 64
			max_wal_senders = 64
			# The data dies with the test run: durability buys nothing. But
			# synchronous_commit stays on: walsenders send only flushed WAL, so
			# an asynchronous commit would reach a replication client up to
			# wal_writer_delay late, and pg_current_wal_lsn() would lag behind it.
			fsync = off
			full_page_writes = off
			log_line_prefix = '%m [%p] %q%a@%d '
		EOF
		if [[ -e $log ]]; then : >"$log"; fi # judge this attempt by its own log
		if pg_run "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start >"$dir/pg_ctl.out" 2>&1; then
			export PG_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			export PG_LOG=$log PGDATA=$data
			export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
			return 0
		fi
		if ! grep -qE 'could not bind|could not create any TCP/IP sockets|already in use' "$log" 2>/dev/null; then
			break
		fi
		lib_log "port $port was taken meanwhile; trying another"
	done
	cat "$dir/pg_ctl.out" >&2 2>/dev/null || true
	tail -n 30 "$log" >&2 2>/dev/null || true
	lib_die "could not start PostgreSQL in $data (log: $log)"
}

# pg_stop DIR [MODE]: stops the server of DIR/data if it runs; does nothing
# otherwise. MODE is pg_ctl's: immediate (the default: nothing in a throwaway
# cluster is worth a shutdown checkpoint) or fast. A server that will not stop
# within 30 s is killed.
pg_stop() {
	local dir=${1:?pg_stop needs a directory} mode=${2:-immediate}
	local data=$dir/data pid
	[[ -f $data/postmaster.pid ]] || return 0
	if [[ -z ${PG_BIN:-} ]]; then
		PG_BIN=$(lib_find_pg_bin) || true
	fi
	if [[ -n ${PG_BIN:-} ]]; then
		pg_run "$PG_BIN/pg_ctl" -D "$data" -m "$mode" -w -t 30 stop >/dev/null 2>&1 || true
	fi
	[[ -f $data/postmaster.pid ]] || return 0
	pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 0
	if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
		lib_log "PostgreSQL (pid $pid) did not stop; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

# pg_destroy DIR: pg_stop DIR, then removes DIR and everything in it.
pg_destroy() {
	local dir=${1:?pg_destroy needs a directory}
	[[ $dir != / ]] || lib_die "refusing to remove /" || return
	pg_stop "$dir"
	rm -rf -- "$dir"
}
