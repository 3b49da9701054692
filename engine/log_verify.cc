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
        if (hash.size() != kChainHashBytes) {
          return fail(seq, "the stored value is too short to hold a chain hash");
        }
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return fail(seq, "the record does not decode");
        }
        if (record.seq() != seq) {
          return fail(seq, absl::StrCat("the record says it is sequence ", record.seq()));
        }
        const Sha256Digest computed = Sha256Of2(DigestView(prev), bytes);
        if (std::memcmp(computed.data(), hash.data(), kChainHashBytes) != 0) {
          return fail(seq, absl::StrCat("chain hash mismatch: stored ", DigestHex(hash),
                                        ", computed ", DigestHex(DigestView(computed))));
        }
        prev = computed;
        report.head.seq = seq;
        report.head.hash = computed;
        ++report.records;
        ++expected;
        if (progress && (report.records & 0xffff) == 0) progress(report.records);
        return absl::OkStatus();
      });
  if (!report.ok) return report;
  if (absl::IsDataLoss(s) || absl::IsInternal(s)) {
    // RocksDB found a block that fails its checksum or cannot be read.
    report.ok = false;
    report.first_bad_seq = expected;
    report.problem = absl::StrCat("storage error at or after sequence ", expected, ": ",
                                  s.message());
    return report;
  }
  if (!s.ok()) return s;
  if (progress) progress(report.records);
  return report;
}

}  // namespace loyalty
