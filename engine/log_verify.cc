#include "engine/log_verify.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/sha256.h"
#include "loyalty/v1/log.pb.h"

namespace loyalty {

absl::StatusOr<VerifyReport> VerifyLog(const EventLog& log,
                                       const std::function<void(uint64_t)>& progress) {
  VerifyReport report;
  uint64_t expected = 1;
  Sha256Digest prev{};
  v1::LogRecord record;
  // The first record not yet covered by a stored hash that was found equal.
  uint64_t unproved_from = 1;
  bool last_has_hash = true;
  auto fail = [&](uint64_t seq, std::string problem) {
    report.ok = false;
    report.first_bad_seq = seq;
    report.problem = std::move(problem);
    // Stops the scan; the report carries the finding.
    return absl::CancelledError("verification failed");
  };
  absl::Status s = log.Scan(
      1, UINT64_MAX,
      [&](uint64_t seq, std::string_view key, std::string_view bytes,
          std::string_view hash) -> absl::Status {
        if (key.size() != 8) {
          return fail(expected, absl::StrCat("a log key of ", key.size(),
                                             " bytes where sequence ", expected,
                                             " should be"));
        }
        if (seq != expected) {
          return fail(expected, seq > expected
                                    ? absl::StrCat("sequence ", expected,
                                                   " is missing (next is ", seq, ")")
                                    : absl::StrCat("sequence ", seq, " out of order"));
        }
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return fail(seq, "the record does not decode");
        }
        if (record.seq() != seq) {
          return fail(seq, absl::StrCat("the record says it is sequence ", record.seq()));
        }
        prev = Sha256Of2(DigestView(prev), bytes);
        ++expected;
        last_has_hash = !hash.empty();
        if (!hash.empty()) {
          if (std::memcmp(prev.data(), hash.data(), kChainHashBytes) != 0) {
            return fail(unproved_from,
                        absl::StrCat("chain hash mismatch at sequence ", seq, ": stored ",
                                     DigestHex(hash), ", computed ", DigestHex(DigestView(prev)),
                                     unproved_from == seq
                                         ? std::string()
                                         : absl::StrCat(" (a record from ", unproved_from,
                                                        " to ", seq, " differs)")));
          }
          report.head.seq = seq;
          report.head.hash = prev;
          report.records = seq;
          unproved_from = seq + 1;
        }
        if (progress && (seq & 0xffff) == 0) progress(seq);
        return absl::OkStatus();
      });
  if (report.ok && s.ok() && !last_has_hash) {
    fail(unproved_from, absl::StrCat("the last record, ", expected - 1,
                                     ", carries no chain hash (records from ", unproved_from,
                                     " on are not covered by one)"))
        .IgnoreError();
  }
  if (!report.ok) return report;
  if (absl::IsDataLoss(s) || absl::IsInternal(s)) {
    // RocksDB found a block that fails its checksum or cannot be read.
    report.ok = false;
    report.first_bad_seq = expected;
    report.problem = absl::StrCat("storage error or malformed value at or after sequence ",
                                  expected, ": ", s.message());
    return report;
  }
  if (!s.ok()) return s;
  if (progress) progress(expected - 1);
  return report;
}

}  // namespace loyalty
