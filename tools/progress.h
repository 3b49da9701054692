// Progress lines for long work, shown only when stderr is a terminal.
#ifndef LOYALTY_TOOLS_PROGRESS_H_
#define LOYALTY_TOOLS_PROGRESS_H_

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace loyalty {

class Progress {
 public:
  explicit Progress(bool enabled = isatty(STDERR_FILENO) == 1) : enabled_(enabled) {}

  // Redraws the line at most every 200 ms.
  void Update(const std::string& line) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  // Clears the line before the final report.
  void Done() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace loyalty

#endif  // LOYALTY_TOOLS_PROGRESS_H_
