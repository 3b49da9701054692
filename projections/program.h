// The loyalty program in force: its settings (docs/program.md), resolved into plain
// integers for the rules.
#ifndef LOYALTY_PROJECTIONS_PROGRAM_H_
#define LOYALTY_PROJECTIONS_PROGRAM_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "loyalty/v1/program.pb.h"

namespace loyalty {

inline constexpr int64_t kDaySeconds = 86400;

// The reference program of rules.md, every field set.
v1::Program DefaultProgram();

// Reads a program file (proto3 JSON of loyalty.v1.Program, or an empty path for
// the defaults): the defaults overridden by every field the file sets.
// InvalidArgument, naming the problem, for a file that does not parse or a value
// out of range.
absl::StatusOr<v1::Program> LoadProgram(const std::string& path);

// Checks the ranges of a complete program (all fields set).
absl::Status ValidateProgram(const v1::Program& program);

enum class Tier : int { kBronze = 0, kSilver = 1, kGold = 2, kPlatinum = 3 };
const char* TierName(Tier tier);

// A complete program resolved into the integers the rules use. Times in seconds.
// Thread-compatible; cheap to copy.
struct Rules {
  explicit Rules(const v1::Program& program);

  // SHA-256 of the program's deterministic serialization: what a stats timeline
  // saved to disk names, to be taken only under the same rules.
  std::string program_digest;

  std::string currency;
  int64_t points_per_major = 1;
  int64_t minor_per_major = 100;
  absl::flat_hash_map<std::string, int64_t> category_bp;
  int64_t default_category_bp = 10'000;
  int64_t pending_s = 14 * kDaySeconds;
  int64_t expiry_s = 365 * kDaySeconds;
  int64_t refund_window_s = 365 * kDaySeconds;
  int64_t cancel_window_s = 90 * kDaySeconds;
  int64_t expiring_soon_s = 30 * kDaySeconds;

  int64_t tier_threshold[4] = {0, 50'000, 200'000, 500'000};
  int64_t tier_multiplier_bp[4] = {10'000, 12'500, 15'000, 20'000};
  int64_t spend_window_s = 365 * kDaySeconds;
  int64_t tier_status_s = 365 * kDaySeconds;

  int64_t referee_points = 250;
  int64_t referrer_points = 500;
  int64_t referral_window_s = 90 * kDaySeconds;
  int64_t referral_min_amount = 2'000;
  int64_t referrer_cap = 10;
  int64_t referrer_cap_window_s = 365 * kDaySeconds;
  int64_t clawback_s = 14 * kDaySeconds;

  int64_t churn_default_interval_s = 30 * kDaySeconds;
  int64_t churn_min_interval_s = kDaySeconds;
  int64_t churn_interval_purchases = 6;
  int64_t churned_s = 180 * kDaySeconds;
  int64_t at_risk_num = 3, at_risk_den = 1;
  int64_t cooling_num = 3, cooling_den = 2;
  int64_t churn_window_s = 365 * kDaySeconds;

  int64_t CategoryBp(const std::string& category) const {
    auto it = category_bp.find(category);
    return it == category_bp.end() ? default_category_bp : it->second;
  }
  Tier TierBySpend(int64_t spend) const {
    for (int k = 3; k > 0; --k) {
      if (spend >= tier_threshold[k]) return static_cast<Tier>(k);
    }
    return Tier::kBronze;
  }
  // How long the ledger keeps an order: a refund can touch it for
  // refund_window_s, and rolling spend looks back spend_window_s from any order
  // still in the tier status window.
  int64_t OrderHorizon() const;
};

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_PROGRAM_H_
