#!/bin/sh
# Chromium for the viewer's browser tests (tests/test_viewer_browser.py), from Debian's
# packages where this machine can install them (root, apt-get); elsewhere it says how and
# goes on: those tests then skip with that reason (and fail under CI=true, which needs them).
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; } \
    || echo "install-chromium: apt-get could not install chromium" >&2
else
  echo "install-chromium: no Chromium; install one (Debian: apt-get install chromium) for the viewer's browser tests" >&2
fi
exit 0
