#include "server/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loyalty {

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::Render(const std::string& name, const std::string& labels,
                       std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"",
                    absl::StrFormat("%g", kLatencyBuckets[i]), "\"} ", cumulative, "\n");
  }
  cumulative += buckets_[kLatencyBuckets.size()].load(std::memory_order_relaxed);
  absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"+Inf\"} ", cumulative, "\n");
  const std::string braces = labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ",
                  absl::StrFormat("%.6f", sum_micros_.load(std::memory_order_relaxed) / 1e6), "\n");
  absl::StrAppend(out, name, "_count", braces, " ", count_.load(std::memory_order_relaxed), "\n");
}

std::atomic<int64_t>& Metrics::Counter(const std::string& name, const std::string& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = counters_[Key{name, labels}];
  if (slot == nullptr) slot = std::make_unique<std::atomic<int64_t>>(0);
  return *slot;
}

std::atomic<int64_t>& Metrics::Gauge(const std::string& name, const std::string& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = gauges_[Key{name, labels}];
  if (slot == nullptr) slot = std::make_unique<std::atomic<int64_t>>(0);
  return *slot;
}

Histogram& Metrics::Latency(const std::string& name, const std::string& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = histograms_[Key{name, labels}];
  if (slot == nullptr) slot = std::make_unique<Histogram>();
  return *slot;
}

void Metrics::Describe(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  help_[name] = help;
}

std::string Metrics::RenderPrometheus() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  auto header = [&](const std::string& name, const char* type, std::string* last) {
    if (*last == name) return;
    *last = name;
    auto it = help_.find(name);
    if (it != help_.end()) absl::StrAppend(&out, "# HELP ", name, " ", it->second, "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", type, "\n");
  };
  std::string last;
  for (const auto& [key, value] : counters_) {
    header(key.name, "counter", &last);
    absl::StrAppend(&out, key.name, key.labels.empty() ? "" : absl::StrCat("{", key.labels, "}"),
                    " ", value->load(), "\n");
  }
  for (const auto& [key, value] : gauges_) {
    header(key.name, "gauge", &last);
    absl::StrAppend(&out, key.name, key.labels.empty() ? "" : absl::StrCat("{", key.labels, "}"),
                    " ", value->load(), "\n");
  }
  for (const auto& [key, histogram] : histograms_) {
    header(key.name, "histogram", &last);
    histogram->Render(key.name, key.labels, &out);
  }
  return out;
}

}  // namespace loyalty
