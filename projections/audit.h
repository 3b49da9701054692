// The audit (`loyalty replay verify`, docs/audit.md): proves the log and everything
// derived from it without trusting the engine that wrote it.
//
// 1. chain: sequence numbers gapless from 1, every stored SHA-256 chain hash equal
//    to SHA-256(previous || record), every record decodes and names its own seq;
// 2. digest: optionally, the record at a kept (seq, hash) still has that hash;
// 3. validation: every input gets the same verdict again (a dead letter fails with
//    the same reason, using the clock reading kept in the record; an applied event
//    passes, its stored decoded copy equals its raw bytes, the event-id index holds
//    it; an EVENT_ID_CONFLICT names an earlier event with other content);
// 4. decisions: every event decided again from scratch under the program recorded
//    in force gives exactly the logged outcome and entries;
// 5. projections: the states rebuilt from the log equal the live ones byte for byte;
// 6. conservation: rules.md section 9 for every customer at several times.
#ifndef LOYALTY_PROJECTIONS_AUDIT_H_
#define LOYALTY_PROJECTIONS_AUDIT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/event_log.h"

namespace loyalty {

struct AuditOptions {
  // Checks records from_seq..to_seq. The chain is always verified from 1 (every
  // later hash depends on it), and decisions need every earlier record replayed;
  // records before from_seq are replayed but their findings not reported.
  // Default: the whole log.
  uint64_t from_seq = 1;
  uint64_t to_seq = UINT64_MAX;
  // A digest kept outside the system: the record at `digest_seq` must still have
  // this hash (hex).
  uint64_t digest_seq = 0;
  std::string digest_hash_hex;
  // Conservation is also checked as of this time (Unix seconds).
  int64_t now = 0;
  // Compare rebuilt projections with the live ones (only meaningful for the whole
  // log). Default: true.
  bool compare_projections = true;
};

struct AuditReport {
  uint64_t records = 0;
  uint64_t events = 0;
  uint64_t dead_letters = 0;
  uint64_t customers = 0;
  LogHead head;  // the last record checked
  bool ok = true;
  std::string check;        // when !ok: which check failed
  uint64_t first_bad_seq = 0;  // when !ok: the first bad record (0: not a record)
  std::string problem;      // when !ok: what differs
};

// Runs every check; the first failure ends the audit and is reported. An error
// status means the log could not be read at all.
absl::StatusOr<AuditReport> AuditLog(const EventLog& log, const AuditOptions& options,
                                     const std::function<void(const std::string& phase,
                                                              uint64_t done)>& progress = {});

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_AUDIT_H_
