#include "consumers/jsonl_reader.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/sha256.h"
#include "engine/validation.h"

namespace loyalty {

absl::StatusOr<std::unique_ptr<JsonLinesReader>> JsonLinesReader::Open(
    const std::string& path) {
  if (path == "-") {
    return std::unique_ptr<JsonLinesReader>(new JsonLinesReader(path, stdin, false));
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  auto reader = std::unique_ptr<JsonLinesReader>(new JsonLinesReader(path, f, true));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) reader->total_bytes_ = st.st_size;
  return reader;
}

JsonLinesReader::JsonLinesReader(std::string path, FILE* file, bool owned)
    : path_(std::move(path)), file_(file), owned_(owned) {}

JsonLinesReader::~JsonLinesReader() {
  if (owned_) std::fclose(file_);
}

absl::StatusOr<bool> JsonLinesReader::ReadLine(InputMessage* m) {
  m->raw.clear();
  m->full_size = 0;
  m->full_sha256.clear();
  Sha256 overflow_hash;
  uint64_t size = 0;
  bool any = false;
  bool overflow = false;
  int c;
  // getc_unlocked on a buffered FILE: the reader is the only user of the stream.
  while ((c = getc_unlocked(file_)) != EOF) {
    any = true;
    ++bytes_;
    if (c == '\n') break;
    ++size;
    if (!overflow && m->raw.size() >= kMaxKeptLineBytes) {
      overflow = true;
      overflow_hash.Update(m->raw);
      m->raw.resize(kMaxMessageBytes);
    }
    if (overflow) {
      const char ch = static_cast<char>(c);
      overflow_hash.Update(std::string_view(&ch, 1));
    } else {
      m->raw.push_back(static_cast<char>(c));
    }
  }
  if (std::ferror(file_)) {
    return absl::DataLossError(absl::StrCat("reading ", path_, " failed at line ", line_ + 1,
                                            ": ", std::strerror(errno)));
  }
  if (!any) return false;
  ++line_;
  if (overflow) {
    m->full_size = size;
    Sha256Digest d = overflow_hash.Finish();
    m->full_sha256.assign(DigestView(d));
  }
  auto* file = m->source.mutable_file();
  file->set_path(path_);
  file->set_line(line_);
  return true;
}

absl::StatusOr<bool> JsonLinesReader::Read(size_t max_messages,
                                           std::vector<InputMessage>* out) {
  size_t taken = 0;
  while (taken < max_messages) {
    InputMessage m;
    auto got = ReadLine(&m);
    if (!got.ok()) return got.status();
    if (!*got) return false;
    if (m.full_size == 0 &&
        m.raw.find_first_not_of(" \t\r\f\v") == std::string::npos) {
      ++blank_lines_;
      continue;
    }
    out->push_back(std::move(m));
    ++taken;
  }
  return true;
}

}  // namespace loyalty
