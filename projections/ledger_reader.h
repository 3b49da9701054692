// The projections' read side: a customer's ledger as of any time T, from committed
// state. For T at or after the customer's clock that is the stored state; for an
// earlier T, the customer's entries with effective time <= T are folded again from
// the log (the same ApplyEntry as the live path), so every answer is the ledger's
// prefix evaluated at T.
#ifndef LOYALTY_PROJECTIONS_LEDGER_READER_H_
#define LOYALTY_PROJECTIONS_LEDGER_READER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/event_log.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/program.h"
#include "projections/stats.h"

namespace loyalty {

class LedgerReader {
 public:
  // Not owned; all must outlive the reader. With a snapshot every read sees the
  // same committed batch. Thread-compatible.
  LedgerReader(const EventLog* log, const Rules* rules, const LogSnapshot* snapshot = nullptr)
      : log_(log), rules_(rules), snapshot_(snapshot) {}

  // The customer's ledger folded over entries with effective time <= t; nullopt if
  // the customer is unknown as of t.
  absl::StatusOr<std::optional<v1::LedgerState>> StateAsOf(const std::string& customer_id,
                                                           int64_t t) const;

  // The customer's current state (decision state included); nullopt if unknown.
  absl::StatusOr<std::optional<v1::CustomerState>> Current(const std::string& customer_id) const;

  // Program-wide figures as of t over every customer: the plain pass, which the
  // query service does not run (it answers from a StatsIndex) and the tests hold the
  // index to. Customers whose clock is past t are folded again from the log, so a
  // past t costs in proportion to the customers active since.
  absl::StatusOr<StatsView> Stats(int64_t t) const;

  // The customer's entries with effective time in [from, to], in ledger order, each
  // with its event id and sequence number filled in.
  absl::StatusOr<std::vector<v1::LedgerEntry>> Entries(const std::string& customer_id,
                                                       int64_t from, int64_t to) const;

 private:
  const EventLog* log_;
  const Rules* rules_;
  const LogSnapshot* snapshot_;
};

// Parses only the `ledger` field of serialized CustomerState bytes: program-wide
// stats need nothing else, and the rest (every order id and redemption id ever) is
// most of a long-lived customer's bytes. False if the bytes do not decode.
bool ParseLedgerOnly(std::string_view bytes, v1::LedgerState* ledger);

// Appends the ledger entries of serialized LogRecord bytes (those of an applied
// event's outcome; none for other records) without parsing the rest: the raw input
// and the event are most of a record's bytes. False if the bytes do not decode.
bool ParseRecordEntries(std::string_view record_bytes, std::vector<v1::LedgerEntry>* entries);

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_LEDGER_READER_H_
