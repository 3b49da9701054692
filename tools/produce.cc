#include "tools/produce.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <numeric>
#include <queue>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "loyalty/v1/event.pb.h"

namespace loyalty {
namespace {

using u128 = unsigned __int128;

// ---------------------------------------------------------------------------
// Limits and shapes. Parts per 10,000 ("per myriad") unless said otherwise.

// Per customer, the most recent orders a refund may name and redemptions a
// cancel may name; older ones are forgotten (bounded memory).
constexpr size_t kMaxRecentOrders = 8;
constexpr size_t kMaxRecentRedemptions = 4;
// A duplicate re-sends one of this many most recent well-formed messages.
constexpr size_t kDuplicateWindow = 1024;
// Referees waiting for their first purchase; a referral gets no follow-up
// purchase while this many are waiting.
constexpr size_t kMaxFollowUps = 4096;
// The follow-up purchase comes 1..this many messages after the referral.
constexpr int64_t kMaxFollowUpDelay = 2000;
// rules.md section 10: ids over this many bytes are dead letters.
constexpr int64_t kMaxIdBytes = 128;

// Late events: occurred_at this much earlier than the previous message's.
constexpr uint64_t kLatePerMyriad = 300;
constexpr int64_t kLateMinSeconds = 3 * 60;
constexpr int64_t kLateMaxSeconds = 3 * 86400;
// The future-dated malformed event: this long after start + span.
constexpr int64_t kFutureSeconds = 3 * 86400;

// Mix of well-formed events (cumulative bounds on a draw below 10,000); the rest
// (74%) are purchases. A refund or cancel with nothing to name becomes a purchase.
constexpr uint64_t kRefundEnd = 800;                   // 8%
constexpr uint64_t kReferralEnd = kRefundEnd + 400;    // 4%
constexpr uint64_t kRedemptionEnd = kReferralEnd + 1000;  // 10%
constexpr uint64_t kCancelEnd = kRedemptionEnd + 200;  // 2%
constexpr uint64_t kAdjustmentEnd = kCancelEnd + 200;  // 2%

constexpr uint64_t kUsdPerMyriad = 100;            // purchases in the wrong currency
constexpr uint64_t kLinesPerMyriad = 4000;         // purchases with lines
constexpr int64_t kMaxLines = 4;
constexpr int64_t kMaxSku = 5000;
constexpr int64_t kMaxQuantity = 3;
constexpr uint64_t kUnknownOrderPerMyriad = 500;   // refunds naming no order
constexpr uint64_t kFullRefundPerMyriad = 4000;    // refunds of all that is left
constexpr uint64_t kUnknownRedemptionPerMyriad = 1000;  // cancels naming no redemption
constexpr uint64_t kUnseenRefereePerMyriad = 9000;  // referee not seen before
constexpr uint64_t kSelfReferralPerMyriad = 300;
constexpr uint64_t kFollowUpPerMyriad = 7500;       // referee buys soon after
constexpr uint64_t kQualifyingFollowUpPerMyriad = 8000;  // ... for at least 20.00
constexpr int64_t kReferrerTries = 4;               // draws to find a known referrer
constexpr int64_t kRedemptionPointsStep = 50;       // points 50..2000 in steps of 50
constexpr int64_t kRedemptionSteps = 40;
constexpr int64_t kRewards = 20;
constexpr int64_t kAgents = 12;
constexpr int64_t kMinAdjustment = -300;
constexpr int64_t kMaxAdjustment = 500;

// Purchase amounts (minor units): a log-normal-ish shape as bands, each uniform.
struct AmountBand {
  uint64_t per_myriad;
  int64_t low;
  int64_t high;
};
constexpr std::array<AmountBand, 7> kAmountBands = {{
    {1000, 500, 999},
    {2000, 1000, 2499},
    {2500, 2500, 4999},
    {2200, 5000, 9999},
    {1800, 10000, 30000},
    {400, 30001, 100000},
    {100, 100001, 300000},
}};
static_assert([] {
  uint64_t sum = 0;
  for (const AmountBand& band : kAmountBands) sum += band.per_myriad;
  return sum == 10'000;
}());

constexpr std::array<std::string_view, 5> kCategories = {"grocery", "electronics", "apparel",
                                                         "gift_card", "home"};

// Duplicates in kJson: re-spelled variants (the rest are byte for byte).
constexpr uint64_t kReorderedPerMyriad = 1000;
constexpr uint64_t kStringInt64PerMyriad = 1000;
constexpr uint64_t kMillisPerMyriad = 500;
constexpr uint64_t kAllVariantsPerMyriad = 500;

// Malformed kinds, drawn uniformly. The ones marked (JSON) are decode errors
// that only JSON can spell; in kProtobuf they become undecodable garbage bytes.
enum class Malformed : uint64_t {
  kTruncatedJson,         // (JSON) a line cut short
  kNoEventId,
  kNoCustomerId,          // and an empty key
  kNoOccurredAt,
  kNoPayload,
  kNonPositiveAmount,     // purchase amount 0 or negative
  kZeroRedemptionPoints,
  kZeroAdjustmentPoints,
  kLinesDoNotSum,
  kNegativeLine,          // lines still sum to the amount
  kIdTooLong,             // event_id, customer_id or order_id over 128 bytes
  kRefereeMismatch,       // referral whose referee_id is not the customer_id
  kAmountNotNumber,       // (JSON) amountMinor "abc"
  kBadTimestamp,          // (JSON) occurredAt that does not parse
  kFuture,                // occurred_at 3 days after start + span
  kCount,
};

constexpr std::array<std::string_view, 4> kNotNumbers = {"\"abc\"", "\"12,50\"", "\"1e\"",
                                                         "true"};
constexpr std::array<std::string_view, 4> kBadTimes = {
    "2025-13-45T10:00:00Z", "yesterday", "2025-01-01 10:00:00", "2025-01-01T10:00:00"};
// Garbage values: 8..64 bytes.
constexpr uint64_t kMinGarbageBytes = 8;
constexpr uint64_t kMaxGarbageBytes = 64;

// ---------------------------------------------------------------------------
// Random numbers: only the raw 64-bit output of std::mt19937_64, which the
// standard fixes, so the stream is the same with every standard library.

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}

