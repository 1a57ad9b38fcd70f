// Greeting helpers for the e2e workspace's tool (see greet.h).
#include "lib/greet.h"

#include <cstdint>
#include <cstdio>

namespace greet {

std::string Greeting(const std::string& name) { return "Hello, " + name + "!"; }

std::string Checksum(const std::string& text) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

}  // namespace greet
