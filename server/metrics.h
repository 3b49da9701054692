// A small thread-safe metrics registry rendered in the Prometheus text format:
// counters, gauges and latency histograms, each with fixed label values.
#ifndef LOYALTY_SERVER_METRICS_H_
#define LOYALTY_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"

namespace loyalty {

// Latency buckets in seconds (upper bounds), from 100 µs to 10 s.
inline constexpr std::array<double, 12> kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10};

class Histogram {
 public:
  void Observe(double seconds);
  // Appends the _bucket/_sum/_count lines for `name{labels}`.
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

class Metrics {
 public:
  // The metric `name` with `labels` (rendered as given, e.g. `route="balance"`).
  // The returned references stay valid for the registry's life.
  std::atomic<int64_t>& Counter(const std::string& name, const std::string& labels = "");
  std::atomic<int64_t>& Gauge(const std::string& name, const std::string& labels = "");
  Histogram& Latency(const std::string& name, const std::string& labels = "");
  // Help text shown once per metric name.
  void Describe(const std::string& name, const std::string& help);

  std::string RenderPrometheus() const;

 private:
  struct Key {
    std::string name, labels;
    bool operator<(const Key& o) const {
      return name != o.name ? name < o.name : labels < o.labels;
    }
  };
  mutable absl::Mutex mu_;
  std::map<Key, std::unique_ptr<std::atomic<int64_t>>> counters_ ABSL_GUARDED_BY(mu_);
  std::map<Key, std::unique_ptr<std::atomic<int64_t>>> gauges_ ABSL_GUARDED_BY(mu_);
  std::map<Key, std::unique_ptr<Histogram>> histograms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> help_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loyalty

#endif  // LOYALTY_SERVER_METRICS_H_
