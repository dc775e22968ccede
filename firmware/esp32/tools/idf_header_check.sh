#!/usr/bin/env bash
# Without ESP-IDF's toolchain: parses main/*.cpp against an ESP-IDF checkout's headers for an
# ESP32, so every call, type and struct field the app uses is checked by a C++ front end
# (names, types, argument counts), not only by name. It is no build: Debian's
# xtensa-lx106-elf-g++ (the ESP8266's compiler, 32-bit Xtensa like the ESP32) runs with
# -fsyntax-only, header_check/sdkconfig.h stands in for idf.py's, and nothing is linked.
# Usage: tools/idf_header_check.sh <esp-idf checkout with submodules> [extra -I for espressif/mqtt on v6]
set -euo pipefail
idf="${1:?usage: $0 <esp-idf directory> [mqtt include dir]}"
mqtt="${2:-$idf/components/mqtt/esp-mqtt/include}"
here="$(cd "$(dirname "$0")/.." && pwd)"
c="$idf/components"
others='/(test|test_apps|host_test|linux|riscv|esp32[a-z][a-z0-9]*|esp32c[0-9]+|esp32s[0-9]|esp32h[0-9]+|esp32p4|beta|private_include|FreeRTOS-Kernel-SMP|newlib|esp_libc)(/|$)'
incs=()
while IFS= read -r d; do incs+=("-I$d"); done < <(find "$c" -type d -name include | grep -vE "$others" | sort)
for d in freertos/FreeRTOS-Kernel/portable/xtensa/include freertos/FreeRTOS-Kernel/portable/xtensa/include/freertos \
         freertos/config/include/freertos freertos/config/xtensa/include lwip/port/include lwip/port/freertos/include \
         lwip/port/esp32xx/include lwip/lwip/src/include mbedtls/mbedtls/include mbedtls/port/include esp-tls \
         esp-tls/esp-tls-crypto http_parser xtensa/esp32/include soc/esp32/include soc/esp32/register hal/esp32/include \
         esp_rom/esp32/include esp_rom/esp32/include/esp32 esp_rom/esp32 esp_hw_support/port/esp32/include efuse/esp32/include; do
  [ -d "$c/$d" ] && incs+=("-I$c/$d")
done
libc="$c/newlib/platform_include"                       # v5.5
[ -d "$libc" ] || libc="$c/esp_libc/platform_include"     # v6.0 renamed the component
status=0
for f in "$here"/main/*.cpp; do
  if xtensa-lx106-elf-g++ --specs=/usr/lib/xtensa-lx106-elf/picolibc.specs -mlongcalls -std=gnu++2b -fsyntax-only \
       -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -D__XTENSA__ -DESP_PLATFORM -DIDF_VER='"v5.5"' \
       -include "$here/tools/header_check/sdkconfig.h" -I"$here/tools/header_check" -I"$here/../core/src" -I"$here/main" \
       -I"$mqtt" "${incs[@]}" -idirafter "$libc" "$f" 2> /tmp/idf_header_check.$$; then
    # Warnings in our own sources count; ESP-IDF's headers are not ours to fix.
    if grep -q "^$here/main/.*warning" /tmp/idf_header_check.$$; then grep -A3 "^$here/main/" /tmp/idf_header_check.$$; status=1; fi
    echo "parses: main/$(basename "$f")"
  else
    grep -E "error" /tmp/idf_header_check.$$ | head -20; echo "FAILS: main/$(basename "$f")"; status=1
  fi
  rm -f /tmp/idf_header_check.$$
done
exit "$status"
