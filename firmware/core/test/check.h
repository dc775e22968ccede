// A minimal test harness for the host tests: counts checks, prints failures, no framework to install.
#pragma once

#include <cstdio>
#include <string>

namespace check {

inline int checks = 0;
inline int failures = 0;

inline void expect(bool ok, const std::string& what, const char* file, int line) {
  checks++;
  if (ok) return;
  failures++;
  std::fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what.c_str());
}

inline std::string to_text(const std::string& s) { return "\"" + s + "\""; }
inline std::string to_text(const char* s) { return s ? to_text(std::string(s)) : "(null)"; }
template <typename T>
std::string to_text(const T& v) {
  return std::to_string(v);
}

template <typename A, typename B>
void equal(const A& actual, const B& expected, const std::string& what, const char* file, int line) {
  const bool ok = actual == expected;
  expect(ok, ok ? what : what + "\n     got: " + to_text(actual) + "\n     expected: " + to_text(expected), file, line);
}

}  // namespace check

#define CHECK(cond, what) check::expect((cond), (what), __FILE__, __LINE__)
#define CHECK_EQ(actual, expected, what) check::equal((actual), (expected), (what), __FILE__, __LINE__)
