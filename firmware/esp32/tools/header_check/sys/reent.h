// Stand-in for newlib's <sys/reent.h> (ESP-IDF's toolchain has newlib; the checking compiler
// has picolibc): FreeRTOS's Xtensa port only names the type.
#pragma once
struct _reent {
  int _errno;
};
