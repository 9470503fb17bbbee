#!/usr/bin/env bash
# Browser tests drive Debian's chromium package. Install it when missing and we can.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests (once)..."
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; then
    exit 0
  fi
  echo "Could not install chromium; browser tests will be skipped (and fail under CI=true)." >&2
else
  echo "chromium is missing and this user cannot install it (needs root and apt-get);" \
       "browser tests will be skipped (and fail under CI=true)." >&2
fi
exit 0
