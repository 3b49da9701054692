// librdkafka properties given once (`serve --kafka-config`) to both the consumer
// and the outbox's producer. librdkafka marks each property as the consumer's, the
// producer's or both; given to the other kind of client, a property is ignored
// with a CONFWARN line on stderr at start. So each client takes only those that
// apply to it.
#ifndef LOYALTY_CONSUMERS_KAFKA_CONFIG_H_
#define LOYALTY_CONSUMERS_KAFKA_CONFIG_H_

#include <string>
#include <utility>
#include <vector>

namespace loyalty {

enum class KafkaClient { kConsumer, kProducer };

using KafkaConfig = std::vector<std::pair<std::string, std::string>>;

// The properties of `config` that apply to a client of kind `client`, in order: all
// but those librdkafka documents (rd_kafka_conf_properties_show) as the other
// kind's alone. A name librdkafka does not know is kept, so that setting it fails
// with librdkafka's own message.
KafkaConfig ConfigFor(KafkaClient client, const KafkaConfig& config);

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_KAFKA_CONFIG_H_