  uint64_t Next() { return engine_(); }

  // Uniform in [0, n), n >= 1 (Lemire's multiply-and-reject, unbiased).
  uint64_t Below(uint64_t n) {
    u128 product = static_cast<u128>(engine_()) * n;
    uint64_t low = static_cast<uint64_t>(product);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        product = static_cast<u128>(engine_()) * n;
        low = static_cast<uint64_t>(product);
      }
    }
    return static_cast<uint64_t>(product >> 64);
  }

  // Uniform in [low, high], low <= high.
  int64_t Between(int64_t low, int64_t high) {
    const uint64_t width = static_cast<uint64_t>(high) - static_cast<uint64_t>(low) + 1;
    return static_cast<int64_t>(static_cast<uint64_t>(low) + Below(width));
  }

  bool PerMyriad(uint64_t parts) { return Below(10'000) < parts; }

 private:
  std::mt19937_64 engine_;
};

// SplitMix64: garbage bytes without touching the main generator.
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A share in [0, 1] as a threshold on a raw 64-bit draw (2^64 = always).
u128 ShareThreshold(double share) {
  if (!(share > 0)) return 0;  // also NaN
  if (share >= 1) return static_cast<u128>(1) << 64;
  return static_cast<u128>(static_cast<uint64_t>(std::ldexp(share, 64)));
}

// y^10 (y < 2^12.8, so it fits).
u128 Pow10(uint64_t y) {
  const u128 y2 = static_cast<u128>(y) * y;
  const u128 y4 = y2 * y2;
  const u128 y8 = y4 * y4;
  return y8 * y2;
}

// Ranks 0..n-1 with weight 1/(rank+1)^1.1, in integers: (rank+1)^0.1 is found as
// floor(x^0.1 * 2^10) = the largest y with y^10 <= x * 2^100, which grows by
// at most a few thousand steps over all ranks; the weight is 2^60 / (x * y).
// Flattens the head of the activity distribution (see ZipfSampler).
constexpr uint64_t kZipfShift = 50;

class ZipfSampler {
 public:
  explicit ZipfSampler(uint64_t n) {
    static_assert(kMaxProduceCustomers + kZipfShift < (uint64_t{1} << 27),
                  "x * 2^100 must fit in 128 bits");
    cumulative_.reserve(n);
    uint64_t y = 1024;  // 1^0.1 * 2^10
    uint64_t sum = 0;
    for (uint64_t rank = 1; rank <= n; ++rank) {
      // Weight 1/(rank + kZipfShift)^1.1: skewed, but without a single customer
      // taking a tenth of all traffic (the top one gets ~0.3% with 1M customers).
      const uint64_t x = rank + kZipfShift;
      const u128 limit = static_cast<u128>(x) << 100;
      while (Pow10(y + 1) <= limit) ++y;
      sum += (uint64_t{1} << 60) / (x * y);  // sum < 2^60 * zeta(1.1) / 2^10 < 2^54
      cumulative_.push_back(sum);
    }
  }

  uint64_t Sample(Random& random) const {
    const uint64_t draw = random.Below(cumulative_.back());
    return static_cast<uint64_t>(
        std::upper_bound(cumulative_.begin(), cumulative_.end(), draw) - cumulative_.begin());
  }

 private:
  std::vector<uint64_t> cumulative_;
};

// ---------------------------------------------------------------------------
// Proto3 JSON, written by hand: int64 as numbers (like the interfaces example),
// and spelling variants for re-sent duplicates.

struct JsonStyle {
  bool reversed = false;         // members in reverse order (array order kept)
  bool int64_as_string = false;  // "amountMinor":"1250"
  bool millis = false;           // "...T10:00:00.000Z"
  std::string_view amount_override;  // raw JSON for purchase.amountMinor
  std::string_view time_override;    // text (quoted here) for occurredAt
};

void AppendQuoted(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t plain = 0;  // start of the run not yet copied
  for (size_t k = 0; k < text.size(); ++k) {
    const auto byte = static_cast<unsigned char>(text[k]);
    if (byte >= 0x20 && byte != '"' && byte != '\\') continue;
    out->append(text.data() + plain, k - plain);
    plain = k + 1;
    if (byte >= 0x20) {
      out->push_back('\\');
      out->push_back(static_cast<char>(byte));
    } else {
      out->append("\\u00");
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xF]);
    }
  }
  out->append(text.data() + plain, text.size() - plain);
  out->push_back('"');
}

