#!/usr/bin/env bash
# Installs the Debian 12 packages maad needs to build, test and run the demo.
# Skips apt when everything is already there (so it is cheap to call often).
set -eu
pkgs=(build-essential pkg-config libaravis-dev aravis-tools libusb-1.0-0-dev
      libsystemd-dev libyaml-dev libzmq3-dev libdnnl-dev liblapacke-dev
      libopenblas-dev libjansson-dev libspng-dev python3-torch python3-numpy
      python3-scipy python3-sklearn python3-matplotlib python3-zmq iproute2
      util-linux libmodbus-dev python3-pymodbus
      # The fuzzing harnesses (make fuzz): clang-14 has the sanitizer and
      # libFuzzer runtimes as a recommendation only (of libclang-common-14-dev),
      # which --no-install-recommends skips; its OpenMP is a package of its own.
      clang libclang-rt-14-dev libomp-dev
      # pymodbus 3.0 imports these two whether or not a serial port is used.
      python3-serial python3-serial-asyncio
      # maad's /metrics endpoint, and the real Prometheus and headless browser
      # its tests and maa review's test use.
      libmicrohttpd-dev prometheus chromium)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
