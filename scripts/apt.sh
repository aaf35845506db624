# Sourced by the scripts that install Debian packages they need: one `apt-get update` a run.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_update_once() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
}
apt_install() {
  apt_update_once
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Unpack packages into a folder rather than install them: for a server a test starts
# itself, which an install would also start as a system service.
apt_unpack() {
  local into=$1 downloads
  shift
  apt_update_once
  downloads=$(mktemp -d)
  (cd "$downloads" && apt-get download -qq "$@" 2>/dev/null)
  for deb in "$downloads"/*.deb; do dpkg -x "$deb" "$into"; done
  rm -rf "$downloads"
}
