// Greeting helpers for the e2e workspace's tool.
#ifndef REAPI_E2E_LIB_GREET_H_
#define REAPI_E2E_LIB_GREET_H_

#include <string>

namespace greet {

// Returns "Hello, NAME!".
std::string Greeting(const std::string& name);

// A deterministic FNV-1a checksum of text, as 16 hex digits. It gives the
// tool's output a line whose value depends on the whole input.
std::string Checksum(const std::string& text);

}  // namespace greet

#endif  // REAPI_E2E_LIB_GREET_H_
