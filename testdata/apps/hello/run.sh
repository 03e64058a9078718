#!/bin/sh
# The demo app: says hello, shows which OS base it runs on and its configuration.
echo "hello from regfp demo app $(cat /app/VERSION 2>/dev/null)"
[ -r /etc/os-release ] && . /etc/os-release && echo "base: ${PRETTY_NAME:-unknown}"
[ -r /etc/hello/config.yaml ] && cat /etc/hello/config.yaml
echo "port: ${PORT:-unset}"
