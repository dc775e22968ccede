#!/usr/bin/env bash
# Without building: checks this project against an ESP-IDF checkout (v5.5 or later, with its
# submodules, e.g. $IDF_PATH). Every CONFIG_ name in sdkconfig.defaults and sdkconfig.secure must be
# declared in a Kconfig file, every ESP-IDF / FreeRTOS identifier main/ uses must appear in a
# header, and partitions.csv must be contiguous, 64 KB-aligned for apps and fit 4 MB.
# Usage: tools/check_idf_names.sh <esp-idf directory>
set -euo pipefail
idf="${1:?usage: $0 <esp-idf directory>}"
here="$(cd "$(dirname "$0")/.." && pwd)"
status=0

for name in $(grep -ohE '^#? ?CONFIG_[A-Z0-9_]+' "$here/sdkconfig.defaults" "$here/sdkconfig.secure" | sed -E 's/^# ?//; s/^CONFIG_//' | sort -u); do
  if ! grep -rqE "^\s*(menu)?config ${name}\s*$" --include='Kconfig*' "$idf/components" "$idf/Kconfig"; then
    echo "no Kconfig declares ${name}"; status=1
  fi
done

ids=$(grep -hv '^#include' "$here"/main/*.cpp "$here"/main/*.h | grep -ohE '\b(esp_[a-z0-9_]+|nvs_[a-z0-9_]+|ESP_[A-Z0-9_]+|HTTP_EVENT_[A-Z_]+|MQTT_[A-Z_]+|WIFI_[A-Z0-9_]+|IP_EVENT[A-Z_]*|IPSTR|IP2STR|xEventGroup[A-Za-z]+|xQueue[A-Za-z]+)\b' | sort -u)
for id in $ids; do
  case "$id" in esp_netif_sntp|nvs_partition_gen|nvs_sec_provider) continue ;; esac  # a header, a tool and a component named in comments
  if ! grep -rqw --include='*.h' "$id" "$idf/components"; then echo "no header has ${id}"; status=1; fi
done

python3 - "$here/partitions.csv" <<'PY' || status=1
import sys
rows = [l.split(',') for l in open(sys.argv[1]) if l.strip() and not l.lstrip().startswith('#')]
end = None
for r in rows:
    name, kind, off, size = r[0].strip(), r[1].strip(), int(r[3], 16), int(r[4], 16)
    if end is not None and off != end: sys.exit(f'{name} starts at {off:#x}, not {end:#x}')
    if kind == 'app' and off % 0x10000: sys.exit(f'{name} is not 64 KB-aligned')
    end = off + size
if end > 0x400000: sys.exit(f'partitions end at {end:#x}, past 4 MB')
PY
[ "$status" = 0 ] && echo "sdkconfig names, identifiers and partitions.csv check out against $idf"
exit "$status"
