// The e2e workspace's tool: `hello [NAME]` prints a greeting for NAME (default
// "world") and a checksum of the greeting, one per line.
#include <iostream>
#include <string>

#include "lib/greet.h"

int main(int argc, char** argv) {
  std::string name = argc > 1 ? argv[1] : "world";
  std::string greeting = greet::Greeting(name);
  std::cout << greeting << "\n" << "checksum " << greet::Checksum(greeting) << "\n";
  return 0;
}