// One JSON object; members are collected, then written in order or reversed.
class JsonObject {
 public:
  explicit JsonObject(const JsonStyle& style) : style_(style) { buffer_.reserve(kReserveBytes); }

  void Raw(std::string_view name, std::string_view raw_value) {
    Begin(name);
    buffer_.append(raw_value);
    End();
  }
  void String(std::string_view name, std::string_view value) {
    if (value.empty()) return;  // proto3: a default value is left out
    Text(name, value);
  }
  void Text(std::string_view name, std::string_view value) {
    Begin(name);
    AppendQuoted(value, &buffer_);
    End();
  }
  void Int64(std::string_view name, int64_t value) {
    if (value == 0) return;
    Begin(name);
    if (style_.int64_as_string) buffer_.push_back('"');
    absl::StrAppend(&buffer_, value);
    if (style_.int64_as_string) buffer_.push_back('"');
    End();
  }
  void Int32(std::string_view name, int32_t value) {
    if (value == 0) return;
    Begin(name);
    absl::StrAppend(&buffer_, value);
    End();
  }

  void AppendTo(std::string* out) const {
    out->push_back('{');
    for (size_t k = 0; k < count_; ++k) {
      const auto [begin, end] = spans_[style_.reversed ? count_ - 1 - k : k];
      if (k > 0) out->push_back(',');
      out->append(buffer_, begin, end - begin);
    }
    out->push_back('}');
  }

 private:
  void Begin(std::string_view name) {
    spans_[count_].first = buffer_.size();
    AppendQuoted(name, &buffer_);
    buffer_.push_back(':');
  }
  void End() { spans_[count_++].second = buffer_.size(); }

  static constexpr size_t kReserveBytes = 256;  // most objects fit: one allocation

  const JsonStyle& style_;
  std::string buffer_;
  std::array<std::pair<size_t, size_t>, 8> spans_;  // no message here has more members
  size_t count_ = 0;
};

void AppendPurchaseJson(const v1::Purchase& purchase, const JsonStyle& style, std::string* out) {
  JsonObject object(style);
  object.String("orderId", purchase.order_id());
  if (!style.amount_override.empty()) {
    object.Raw("amountMinor", style.amount_override);
  } else {
    object.Int64("amountMinor", purchase.amount_minor());
  }
  object.String("currency", purchase.currency());
  if (purchase.lines_size() > 0) {
    std::string lines = "[";
    for (int k = 0; k < purchase.lines_size(); ++k) {
      const v1::PurchaseLine& line = purchase.lines(k);
      JsonObject line_object(style);
      line_object.String("sku", line.sku());
      line_object.String("category", line.category());
      line_object.Int64("amountMinor", line.amount_minor());
      line_object.Int32("quantity", line.quantity());
      if (k > 0) lines.push_back(',');
      line_object.AppendTo(&lines);
    }
    lines.push_back(']');
    object.Raw("lines", lines);
  }
  object.AppendTo(out);
}

