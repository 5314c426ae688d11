#!/usr/bin/env bash
# Set up orchestrate on a fresh Debian machine, then run it or test it.
#   ./bootstrap.sh run [CONFIG]     install, then run CONFIG (default configs/quick.yml) on ./inventory.yml
#   ./bootstrap.sh test [PYTEST…]   install what the tests need too, then run every test
set -euo pipefail
cd "$(dirname "$0")"

action=${1:-}
shift || true
case "$action" in
  run|test) ;;
  *) echo "usage: ./bootstrap.sh run [CONFIG] | test [PYTEST ARGS]" >&2; exit 2 ;;
esac

# What a run needs on this machine (it is also a host in the default inventory), and what the
# tests need beyond that: sshd for the SSH and lab tests, sudo for the lab's --sudo-perf,
# iperf3 for the reference figures, clang to prove the agents build with both compilers,
# chromium to open report.html in a real browser.
packages=(gcc libc6-dev linux-perf iproute2 ethtool procps tar python3 python3-venv python3-pip)
if [ "$action" = test ]; then
  packages+=(openssh-server openssh-client iperf3 clang iputils-ping sudo chromium fish csh tcsh
             gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' > .venv/pip.log 2>&1; then
  cat .venv/pip.log >&2
  echo "pip install failed (log: .venv/pip.log)" >&2
  exit 1
fi

if [ "$action" = run ]; then
  exec .venv/bin/orchestrate run "${1:-configs/quick.yml}" "${@:2}"
fi
# The package's layers (pyproject.toml's import-linter contracts): a broken one stops here, before any test.
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
