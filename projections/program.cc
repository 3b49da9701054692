#include "projections/program.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/sha256.h"
#include "google/protobuf/util/json_util.h"

namespace loyalty {

v1::Program DefaultProgram() {
  v1::Program p;
  p.set_currency("EUR");
  p.set_base_points_per_major_unit(1);
  p.set_minor_units_per_major(100);
  (*p.mutable_category_multiplier_bp())["gift_card"] = 0;
  p.set_default_category_multiplier_bp(10'000);
  p.set_pending_days(14);
  p.set_expiry_days(365);
  p.set_refund_window_days(365);
  p.set_cancel_window_days(90);
  p.set_expiring_soon_days(30);
  v1::TierSettings* t = p.mutable_tiers();
  t->set_silver_threshold_minor(50'000);
  t->set_gold_threshold_minor(200'000);
  t->set_platinum_threshold_minor(500'000);
  t->set_bronze_multiplier_bp(10'000);
  t->set_silver_multiplier_bp(12'500);
  t->set_gold_multiplier_bp(15'000);
  t->set_platinum_multiplier_bp(20'000);
  t->set_spend_window_days(365);
  t->set_status_days(365);
  v1::ReferralSettings* r = p.mutable_referral();
  r->set_referee_points(250);
  r->set_referrer_points(500);
  r->set_window_days(90);
  r->set_min_amount_minor(2'000);
  r->set_referrer_cap(10);
  r->set_cap_window_days(365);
  r->set_clawback_days(14);
  v1::ChurnSettings* c = p.mutable_churn();
  c->set_default_interval_days(30);
  c->set_min_interval_days(1);
  c->set_interval_purchases(6);
  c->set_churned_days(180);
  c->set_at_risk_ratio_num(3);
  c->set_at_risk_ratio_den(1);
  c->set_cooling_ratio_num(3);
  c->set_cooling_ratio_den(2);
  c->set_window_days(365);
  return p;
}

namespace {

// Days settings are bounded so that every time computed from them stays far from
// int64 overflow (100 years).
constexpr int64_t kMaxDays = 36'500;
// Multipliers and amounts bounded so that points arithmetic fits in 128 bits.
constexpr int64_t kMaxBp = 1'000'000;
constexpr int64_t kMaxPoints = 1'000'000'000;

absl::Status CheckRange(absl::string_view name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("program: ", name, " is ", v, "; it must be in [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateProgram(const v1::Program& p) {
  if (p.currency().empty()) return absl::InvalidArgumentError("program: currency is empty");
  const struct {
    const char* name;
    int64_t v, lo, hi;
  } checks[] = {
      {"base_points_per_major_unit", p.base_points_per_major_unit(), 0, kMaxPoints},
      {"minor_units_per_major", p.minor_units_per_major(), 1, 1'000'000},
      {"default_category_multiplier_bp", p.default_category_multiplier_bp(), 0, kMaxBp},
      {"pending_days", p.pending_days(), 0, kMaxDays},
      {"expiry_days", p.expiry_days(), 1, kMaxDays},
      {"refund_window_days", p.refund_window_days(), 0, kMaxDays},
      {"cancel_window_days", p.cancel_window_days(), 0, kMaxDays},
      {"expiring_soon_days", p.expiring_soon_days(), 0, kMaxDays},
      {"tiers.silver_threshold_minor", p.tiers().silver_threshold_minor(), 0, INT64_MAX / 4},
      {"tiers.gold_threshold_minor", p.tiers().gold_threshold_minor(),
       p.tiers().silver_threshold_minor(), INT64_MAX / 4},
      {"tiers.platinum_threshold_minor", p.tiers().platinum_threshold_minor(),
       p.tiers().gold_threshold_minor(), INT64_MAX / 4},
      {"tiers.bronze_multiplier_bp", p.tiers().bronze_multiplier_bp(), 0, kMaxBp},
      {"tiers.silver_multiplier_bp", p.tiers().silver_multiplier_bp(), 0, kMaxBp},
      {"tiers.gold_multiplier_bp", p.tiers().gold_multiplier_bp(), 0, kMaxBp},
      {"tiers.platinum_multiplier_bp", p.tiers().platinum_multiplier_bp(), 0, kMaxBp},
      {"tiers.spend_window_days", p.tiers().spend_window_days(), 1, kMaxDays},
      {"tiers.status_days", p.tiers().status_days(), 1, kMaxDays},
      {"referral.referee_points", p.referral().referee_points(), 0, kMaxPoints},
      {"referral.referrer_points", p.referral().referrer_points(), 0, kMaxPoints},
      {"referral.window_days", p.referral().window_days(), 0, kMaxDays},
      {"referral.min_amount_minor", p.referral().min_amount_minor(), 0, INT64_MAX / 4},
      {"referral.referrer_cap", p.referral().referrer_cap(), 0, 1'000'000},
      {"referral.cap_window_days", p.referral().cap_window_days(), 1, kMaxDays},
      {"referral.clawback_days", p.referral().clawback_days(), 0, kMaxDays},
      {"churn.default_interval_days", p.churn().default_interval_days(), 1, kMaxDays},
      {"churn.min_interval_days", p.churn().min_interval_days(), 1, kMaxDays},
      {"churn.interval_purchases", p.churn().interval_purchases(), 2, 1000},
      {"churn.churned_days", p.churn().churned_days(), 1, kMaxDays},
      {"churn.at_risk_ratio_num", p.churn().at_risk_ratio_num(), 1, 1000},
      {"churn.at_risk_ratio_den", p.churn().at_risk_ratio_den(), 1, 1000},
      {"churn.cooling_ratio_num", p.churn().cooling_ratio_num(), 1, 1000},
      {"churn.cooling_ratio_den", p.churn().cooling_ratio_den(), 1, 1000},
      {"churn.window_days", p.churn().window_days(), 1, kMaxDays},
  };
  for (const auto& c : checks) {
    if (auto s = CheckRange(c.name, c.v, c.lo, c.hi); !s.ok()) return s;
  }
  for (const auto& [category, bp] : p.category_multiplier_bp()) {
    if (auto s = CheckRange(absl::StrCat("category_multiplier_bp[", category, "]"), bp, 0, kMaxBp);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Program> LoadProgram(const std::string& path) {
  v1::Program program = DefaultProgram();
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read program file ", path));
    std::stringstream text;
    text << in.rdbuf();
    v1::Program overrides;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;  // a misspelt setting must not pass silently
    auto status = google::protobuf::util::JsonStringToMessage(text.str(), &overrides, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("program file ", path, ": ",
                                                     std::string(status.message())));
    }
    // Optional fields merge only where the file set them; the category map merges
    // per category.
    program.MergeFrom(overrides);
  }
  if (auto s = ValidateProgram(program); !s.ok()) return s;
  return program;
}

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kBronze: return "BRONZE";
    case Tier::kSilver: return "SILVER";
    case Tier::kGold: return "GOLD";
    case Tier::kPlatinum: return "PLATINUM";
  }
  return "BRONZE";
}

Rules::Rules(const v1::Program& p) {
  program_digest = std::string(DigestView(Sha256Of(SerializeDeterministic(p))));
  currency = p.currency();
  points_per_major = p.base_points_per_major_unit();
  minor_per_major = p.minor_units_per_major();
  for (const auto& [category, bp] : p.category_multiplier_bp()) category_bp[category] = bp;
  default_category_bp = p.default_category_multiplier_bp();
  pending_s = p.pending_days() * kDaySeconds;
  expiry_s = p.expiry_days() * kDaySeconds;
  refund_window_s = p.refund_window_days() * kDaySeconds;
  cancel_window_s = p.cancel_window_days() * kDaySeconds;
  expiring_soon_s = p.expiring_soon_days() * kDaySeconds;
  const auto& t = p.tiers();
  tier_threshold[1] = t.silver_threshold_minor();
  tier_threshold[2] = t.gold_threshold_minor();
  tier_threshold[3] = t.platinum_threshold_minor();
  tier_multiplier_bp[0] = t.bronze_multiplier_bp();
  tier_multiplier_bp[1] = t.silver_multiplier_bp();
  tier_multiplier_bp[2] = t.gold_multiplier_bp();
  tier_multiplier_bp[3] = t.platinum_multiplier_bp();
  spend_window_s = t.spend_window_days() * kDaySeconds;
  tier_status_s = t.status_days() * kDaySeconds;
  const auto& r = p.referral();
  referee_points = r.referee_points();
  referrer_points = r.referrer_points();
  referral_window_s = r.window_days() * kDaySeconds;
  referral_min_amount = r.min_amount_minor();
  referrer_cap = r.referrer_cap();
  referrer_cap_window_s = r.cap_window_days() * kDaySeconds;
  clawback_s = r.clawback_days() * kDaySeconds;
  const auto& c = p.churn();
  churn_default_interval_s = c.default_interval_days() * kDaySeconds;
  churn_min_interval_s = c.min_interval_days() * kDaySeconds;
  churn_interval_purchases = c.interval_purchases();
  churned_s = c.churned_days() * kDaySeconds;
  at_risk_num = c.at_risk_ratio_num();
  at_risk_den = c.at_risk_ratio_den();
  cooling_num = c.cooling_ratio_num();
  cooling_den = c.cooling_ratio_den();
  churn_window_s = c.window_days() * kDaySeconds;
}

int64_t Rules::OrderHorizon() const {
  return std::max({refund_window_s, tier_status_s + spend_window_s, churn_window_s,
                   spend_window_s});
}

}  // namespace loyalty
