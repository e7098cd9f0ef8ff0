# Shared by scripts/test and scripts/run: locate Odoo 18, run a private PostgreSQL
# cluster as an unprivileged user, prepare an addons path that names this checkout
# pos_qimen_sync. Sourced, not executed.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${POS_QIMEN_STATE:-/tmp/pos_qimen_sync-$(id -u)}
PG_PORT=${POS_QIMEN_PG_PORT:-54329}
PG_DIR=$STATE/pg
PG_SOCK=$STATE/pg/socket
PG_ROLE=odoo
PY=${PYTHON:-python3}
# Odoo is started through this launcher, as its own odoo-bin does: a self-reload (a time
# or memory limit, a module installed from the UI) re-executes it, which `-m odoo` fails.
ODOO_BIN=$ROOT/scripts/odoo-bin
if [ -n "${ODOO_PATH:-}" ]; then
  export PYTHONPATH="$ODOO_PATH${PYTHONPATH:+:$PYTHONPATH}"
fi

say() { printf '== %s\n' "$*"; }

help_or_no_arguments() {  # --help: print the script's opening comment; refuse arguments
  local script=$1; shift
  case "${1:-}" in
    "") return 0 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$script"; exit 0 ;;
    *) echo "$(basename "$script"): unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
}

odoo_available() {
  # importable with its dependencies (odoo.sql_db needs psycopg2), and version 18
  "$PY" -c 'import sys, odoo.sql_db, odoo.release as r; sys.exit(r.version_info[0] != 18)' 2>/dev/null
}

odoo_problem() {  # why Odoo 18 cannot run here, in a sentence that says what to do
  local python; python=$(command -v "$PY" || echo "$PY")
  "$PY" - "$python" <<'PY'
import sys
python = sys.argv[1]
from importlib.util import find_spec
spec = find_spec("odoo")
if spec is None:
    sys.exit(f"no Odoo is importable by the Python at {python}: install Odoo 18, or set "
             "ODOO_PATH to its source tree")
where = list(spec.submodule_search_locations or [spec.origin])[0]
try:
    import odoo.release as release
    import odoo.sql_db  # noqa: F401 (imports Odoo's own dependencies)
except ImportError as error:
    sys.exit(f"the Python at {python} finds Odoo at {where} but cannot import "
             f"{error.name or error}: set PYTHON to the Python that runs Odoo, or install "
             "Odoo's requirements into this one")
if release.version_info[0] != 18:
    sys.exit(f"the Odoo at {where} is {release.version}: this addon needs 18")
PY
}

pip_install() {  # install a requirements file when one of its modules is missing
  local file=$1; shift
  local modules; modules=$(IFS=,; echo "$*")
  "$PY" -c "import $modules" 2>/dev/null && return 0
  say "installing Python packages from $(basename "$file")"
  "$PY" -m pip install -q --disable-pip-version-check -r "$file"
}

