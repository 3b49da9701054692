// Integrity checks over the stored log: gapless sequence numbers and the SHA-256
// chain (docs/log-format.md). Read-only; runs beside a writer.
#ifndef LOYALTY_ENGINE_LOG_VERIFY_H_
#define LOYALTY_ENGINE_LOG_VERIFY_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/event_log.h"

namespace loyalty {

struct VerifyReport {
  uint64_t records = 0;       // records proved (up to the last good stored hash)
  LogHead head;               // the last record proved
  bool ok = true;
  // When !ok: the first sequence number that fails. A stored hash that differs
  // from the computed one names the first record it covers alone: the one after
  // the previous stored hash (in format 2 hashes are stored per batch, so the
  // altered record is one of that batch's, up to the sequence `problem` names).
  uint64_t first_bad_seq = 0;
  std::string problem;         // when !ok: what differs
};

// Walks the whole log from sequence 1 and checks that the sequence is gapless,
// that every record decodes and carries its own sequence number, that every
// stored chain hash equals SHA-256(previous hash || record), and that the last
// record carries its hash (docs/log-format.md). `progress`, if set, is
// called now and then with the records checked so far. An error status means the
// log could not be read at all (an unreadable block is reported as a failed check).
absl::StatusOr<VerifyReport> VerifyLog(const EventLog& log,
                                       const std::function<void(uint64_t)>& progress = {});

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_LOG_VERIFY_H_