// Appends `event` as one line of proto3 JSON.
void AppendEventJson(const v1::Event& event, const JsonStyle& style, std::string* out) {
  JsonObject object(style);
  object.String("eventId", event.event_id());
  object.String("customerId", event.customer_id());
  if (!style.time_override.empty()) {
    object.Text("occurredAt", style.time_override);
  } else if (event.has_occurred_at()) {
    // RFC 3339 as protobuf's JSON mapping prints it ("...Z", no fraction for whole seconds).
    std::string time = google::protobuf::util::TimeUtil::ToString(event.occurred_at());
    if (style.millis && event.occurred_at().nanos() == 0 && !time.empty() && time.back() == 'Z') {
      time.insert(time.size() - 1, ".000");
    }
    object.Text("occurredAt", time);
  }
  object.String("source", event.source());

  std::string payload;
  switch (event.payload_case()) {
    case v1::Event::kPurchase:
      AppendPurchaseJson(event.purchase(), style, &payload);
      object.Raw("purchase", payload);
      break;
    case v1::Event::kRefund: {
      JsonObject refund(style);
      refund.String("orderId", event.refund().order_id());
      refund.Int64("amountMinor", event.refund().amount_minor());
      refund.AppendTo(&payload);
      object.Raw("refund", payload);
      break;
    }
    case v1::Event::kReferral: {
      JsonObject referral(style);
      referral.String("referrerId", event.referral().referrer_id());
      referral.String("refereeId", event.referral().referee_id());
      referral.AppendTo(&payload);
      object.Raw("referral", payload);
      break;
    }
    case v1::Event::kRedemption: {
      JsonObject redemption(style);
      redemption.String("redemptionId", event.redemption().redemption_id());
      redemption.Int64("points", event.redemption().points());
      redemption.String("rewardId", event.redemption().reward_id());
      redemption.AppendTo(&payload);
      object.Raw("redemption", payload);
      break;
    }
    case v1::Event::kRedemptionCancel: {
      JsonObject cancel(style);
      cancel.String("redemptionId", event.redemption_cancel().redemption_id());
      cancel.AppendTo(&payload);
      object.Raw("redemptionCancel", payload);
      break;
    }
    case v1::Event::kAdjustment: {
      JsonObject adjustment(style);
      adjustment.Int64("points", event.adjustment().points());
      adjustment.String("reason", event.adjustment().reason());
      adjustment.String("actor", event.adjustment().actor());
      adjustment.AppendTo(&payload);
      object.Raw("adjustment", payload);
      break;
    }
    case v1::Event::PAYLOAD_NOT_SET:
      break;
  }
  object.AppendTo(out);
}

// ---------------------------------------------------------------------------

class StreamGenerator {
 public:
  using Sink = std::function<bool(std::string_view key, std::string_view value)>;

  explicit StreamGenerator(const ProduceOptions& options)
      : options_(options),
        customers_(std::clamp<uint64_t>(options.customers, 1, kMaxProduceCustomers)),
        span_(std::max<int64_t>(options.span_seconds, 0)),
        random_(options.seed),
        zipf_(customers_),
        seen_(customers_, 0),
        history_slot_(customers_, 0),
        recent_(kDuplicateWindow),
        unseen_cursor_(customers_) {
    const double malformed = std::clamp(options.malformed_share, 0.0, 1.0);
    const double duplicate = std::clamp(options.duplicate_share, 0.0, 1.0);
    malformed_threshold_ = ShareThreshold(malformed);
    duplicate_threshold_ =
        std::min(malformed_threshold_ + ShareThreshold(duplicate), static_cast<u128>(1) << 64);
    // Ranks map to customer indices by rank * a + b (mod n), gcd(a, n) = 1, so the
    // busiest customers are spread over the id range.
    multiplier_ = random_.Below(customers_);
    while (std::gcd(multiplier_, customers_) != 1) multiplier_ = (multiplier_ + 1) % customers_;
    offset_ = random_.Below(customers_);
  }

  void Run(const Sink& sink) {
    for (uint64_t i = 0; i < options_.events; ++i) {
      key_.clear();
      value_.clear();
      const u128 draw = random_.Next();
      if (draw < malformed_threshold_) {
        MakeMalformed(i);
      } else if (draw < duplicate_threshold_ && recent_count_ > 0) {
        MakeDuplicate();
      } else {
        MakeWellFormed(i);
      }
      if (!sink(key_, value_)) return;
    }
  }

 private:
  struct OrderRef {
    uint64_t number;     // order id "o-<number>"
    int64_t refundable;  // amount not refunded yet
  };
  struct History {
    std::array<OrderRef, kMaxRecentOrders> orders;
    std::array<uint64_t, kMaxRecentRedemptions> redemptions;  // "r-<number>"
    uint8_t order_count = 0;
    uint8_t redemption_count = 0;
  };
  struct FollowUp {
    uint64_t due;  // message index
    uint64_t customer;
    bool operator>(const FollowUp& other) const {
      return std::tie(due, customer) > std::tie(other.due, other.customer);
    }
  };

  // occurred_at of message i before any lateness: start + span * i / events.
  int64_t BaseTime(uint64_t i) const {
    const u128 offset = static_cast<u128>(span_) * i / options_.events;
    return options_.start_unix_seconds + static_cast<int64_t>(offset);
  }

  uint64_t CustomerAtRank(uint64_t rank) const {
    return static_cast<uint64_t>((static_cast<u128>(rank) * multiplier_ + offset_) % customers_);
  }
  uint64_t SampleCustomer() { return CustomerAtRank(zipf_.Sample(random_)); }