addons_path() {  # Odoo's addons + a folder where this checkout is called pos_qimen_sync
  mkdir -p "$STATE/addons"
  # replaced only when it points elsewhere: ln -sfn is not atomic, and a server
  # starting meanwhile would not find the addon
  [ "$(readlink "$STATE/addons/pos_qimen_sync")" = "$ROOT" ] \
    || ln -sfn "$ROOT" "$STATE/addons/pos_qimen_sync"
  local core
  core=$("$PY" -c 'import os, odoo; print(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(odoo.__file__))), "addons"))')
  local path="$STATE/addons"
  [ -d "$core" ] && path="$path,$core"
  [ -n "${ODOO_ADDONS_PATH:-}" ] && path="$path,$ODOO_ADDONS_PATH"
  echo "$path"
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_ensure_installed() {
  [ -n "$(pg_bindir)" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's PostgreSQL server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [ -n "$(pg_bindir)" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; return 1; }
}

as_pg_user() {  # PostgreSQL refuses to run as root: use an unprivileged account
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$STATE" postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_fail() {  # what went wrong, and what to do; pg_start returns 1 after it
  echo "PostgreSQL: $*" >&2
  return 1
}

pg_closed_folder() {  # the first folder on the way to $1 that the server's user cannot enter
  local path=/ part
  local IFS=/
  for part in $1; do
    [ -n "$part" ] || continue
    path=${path%/}/$part
    as_pg_user test -x "$path" 2>/dev/null || { echo "$path"; return 0; }
  done
  return 1
}

pg_start() {  # stops at the first failure, saying what to fix
  pg_ensure_installed || return 1
  local bin; bin=$(pg_bindir)
  mkdir -p "$STATE" && chmod 755 "$STATE" \
    || pg_fail "cannot create $STATE: set POS_QIMEN_STATE to a folder you may write" || return 1
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    say "creating a private PostgreSQL cluster in $PG_DIR"
    rm -rf "$PG_DIR"; mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir "$STATE" postgres
      chown postgres "$PG_DIR"
    fi
    local closed
    if closed=$(pg_closed_folder "$PG_DIR"); then
      pg_fail "the server runs as user $(as_pg_user id -un), who cannot enter $closed" \
        "(its permissions: $(stat -c %A "$closed")). Open it to other users" \
        "(chmod o+x $closed), or set POS_QIMEN_STATE to a folder outside it" \
        "(default: /tmp/pos_qimen_sync-\$UID)." || return 1
    fi
    as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U "$PG_ROLE" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null \
      || pg_fail "initdb failed in $PG_DIR/data (its message is above)" || return 1
    as_pg_user mkdir -p "$PG_SOCK" || pg_fail "cannot create the socket folder $PG_SOCK" || return 1
  fi
  PG_STARTED_HERE=
  if ! as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    if ! as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-c listen_addresses='' -k $PG_SOCK -p $PG_PORT -c fsync=off -c full_page_writes=off" start >/dev/null; then
      tail -n 5 "$PG_DIR/server.log" >&2 2>/dev/null
      pg_fail "the server did not start (above, from $PG_DIR/server.log); if port $PG_PORT" \
        "is taken, set POS_QIMEN_PG_PORT" || return 1
    fi
    PG_STARTED_HERE=1
  fi
  export PGHOST=$PG_SOCK PGPORT=$PG_PORT PGUSER=$PG_ROLE
  PG_BIN=$bin
}

pg_stop() {  # only a server this script started: another command may be using it
  [ -n "${PG_BIN:-}" ] && [ -n "${PG_STARTED_HERE:-}" ] || return 0
  as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}

odoo_conf() {  # write an Odoo configuration for the private cluster; print its path
  local conf=$STATE/odoo.conf
  cat > "$conf" <<CONF
[options]
addons_path = $(addons_path)
data_dir = $STATE/data
db_host = $PG_SOCK
db_port = $PG_PORT
db_user = $PG_ROLE
db_password = False
list_db = True
http_interface = 127.0.0.1
CONF
  echo "$conf"
}

db_exists() { "$PG_BIN/psql" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$1'" | grep -q 1; }

db_copy() {  # createdb -T plus the filestore
  "$PG_BIN/createdb" -T "$1" "$2" || { echo "could not copy database $1 to $2 (above)" >&2; return 1; }
  if [ -d "$STATE/data/filestore/$1" ]; then
    mkdir -p "$STATE/data/filestore"; rm -rf "$STATE/data/filestore/$2"
    cp -r "$STATE/data/filestore/$1" "$STATE/data/filestore/$2"
  fi
}

db_drop() {
  "$PG_BIN/dropdb" --if-exists "$1" >/dev/null 2>&1 || true
  rm -rf "$STATE/data/filestore/$1"
}

template_db() {  # a database with point_of_sale installed, built once and copied
  local demo=$1 conf=$2
  local tag
  tag=$("$PY" -c 'import odoo, odoo.release as r, hashlib; print(hashlib.md5((odoo.__file__ + r.version).encode()).hexdigest()[:8])')
  local name="pqs_tmpl_${demo}_$tag"
  if db_exists "$name" && [ -f "$STATE/$name.ok" ]; then echo "$name"; return 0; fi
  db_drop "$name"
  say "building template database $name (point_of_sale, demo=$demo); done once" >&2
  local flags=(--without-demo=all)
  [ "$demo" = demo ] && flags=()
  "$PY" "$ODOO_BIN" -c "$conf" -d "$name" -i point_of_sale "${flags[@]}" --stop-after-init \
    --log-level=warn --logfile="$STATE/$name.log" || { echo "template build failed, see $STATE/$name.log" >&2; return 1; }
  touch "$STATE/$name.ok"
  echo "$name"
}

port_free() {  # nothing listens on 127.0.0.1:$1
  "$PY" -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0)' "$1"
}

free_port() {  # a TCP port free on 127.0.0.1 now, chosen by the system
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
