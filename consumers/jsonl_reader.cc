#include "consumers/jsonl_reader.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

struct JsonLinesReadAhead::Shared {
  Shared(std::unique_ptr<JsonLinesReader> r, size_t lines)
      : reader(std::move(r)), batch_lines(lines) {}

  // The reading thread: reads and decodes a batch, hands it over, and waits until
  // the caller has taken it, until the input ends, a read fails or it is stopped.
  void Run() {
    for (;;) {
      std::vector<InputMessage> messages;
      messages.reserve(batch_lines);
      absl::StatusOr<bool> more = reader->Read(batch_lines, &messages);
      const Counts counts{reader->lines_read(), reader->blank_lines(), reader->bytes_read(),
                          reader->total_bytes()};
      {
        absl::MutexLock lock(&mu);
        if (stop) return;
        decoding = true;
      }
      Batch batch;
      if (more.ok() && !messages.empty()) batch.decoded = DecodeBatch(std::move(messages));
      batch.counts = counts;
      absl::MutexLock lock(&mu);
      decoding = false;
      if (!batch.decoded.messages.empty()) ready.push_back(std::move(batch));
      if (!more.ok() || !*more) {
        ended = true;
        if (!more.ok()) error = more.status();
        final_counts = counts;
        return;
      }
      mu.Await(absl::Condition(
          +[](Shared* s) {
            s->mu.AssertReaderHeld();
            return s->ready.size() < kBatchesAhead || s->stop;
          },
          this));
      if (stop) return;
    }
  }

  const std::unique_ptr<JsonLinesReader> reader;
  const size_t batch_lines;
  absl::Mutex mu;
  std::deque<Batch> ready ABSL_GUARDED_BY(mu);
  bool ended ABSL_GUARDED_BY(mu) = false;  // nothing more will be read
  absl::Status error ABSL_GUARDED_BY(mu);  // why, if not the end of the input
  Counts final_counts ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  bool decoding ABSL_GUARDED_BY(mu) = false;
};

JsonLinesReadAhead::JsonLinesReadAhead(std::unique_ptr<JsonLinesReader> reader, size_t batch_lines)
    : shared_(std::make_shared<Shared>(std::move(reader), batch_lines)) {
  std::thread([shared = shared_] { shared->Run(); }).detach();
}

JsonLinesReadAhead::~JsonLinesReadAhead() {
  absl::MutexLock lock(&shared_->mu);
  shared_->stop = true;
  // A batch being decoded is finished first (the process may be about to exit);
  // after a read, the thread sees `stop` and ends.
  shared_->mu.Await(absl::Condition(
      +[](Shared* s) {
        s->mu.AssertReaderHeld();
        return !s->decoding;
      },
      shared_.get()));
}

absl::StatusOr<bool> JsonLinesReadAhead::Next(Batch* out) {
  Shared& s = *shared_;
  absl::MutexLock lock(&s.mu);
  s.mu.Await(absl::Condition(
      +[](Shared* sh) {
        sh->mu.AssertReaderHeld();
        return !sh->ready.empty() || sh->ended;
      },
      &s));
  if (!s.ready.empty()) {
    *out = std::move(s.ready.front());
    s.ready.pop_front();
    return true;
  }
  if (!s.error.ok()) return s.error;
  out->decoded = DecodedBatch();
  out->counts = s.final_counts;
  return false;
}

}  // namespace loyalty
