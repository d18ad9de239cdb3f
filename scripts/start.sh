#!/usr/bin/env bash
# `npm start`: the main job on the embedded default (SQLite + local files). Builds coresnap, then
# runs a coroner server and coresnapd registered for this machine's crashes, prints the web
# address and the login, and on Ctrl-C stops both, uninstalls the handler and restores
# core_pattern. Then the vendor guide's basic test works:
#   kill -SIGABRT <pid>    (any program, e.g. `sleep 1000 &`)
#   bin/morgue login http://127.0.0.1:6097 && bin/morgue list blackhole
#
# coroner's data and coresnap.conf live under $CORESNAP_HOME (default ~/.local/share/coresnap);
# the archive is the guide's /var/coresnap/archive ($CORESNAP_ARCHIVE): ptrace runs as the
# unprivileged coresnap user and must reach it, which a folder under /root would not allow.
# CORESNAP_LISTEN (default 127.0.0.1:6097) is where coroner listens.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

scripts/install-deps.sh
scripts/build.sh

[[ $(id -u) == 0 ]] || { echo "start: coresnapd registers itself in /proc/sys/kernel/core_pattern, which needs root" >&2; exit 1; }

home=${CORESNAP_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/coresnap}
listen=${CORESNAP_LISTEN:-127.0.0.1:6097}
data=$home/coroner
archive=${CORESNAP_ARCHIVE:-/var/coresnap/archive}
conf=$home/coresnap.conf
mkdir -p "$data" "$archive"
chmod 700 "$home"

password_file=$home/admin-password
if [[ -n ${CORONER_ADMIN_PASSWORD:-} ]]; then
  password=$CORONER_ADMIN_PASSWORD
elif [[ -s $password_file ]]; then
  password=$(cat "$password_file")
else
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
  (umask 077 && printf '%s\n' "$password" >"$password_file")
fi

coroner_pid=
coresnapd_pid=
stopped=0
stop() {
  ((stopped)) && return
  stopped=1
  echo
  echo "start: stopping coresnapd and coroner, restoring core_pattern"
  [[ -n $coresnapd_pid ]] && kill -TERM "$coresnapd_pid" 2>/dev/null && wait "$coresnapd_pid" 2>/dev/null || true
  bin/coresnap uninstall -c "$conf" || true
  [[ -n $coroner_pid ]] && kill -TERM "$coroner_pid" 2>/dev/null && wait "$coroner_pid" 2>/dev/null || true
  echo "start: core_pattern is now '$(cat /proc/sys/kernel/core_pattern)'"
}
trap stop EXIT
trap 'exit 130' INT TERM

CORONER_ADMIN_PASSWORD=$password bin/coroner serve --data "$data" --listen "$listen" &
coroner_pid=$!
listening() { # bash's /dev/tcp: no curl needed
  (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null
}
for _ in $(seq 300); do
  [[ -s $data/coroner.cf ]] && listening && break
  kill -0 "$coroner_pid" 2>/dev/null || { echo "start: coroner did not start" >&2; exit 1; }
  sleep 0.1
done

if [[ ! -s $conf ]]; then
  cat >"$conf" <<EOF
# coresnap.conf written by npm start (scripts/start.sh); see etc/coresnap.conf for every key.
archive.path = $archive
coroner.cf = $data/coroner.cf
dump.quota = 10%
purge.age = 1d
purge.disabled = false
format.1 = blackhole
EOF
fi

bin/coresnapd -c "$conf" --stderr &
coresnapd_pid=$!
sleep 1
kill -0 "$coresnapd_pid" 2>/dev/null || { echo "start: coresnapd did not start" >&2; exit 1; }

cat <<EOF

coresnap is running.
  web console:   http://$listen/   (user admin, password $password)
  core_pattern:  $(cat /proc/sys/kernel/core_pattern)
  archive:       $archive   (bin/coresnap list -c $conf)

Try it: crash any program whose core size limit allows a core (ulimit -c), e.g.
  bash -c 'ulimit -c unlimited; sleep 1000 & sleep 0.2; kill -SIGABRT \$!; wait'
then, within seconds:
  MORGUE_USERNAME=admin MORGUE_PASSWORD='$password' bin/morgue login http://$listen
  bin/morgue list blackhole

Ctrl-C stops everything and restores core_pattern.
EOF
wait "$coresnapd_pid" "$coroner_pid"
