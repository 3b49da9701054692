// What a piece of code prints on stderr (fd 2, so librdkafka's and protobuf's
// C-level writes too).
#ifndef LOYALTY_TESTS_TESTING_STDERR_CAPTURE_H_
#define LOYALTY_TESTS_TESTING_STDERR_CAPTURE_H_

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "tests/testing/temp_dir.h"

namespace loyalty::testing {

// Runs f() with fd 2 sent to a file, and returns what was written there.
template <typename F>
std::string CaptureStderr(F f) {
  TempDir dir;
  const std::string path = dir.Sub("stderr");
  std::fflush(stderr);
  const int saved = ::dup(2);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (saved < 0 || fd < 0 || ::dup2(fd, 2) != 2) throw std::runtime_error("cannot redirect fd 2");
  ::close(fd);
  struct Restore {
    int saved;
    ~Restore() {
      std::fflush(stderr);
      ::dup2(saved, 2);
      ::close(saved);
    }
  };
  {
    Restore restore{saved};
    f();
  }
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_STDERR_CAPTURE_H_
