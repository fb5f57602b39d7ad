#!/bin/sh
# Installs, reinstalls and purges the .deb for real inside a private mount namespace (run by
# deb_test.py under `unshare -m`) whose /etc, /usr and /var are overlays in OVL: nothing reaches
# the host. MODE "sysusers" uses systemd-sysusers/systemd-tmpfiles as found; "useradd" removes
# them first (a container without systemd). Usage: deb_install_check.sh DEB OVL MODE
# Exit 0 ok, 1 failure, 77 when the scratch root cannot be made.
set -u
deb=$1
ovl=$2
mode=$3
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
expect() {  # expect WHAT GOT WANT
  if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1: got '$2', want '$3'"; fi
}

for d in etc usr var; do
  mkdir -p "$ovl/$d.u" "$ovl/$d.w"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$ovl/$d.u,workdir=$ovl/$d.w" "/$d" ||
    { echo "cannot mount an overlay on /$d"; exit 77; }
done
if getent passwd sluice >/dev/null; then echo "a sluice user exists on this host already"; exit 77; fi
if [ "$mode" = useradd ]; then
  rm -f /usr/bin/systemd-sysusers /usr/bin/systemd-tmpfiles /bin/systemd-sysusers /bin/systemd-tmpfiles
  command -v systemd-sysusers >/dev/null && { echo "systemd-sysusers still found"; exit 77; }
fi

out=$(dpkg -i "$deb" 2>&1) || { echo "$out"; bad "dpkg -i"; exit 1; }
expect "dpkg status" "$(dpkg-query -W -f='${Status}' sluice)" "install ok installed"
expect "user" "$(getent passwd sluice | cut -d: -f1,6,7)" "sluice:/var/lib/sluice:/usr/sbin/nologin"
uid=$(id -u sluice)
if [ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ]; then ok "system uid $uid"; else bad "uid $uid is not a system uid"; fi
case " $(id -nG sluice) " in
  *" adm "*) ok "sluice is in group adm" ;;
  *) bad "sluice is not in group adm: $(id -nG sluice)" ;;
esac
expect "/var/lib/sluice" "$(stat -c '%U:%G %a' /var/lib/sluice)" "sluice:sluice 750"
expect "/etc/sluice/sluice.toml" "$(stat -c '%U:%G %a' /etc/sluice/sluice.toml)" "root:sluice 640"
if ls /etc/systemd/system/*.wants/sluice.service >/dev/null 2>&1; then
  bad "sluice.service was enabled"
else
  ok "sluice.service is not enabled"
fi
if pgrep -x sluice >/dev/null 2>&1 && [ -n "$(pgrep -x -u sluice sluice)" ]; then
  bad "a sluice process runs as sluice"
else
  ok "nothing started"
fi
if runuser -u sluice -- /usr/bin/sluice check -c /etc/sluice/sluice.toml >/dev/null 2>&1; then
  ok "sluice check as the sluice user"
else
  bad "sluice check as the sluice user: $(runuser -u sluice -- /usr/bin/sluice check -c /etc/sluice/sluice.toml 2>&1)"
fi

# Reinstall (upgrade path): an edited conffile is kept, the user is not recreated.
echo "# edited by the operator" >> /etc/sluice/sluice.toml
out=$(dpkg -i "$deb" 2>&1) || { echo "$out"; bad "dpkg -i again"; }
expect "edited conffile kept" "$(tail -n 1 /etc/sluice/sluice.toml)" "# edited by the operator"
expect "uid after reinstall" "$(id -u sluice)" "$uid"

out=$(dpkg --purge sluice 2>&1) || { echo "$out"; bad "dpkg --purge"; }
for p in /usr/bin/sluice /usr/lib/systemd/system/sluice.service /etc/sluice /var/lib/sluice; do
  if [ -e "$p" ]; then bad "$p left after purge"; else ok "$p removed by purge"; fi
done
if getent passwd sluice >/dev/null; then ok "the sluice user stays after purge"; else bad "user removed"; fi
exit $fail
