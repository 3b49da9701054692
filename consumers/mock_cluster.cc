#include "consumers/mock_cluster.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"

namespace loyalty {

absl::StatusOr<std::unique_ptr<MockCluster>> MockCluster::Start(int brokers) {
  if (brokers < 1 || brokers > 16) {
    return absl::InvalidArgumentError("a mock cluster has 1 to 16 brokers");
  }
  std::unique_ptr<MockCluster> m(new MockCluster());
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The cluster lives inside a client handle; this one only hosts it.
  if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(err);
  }
  m->handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (m->handle_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create the mock cluster's host: ", err));
  }
  m->cluster_ = rd_kafka_mock_cluster_new(m->handle_, brokers);
  if (m->cluster_ == nullptr) return absl::InternalError("cannot start the mock cluster");
  return m;
}

MockCluster::~MockCluster() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

absl::Status MockCluster::CreateTopic(const std::string& topic, int partitions) {
  if (partitions < 1 || partitions > 1024) {
    return absl::InvalidArgumentError("a topic has 1 to 1024 partitions");
  }
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(
        absl::StrCat("creating topic ", topic, ": ", rd_kafka_err2str(err)));
  }
  return absl::OkStatus();
}

std::string MockCluster::bootstrap_servers() const {
  return rd_kafka_mock_cluster_bootstraps(cluster_);
}

}  // namespace loyalty
