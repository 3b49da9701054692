#include "consumers/kafka_config.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace loyalty {
namespace {

// Each property librdkafka documents, by name, with its "C/P" column: "C" the
// consumer's, "P" the producer's, "*" both. From the property tables librdkafka
// prints at run time (CONFIGURATION.md is the same text), global and topic.
const absl::flat_hash_map<std::string, char>& PropertyScopes() {
  static const auto* scopes = [] {
    auto* m = new absl::flat_hash_map<std::string, char>();
    char* text = nullptr;
    size_t size = 0;
    FILE* out = open_memstream(&text, &size);
    if (out == nullptr) return m;
    rd_kafka_conf_properties_show(out);
    fclose(out);
    for (absl::string_view line : absl::StrSplit(absl::string_view(text, size), '\n')) {
      std::vector<absl::string_view> cols = absl::StrSplit(line, absl::MaxSplits('|', 2));
      if (cols.size() < 3) continue;
      const absl::string_view name = absl::StripAsciiWhitespace(cols[0]);
      const absl::string_view scope = absl::StripAsciiWhitespace(cols[1]);
      if (name.empty() || scope.size() != 1) continue;
      if (scope[0] == 'C' || scope[0] == 'P' || scope[0] == '*') {
        m->emplace(std::string(name), scope[0]);
      }
    }
    free(text);
    return m;
  }();
  return *scopes;
}

}  // namespace

KafkaConfig ConfigFor(KafkaClient client, const KafkaConfig& config) {
  const char other = client == KafkaClient::kConsumer ? 'P' : 'C';
  KafkaConfig out;
  for (const auto& [key, value] : config) {
    auto it = PropertyScopes().find(key);
    if (it != PropertyScopes().end() && it->second == other) continue;
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace loyalty
