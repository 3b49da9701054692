// Reads JSON-lines input (a file or stdin) as InputMessages for the ingest
// pipeline: one message per line, with its file and line number as the source.
#ifndef LOYALTY_CONSUMERS_JSONL_READER_H_
#define LOYALTY_CONSUMERS_JSONL_READER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/ingestor.h"

namespace loyalty {

// A line longer than this is kept only in part: its first kMaxMessageBytes bytes,
// with its full size and SHA-256 (it is a dead letter either way, and one huge line
// must not exhaust memory).
inline constexpr size_t kMaxKeptLineBytes = 1 << 20;

class JsonLinesReader {
 public:
  // `path` is a file, or "-" for standard input. NotFound / PermissionDenied when
  // the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<JsonLinesReader>> Open(const std::string& path);
  ~JsonLinesReader();

  // Appends up to `max_messages` messages to `out`. Blank lines (only white space)
  // carry no event and are skipped, counted in blank_lines(). Returns false at the
  // end of input; an I/O error is returned as a status.
  absl::StatusOr<bool> Read(size_t max_messages, std::vector<InputMessage>* out);

  uint64_t lines_read() const { return line_; }
  uint64_t blank_lines() const { return blank_lines_; }
  uint64_t bytes_read() const { return bytes_; }
  // The input's size in bytes, when known (a regular file), else 0.
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  JsonLinesReader(std::string path, FILE* file, bool owned);
  // Reads one line into `m`; false at end of input.
  absl::StatusOr<bool> ReadLine(InputMessage* m);

  std::string path_;
  FILE* file_;
  bool owned_;
  uint64_t line_ = 0;
  uint64_t blank_lines_ = 0;
  uint64_t bytes_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_JSONL_READER_H_