  // The next never-seen customer, from the least active ranks up.
  bool NextUnseen(uint64_t* customer) {
    while (unseen_cursor_ > 0) {
      --unseen_cursor_;
      const uint64_t candidate = CustomerAtRank(unseen_cursor_);
      if (!seen_[candidate]) {
        *customer = candidate;
        return true;
      }
    }
    return false;
  }

  static std::string CustomerId(uint64_t index) {
    return absl::StrCat("c-", absl::Dec(index + 1, absl::kZeroPad6));
  }

  History* FindHistory(uint64_t customer) {
    const uint32_t slot = history_slot_[customer];
    return slot == 0 ? nullptr : &histories_[slot - 1];
  }
  History& HistoryOf(uint64_t customer) {
    if (history_slot_[customer] == 0) {
      histories_.emplace_back();
      history_slot_[customer] = static_cast<uint32_t>(histories_.size());
    }
    return histories_[history_slot_[customer] - 1];
  }

  std::string_view SampleChannel() {
    const uint64_t draw = random_.Below(10'000);
    if (draw < 4500) return "pos";
    if (draw < 7500) return "web";
    return "app";
  }

  int64_t SampleAmount() {
    uint64_t draw = random_.Below(10'000);
    for (const AmountBand& band : kAmountBands) {
      if (draw < band.per_myriad) return random_.Between(band.low, band.high);
      draw -= band.per_myriad;
    }
    return kAmountBands.back().high;  // unreachable: the bands sum to 10,000
  }

  // 1..kMaxLines (at least `min_lines`) lines summing exactly to `amount` >= 0.
  void FillLines(int64_t amount, int64_t min_lines, v1::Purchase* purchase) {
    const int64_t count = random_.Between(min_lines, kMaxLines);
    std::array<int64_t, kMaxLines + 1> cuts{};
    cuts[0] = 0;
    for (int64_t k = 1; k < count; ++k) cuts[k] = random_.Between(0, amount);
    cuts[count] = amount;
    for (int64_t k = 2; k < count; ++k) {  // insertion sort of at most 3 cuts
      for (int64_t j = k; j > 1 && cuts[j - 1] > cuts[j]; --j) std::swap(cuts[j - 1], cuts[j]);
    }
    for (int64_t k = 0; k < count; ++k) {
      v1::PurchaseLine* line = purchase->add_lines();
      const int64_t sku = random_.Between(1, kMaxSku);
      const uint64_t category = random_.Below(kCategories.size());
      const int64_t quantity = random_.Between(1, kMaxQuantity);
      line->set_sku(absl::StrCat("sku-", sku));
      line->set_category(std::string(kCategories[category]));
      line->set_amount_minor(cuts[k + 1] - cuts[k]);
      line->set_quantity(static_cast<int32_t>(quantity));
    }
  }

  // A purchase "o-<number>" of `amount` with lines as drawn (no state change).
  v1::Purchase* FillPurchase(uint64_t number, int64_t amount, std::string_view currency,
                             bool with_lines) {
    v1::Purchase* purchase = event_.mutable_purchase();
    purchase->set_order_id(absl::StrCat("o-", number));
    purchase->set_amount_minor(amount);
    purchase->set_currency(std::string(currency));
    if (with_lines) FillLines(amount, 1, purchase);
    return purchase;
  }

  void Purchase(uint64_t customer, uint64_t number, bool after_referral) {
    const int64_t amount = (after_referral && random_.PerMyriad(kQualifyingFollowUpPerMyriad))
                               ? random_.Between(2000, 15000)
                               : SampleAmount();
    const bool usd = random_.PerMyriad(kUsdPerMyriad);
    const bool with_lines = random_.PerMyriad(kLinesPerMyriad);
    FillPurchase(number, amount, usd ? "USD" : "EUR", with_lines);
    if (usd) return;  // rejected WRONG_CURRENCY: nothing to refund later
    History& history = HistoryOf(customer);
    if (history.order_count == kMaxRecentOrders) {
      std::copy(history.orders.begin() + 1, history.orders.end(), history.orders.begin());
      --history.order_count;
    }
    history.orders[history.order_count++] = OrderRef{number, amount};
  }

  // False when the customer has no order left to refund.
  bool Refund(uint64_t customer, uint64_t number) {
    if (random_.PerMyriad(kUnknownOrderPerMyriad)) {
      // "o-<this message's number>" names no purchase: UNKNOWN_ORDER.
      const int64_t amount = SampleAmount();
      v1::Refund* refund = event_.mutable_refund();
      refund->set_order_id(absl::StrCat("o-", number));
      refund->set_amount_minor(amount);
      return true;
    }
    History* history = FindHistory(customer);
    if (history == nullptr || history->order_count == 0) return false;
    const uint64_t pick = random_.Below(history->order_count);
    OrderRef& order = history->orders[pick];
    const int64_t amount = random_.PerMyriad(kFullRefundPerMyriad)
                               ? order.refundable
                               : random_.Between(1, order.refundable);
    v1::Refund* refund = event_.mutable_refund();
    refund->set_order_id(absl::StrCat("o-", order.number));
    refund->set_amount_minor(amount);
    order.refundable -= amount;
    if (order.refundable == 0) {
      std::copy(history->orders.begin() + pick + 1, history->orders.begin() + history->order_count,
                history->orders.begin() + pick);
      --history->order_count;
    }
    return true;
  }

  // Returns the referee, the event's customer.
  uint64_t Referral(uint64_t i) {
    uint64_t referee = 0;
    if (!(random_.PerMyriad(kUnseenRefereePerMyriad) && NextUnseen(&referee))) {
      referee = SampleCustomer();
    }
    uint64_t referrer = referee;
    if (!random_.PerMyriad(kSelfReferralPerMyriad)) {
      for (int64_t tries = 0; tries < kReferrerTries; ++tries) {
        referrer = SampleCustomer();
        if (referrer != referee && seen_[referrer]) break;
      }
    }
    v1::Referral* referral = event_.mutable_referral();
    referral->set_referrer_id(CustomerId(referrer));
    referral->set_referee_id(CustomerId(referee));
    if (random_.PerMyriad(kFollowUpPerMyriad)) {
      const int64_t delay = random_.Between(1, kMaxFollowUpDelay);
      if (follow_ups_.size() < kMaxFollowUps) {
        follow_ups_.push(FollowUp{i + static_cast<uint64_t>(delay), referee});
      }
    }
    return referee;
  }

  void Redemption(uint64_t customer, uint64_t number) {
    const int64_t points = kRedemptionPointsStep * random_.Between(1, kRedemptionSteps);
    const int64_t reward = random_.Between(1, kRewards);
    v1::Redemption* redemption = event_.mutable_redemption();
    redemption->set_redemption_id(absl::StrCat("r-", number));
    redemption->set_points(points);
    redemption->set_reward_id(absl::StrCat("reward-", reward));
    History& history = HistoryOf(customer);
    if (history.redemption_count == kMaxRecentRedemptions) {
      std::copy(history.redemptions.begin() + 1, history.redemptions.end(),
                history.redemptions.begin());
      --history.redemption_count;
    }
    history.redemptions[history.redemption_count++] = number;
  }

  // False when the customer has no redemption left to cancel.
  bool Cancel(uint64_t customer, uint64_t number) {
    if (random_.PerMyriad(kUnknownRedemptionPerMyriad)) {
      // "r-<this message's number>" names no redemption: UNKNOWN_REDEMPTION.
      event_.mutable_redemption_cancel()->set_redemption_id(absl::StrCat("r-", number));
      return true;
    }
    History* history = FindHistory(customer);
    if (history == nullptr || history->redemption_count == 0) return false;
    const uint64_t pick = random_.Below(history->redemption_count);
    event_.mutable_redemption_cancel()->set_redemption_id(
        absl::StrCat("r-", history->redemptions[pick]));
    std::copy(history->redemptions.begin() + pick + 1,
              history->redemptions.begin() + history->redemption_count,
              history->redemptions.begin() + pick);
    --history->redemption_count;
    return true;
  }

  void Adjustment() {
    int64_t points = random_.Between(kMinAdjustment, kMaxAdjustment - 1);
    if (points >= 0) ++points;  // never 0
    const bool goodwill = points > 0 && random_.PerMyriad(7000);
    const int64_t agent = random_.Between(1, kAgents);
    v1::Adjustment* adjustment = event_.mutable_adjustment();
    adjustment->set_points(points);
    adjustment->set_reason(goodwill ? "goodwill" : "correction");
    adjustment->set_actor(absl::StrCat("agent-", agent));
  }

  void MakeWellFormed(uint64_t i) {
    const uint64_t number = i + 1;
    int64_t time = BaseTime(i);
    if (i > 0 && random_.PerMyriad(kLatePerMyriad)) {
      const int64_t back = random_.Between(kLateMinSeconds, kLateMaxSeconds);
      time = std::max(options_.start_unix_seconds, BaseTime(i - 1) - back);
    }
    event_.Clear();
    uint64_t customer = 0;
    if (!follow_ups_.empty() && follow_ups_.top().due <= i) {
      customer = follow_ups_.top().customer;
      follow_ups_.pop();
      Purchase(customer, number, /*after_referral=*/true);
    } else {
      const uint64_t kind = random_.Below(10'000);
      if (kind < kRefundEnd) {
        customer = SampleCustomer();
        if (!Refund(customer, number)) Purchase(customer, number, false);
      } else if (kind < kReferralEnd) {
        customer = Referral(i);
      } else if (kind < kRedemptionEnd) {
        customer = SampleCustomer();
        Redemption(customer, number);
      } else if (kind < kCancelEnd) {
        customer = SampleCustomer();
        if (!Cancel(customer, number)) Purchase(customer, number, false);
      } else if (kind < kAdjustmentEnd) {
        customer = SampleCustomer();
        Adjustment();
      } else {
        customer = SampleCustomer();
        Purchase(customer, number, false);
      }
    }
    event_.set_event_id(absl::StrCat("e-", number));
    event_.set_customer_id(CustomerId(customer));
    event_.mutable_occurred_at()->set_seconds(time);
    if (event_.has_adjustment()) {
      event_.set_source("support");
    } else {
      event_.set_source(std::string(SampleChannel()));
    }
    seen_[customer] = 1;

    key_ = event_.customer_id();
    Render(event_, JsonStyle{});
    recent_[recent_next_].CopyFrom(event_);
    recent_next_ = (recent_next_ + 1) % kDuplicateWindow;
    recent_count_ = std::min(recent_count_ + 1, kDuplicateWindow);
  }

  void MakeDuplicate() {
    const uint64_t pick = random_.Below(recent_count_);
    const uint64_t variant = random_.Below(10'000);
    const v1::Event& original = recent_[pick];
    JsonStyle style;
    uint64_t bound = kReorderedPerMyriad;
    if (variant < bound) {
      style.reversed = true;
    } else if (variant < (bound += kStringInt64PerMyriad)) {
      style.int64_as_string = true;
    } else if (variant < (bound += kMillisPerMyriad)) {
      style.millis = true;
    } else if (variant < (bound += kAllVariantsPerMyriad)) {
      style.reversed = style.int64_as_string = style.millis = true;
    }
    key_ = original.customer_id();
    Render(original, style);  // kProtobuf ignores the style: the same bytes
  }

  void MakeMalformed(uint64_t i) {
    const uint64_t number = i + 1;
    const auto kind =
        static_cast<Malformed>(random_.Below(static_cast<uint64_t>(Malformed::kCount)));
    const uint64_t customer = SampleCustomer();
    const uint64_t aux = random_.Next();  // cut point, spelling or garbage seed
    const std::string_view channel = SampleChannel();
    event_.Clear();
    event_.set_event_id(absl::StrCat("e-", number));
    event_.set_customer_id(CustomerId(customer));
    event_.mutable_occurred_at()->set_seconds(BaseTime(i));
    event_.set_source(std::string(channel));

    JsonStyle style;
    bool json_only = false;  // a decode error that only JSON can spell
    switch (kind) {
      case Malformed::kTruncatedJson:
        FillPurchase(number, SampleAmount(), "EUR", false);
        json_only = true;
        break;
      case Malformed::kNoEventId:
        FillPurchase(number, SampleAmount(), "EUR", false);
        event_.clear_event_id();
        break;
      case Malformed::kNoCustomerId:
        FillPurchase(number, SampleAmount(), "EUR", false);
        event_.clear_customer_id();
        break;
      case Malformed::kNoOccurredAt:
        FillPurchase(number, SampleAmount(), "EUR", false);
        event_.clear_occurred_at();
        break;
      case Malformed::kNoPayload:
        break;
      case Malformed::kNonPositiveAmount: {
        const int64_t amount = random_.PerMyriad(5000) ? 0 : -random_.Between(1, 5000);
        FillPurchase(number, amount, "EUR", false);
        break;
      }
      case Malformed::kZeroRedemptionPoints: {
        const int64_t reward = random_.Between(1, kRewards);
        v1::Redemption* redemption = event_.mutable_redemption();
        redemption->set_redemption_id(absl::StrCat("r-", number));
        redemption->set_points(0);
        redemption->set_reward_id(absl::StrCat("reward-", reward));
        break;
      }
      case Malformed::kZeroAdjustmentPoints: {
        const int64_t agent = random_.Between(1, kAgents);
        v1::Adjustment* adjustment = event_.mutable_adjustment();
        adjustment->set_points(0);
        adjustment->set_reason("correction");
        adjustment->set_actor(absl::StrCat("agent-", agent));
        event_.set_source("support");
        break;
      }
      case Malformed::kLinesDoNotSum: {
        const int64_t amount = SampleAmount();
        v1::Purchase* purchase = FillPurchase(number, amount, "EUR", true);
        const int64_t extra = random_.Between(1, 999);
        purchase->set_amount_minor(amount + extra);
        break;
      }
      case Malformed::kNegativeLine: {
        const int64_t amount = SampleAmount();
        v1::Purchase* purchase = event_.mutable_purchase();
        purchase->set_order_id(absl::StrCat("o-", number));
        purchase->set_amount_minor(amount);
        purchase->set_currency("EUR");
        FillLines(amount, 2, purchase);
        // Move more than line 0 holds to line 1: the sum stays right, line 0 < 0.
        const int64_t shift = purchase->lines(0).amount_minor() + random_.Between(1, 500);
        purchase->mutable_lines(0)->set_amount_minor(purchase->lines(0).amount_minor() - shift);
        purchase->mutable_lines(1)->set_amount_minor(purchase->lines(1).amount_minor() + shift);
        break;
      }
      case Malformed::kIdTooLong: {
        const uint64_t which = random_.Below(3);
        const int64_t length = random_.Between(kMaxIdBytes + 1, 2 * kMaxIdBytes);
        FillPurchase(number, SampleAmount(), "EUR", false);
        auto lengthen = [length](std::string id) {
          id.push_back('-');
          id.resize(static_cast<size_t>(std::max<int64_t>(length, id.size())), 'x');
          return id;
        };
        if (which == 0) {
          event_.set_event_id(lengthen(event_.event_id()));
        } else if (which == 1) {
          event_.set_customer_id(lengthen(event_.customer_id()));
        } else {
          event_.mutable_purchase()->set_order_id(lengthen(event_.purchase().order_id()));
        }
        break;
      }
      case Malformed::kRefereeMismatch: {
        // Another customer, or index -1 ("c-000000", never used) when there is none.
        const uint64_t other =
            customers_ > 1 ? (customer + 1 + random_.Below(customers_ - 1)) % customers_
                           : uint64_t{0} - 1;
        const uint64_t referrer = SampleCustomer();
        v1::Referral* referral = event_.mutable_referral();
        referral->set_referrer_id(CustomerId(referrer));
        referral->set_referee_id(CustomerId(other));
        break;
      }
      case Malformed::kAmountNotNumber:
        FillPurchase(number, SampleAmount(), "EUR", false);
        style.amount_override = kNotNumbers[aux % kNotNumbers.size()];
        json_only = true;
        break;
      case Malformed::kBadTimestamp:
        FillPurchase(number, SampleAmount(), "EUR", false);
        style.time_override = kBadTimes[aux % kBadTimes.size()];
        json_only = true;
        break;
      case Malformed::kFuture:
        FillPurchase(number, SampleAmount(), "EUR", false);
        event_.mutable_occurred_at()->set_seconds(options_.start_unix_seconds + span_ +
                                                  kFutureSeconds);
        break;
      case Malformed::kCount:
        break;
    }

    key_ = event_.customer_id();
    if (options_.format == ProduceFormat::kProtobuf && json_only) {
      AppendGarbage(aux);
      return;
    }
    Render(event_, style);
    if (kind == Malformed::kTruncatedJson && value_.size() > 1) {
      value_.resize(1 + aux % (value_.size() - 1));  // drops at least the closing brace
    }
  }

  // Bytes no protobuf parser accepts: a length-delimited field that claims 127
  // bytes with fewer left; never starts with '{'.
  void AppendGarbage(uint64_t seed) {
    uint64_t state = seed;
    const uint64_t length =
        kMinGarbageBytes + SplitMix(state) % (kMaxGarbageBytes - kMinGarbageBytes + 1);
    const uint64_t field = 1 + SplitMix(state) % 15;
    value_.push_back(static_cast<char>((field << 3) | 2));
    value_.push_back(static_cast<char>(0x7F));
    while (value_.size() < length) value_.push_back(static_cast<char>(SplitMix(state)));
  }

  void Render(const v1::Event& event, const JsonStyle& style) {
    if (options_.format == ProduceFormat::kProtobuf) {
      event.SerializeToString(&value_);
    } else {
      AppendEventJson(event, style, &value_);
    }
  }

  const ProduceOptions options_;
  const uint64_t customers_;
  const int64_t span_;
  Random random_;
  const ZipfSampler zipf_;
  u128 malformed_threshold_ = 0;
  u128 duplicate_threshold_ = 0;  // malformed + duplicate
  uint64_t multiplier_ = 1;
  uint64_t offset_ = 0;

  std::vector<uint8_t> seen_;             // per customer: a well-formed event was produced
  std::vector<uint32_t> history_slot_;    // per customer: 1 + index into histories_, or 0
  std::deque<History> histories_;         // only customers that bought or redeemed
  std::vector<v1::Event> recent_;         // ring of the last well-formed events
  size_t recent_next_ = 0;
  size_t recent_count_ = 0;
  std::priority_queue<FollowUp, std::vector<FollowUp>, std::greater<FollowUp>> follow_ups_;
  uint64_t unseen_cursor_;                // ranks below it may still be unseen

  v1::Event event_;
  std::string key_;
  std::string value_;
};

}  // namespace

void GenerateStream(const ProduceOptions& options,
                    const std::function<bool(std::string_view key, std::string_view value)>& sink) {
  if (options.events == 0) return;
  StreamGenerator generator(options);
  generator.Run(sink);
}

}  // namespace loyalty
