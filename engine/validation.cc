#include "engine/validation.h"

#include <sstream>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"

namespace loyalty {
namespace {

using v1::DeadLetterReason;

std::optional<Rejection> Reject(DeadLetterReason reason, std::string detail) {
  return Rejection{reason, std::move(detail)};
}

// Checks an id's length, and that it is present when `required`.
std::optional<Rejection> CheckId(const std::string& value, absl::string_view name,
                                 bool required) {
  if (value.size() > kMaxIdBytes) {
    return Reject(v1::ID_TOO_LONG, absl::StrCat(name, " is ", value.size(),
                                                " bytes, over the limit of ",
                                                kMaxIdBytes));
  }
  if (required && value.empty()) {
    return Reject(v1::MISSING_FIELD, absl::StrCat(name, " is missing or empty"));
  }
  return std::nullopt;
}

std::optional<Rejection> CheckPurchase(const v1::Purchase& p) {
  if (auto r = CheckId(p.order_id(), "purchase.order_id", true)) return r;
  if (p.currency().empty()) {
    return Reject(v1::MISSING_FIELD, "purchase.currency is missing or empty");
  }
  if (p.amount_minor() <= 0) {
    return Reject(v1::NON_POSITIVE_AMOUNT,
                  absl::StrCat("purchase.amount_minor is ", p.amount_minor(),
                               "; it must be > 0"));
  }
  if (p.amount_minor() > kMaxAmountMinor) {
    return Reject(v1::AMOUNT_TOO_LARGE, absl::StrCat("purchase.amount_minor is ", p.amount_minor(),
                                                     "; the limit is ", kMaxAmountMinor));
  }
  if (p.lines_size() == 0) return std::nullopt;
  absl::int128 sum = 0;  // int64 lines can sum past int64
  for (int i = 0; i < p.lines_size(); ++i) {
    const v1::PurchaseLine& line = p.lines(i);
    if (auto r = CheckId(line.sku(), absl::StrCat("purchase.lines[", i, "].sku"),
                         false)) {
      return r;
    }
    if (line.amount_minor() < 0) {
      return Reject(v1::NEGATIVE_LINE_AMOUNT,
                    absl::StrCat("purchase.lines[", i, "].amount_minor is ",
                                 line.amount_minor(), "; it must be >= 0"));
    }
    sum += line.amount_minor();
  }
  if (sum != p.amount_minor()) {
    std::ostringstream sum_text;
    sum_text << sum;
    return Reject(v1::LINES_SUM_MISMATCH,
                  absl::StrCat("purchase lines sum to ", sum_text.str(),
                               ", not amount_minor ", p.amount_minor()));
  }
  return std::nullopt;
}

std::optional<Rejection> CheckPayload(const v1::Event& e) {
  switch (e.payload_case()) {
    case v1::Event::kPurchase:
      return CheckPurchase(e.purchase());
    case v1::Event::kRefund:
      if (auto r = CheckId(e.refund().order_id(), "refund.order_id", true)) return r;
      if (e.refund().amount_minor() <= 0) {
        return Reject(v1::NON_POSITIVE_AMOUNT,
                      absl::StrCat("refund.amount_minor is ", e.refund().amount_minor(),
                                   "; it must be > 0"));
      }
      if (e.refund().amount_minor() > kMaxAmountMinor) {
        return Reject(v1::AMOUNT_TOO_LARGE,
                      absl::StrCat("refund.amount_minor is ", e.refund().amount_minor(),
                                   "; the limit is ", kMaxAmountMinor));
      }
      return std::nullopt;
    case v1::Event::kReferral:
      if (auto r = CheckId(e.referral().referrer_id(), "referral.referrer_id", true)) {
        return r;
      }
      if (auto r = CheckId(e.referral().referee_id(), "referral.referee_id", true)) {
        return r;
      }
      if (e.referral().referee_id() != e.customer_id()) {
        return Reject(v1::REFEREE_NOT_CUSTOMER,
                      "referral.referee_id is not the event's customer_id");
      }
      return std::nullopt;
    case v1::Event::kRedemption:
      if (auto r = CheckId(e.redemption().redemption_id(), "redemption.redemption_id",
                           true)) {
        return r;
      }
      if (auto r = CheckId(e.redemption().reward_id(), "redemption.reward_id", false)) {
        return r;
      }
      if (e.redemption().points() <= 0) {
        return Reject(v1::NON_POSITIVE_POINTS,
                      absl::StrCat("redemption.points is ", e.redemption().points(),
                                   "; it must be > 0"));
      }
      if (e.redemption().points() > kMaxPoints) {
        return Reject(v1::POINTS_TOO_LARGE,
                      absl::StrCat("redemption.points is ", e.redemption().points(),
                                   "; the limit is ", kMaxPoints));
      }
      return std::nullopt;
    case v1::Event::kRedemptionCancel:
      return CheckId(e.redemption_cancel().redemption_id(),
                     "redemption_cancel.redemption_id", true);
    case v1::Event::kAdjustment:
      if (e.adjustment().points() == 0) {
        return Reject(v1::ZERO_POINTS, "adjustment.points is 0");
      }
      if (e.adjustment().points() > kMaxPoints || e.adjustment().points() < -kMaxPoints) {
        return Reject(v1::POINTS_TOO_LARGE,
                      absl::StrCat("adjustment.points is ", e.adjustment().points(),
                                   "; the limit is ", kMaxPoints, " either way"));
      }
      return std::nullopt;
    case v1::Event::PAYLOAD_NOT_SET:
      break;
  }
  return Reject(v1::MISSING_PAYLOAD, "the event has no payload");
}

}  // namespace

std::optional<Rejection> ValidateEvent(const v1::Event& e, absl::Time ingest_clock) {
  if (auto r = CheckId(e.event_id(), "event_id", false)) return r;
  if (auto r = CheckId(e.customer_id(), "customer_id", false)) return r;
  if (e.event_id().empty()) return Reject(v1::MISSING_EVENT_ID, "event_id is missing");
  if (e.customer_id().empty()) {
    return Reject(v1::MISSING_CUSTOMER_ID, "customer_id is missing");
  }
  if (!e.has_occurred_at()) {
    return Reject(v1::MISSING_OCCURRED_AT, "occurred_at is missing");
  }
  if (auto r = CheckPayload(e)) return r;
  // Times are taken to the second (rules.md): compare whole seconds.
  const int64_t occurred_s = e.occurred_at().seconds();
  const int64_t clock_s = absl::ToUnixSeconds(ingest_clock);
  if (occurred_s - clock_s > absl::ToInt64Seconds(kMaxFutureSkew)) {
    return Reject(v1::OCCURRED_IN_FUTURE,
                  absl::StrCat("occurred_at is ", occurred_s - clock_s,
                               " s ahead of the engine clock (",
                               absl::FormatTime(absl::RFC3339_sec, ingest_clock,
                                                absl::UTCTimeZone()),
                               "); the limit is 86400 s"));
  }
  return std::nullopt;
}

std::string DeadLetterReasonName(v1::DeadLetterReason reason) {
  return v1::DeadLetterReason_Name(reason);
}

}  // namespace loyalty
