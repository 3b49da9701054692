#include "consumers/outbox.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/status_macros.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/ledger.h"

namespace loyalty {
namespace {

constexpr char kCursorName[] = "outbox_cursor";

}  // namespace

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Start(const OutboxOptions& options,
                                                      EventLog* log) {
  std::unique_ptr<Outbox> o(new Outbox());
  o->options_ = options;
  o->log_ = log;
  LOYALTY_ASSIGN_OR_RETURN(o->producer_, KafkaProducer::Create(options.brokers, options.config));
  auto stored = log->GetMeta(kCursorName);
  if (stored.ok()) {
    uint64_t cursor = 0;
    if (!absl::SimpleAtoi(*stored, &cursor)) return absl::DataLossError("bad outbox cursor");
    o->cursor_ = cursor;
  } else if (!absl::IsNotFound(stored.status())) {
    return stored.status();
  }
  o->thread_ = std::thread([raw = o.get()] { raw->Run(); });
  return o;
}

Outbox::~Outbox() { Stop(); }

void Outbox::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::Status Outbox::health() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

void Outbox::Run() {
  // The last record delivered to Kafka: past the cursor while the store refuses to
  // store the cursor (a storage fault, EventLog::write_fault).
  uint64_t delivered = cursor_;
  while (!stop_) {
    absl::Status s;
    if (delivered > cursor_) {
      // Only the cursor write is retried: publishing the chunk again every 500 ms
      // while the disk is full would send it again each time.
      s = log_->PutMeta(kCursorName, absl::StrCat(delivered));
    } else {
      const uint64_t head = log_->head().seq;
      if (cursor_ >= head) {
        log_->WaitForSeq(cursor_ + 1, absl::Milliseconds(200));
        continue;
      }
      const uint64_t to = std::min<uint64_t>(head, cursor_ + options_.chunk_records);
      s = PublishChunk(cursor_ + 1, to);
      if (s.ok()) {
        delivered = to;
        s = log_->PutMeta(kCursorName, absl::StrCat(to));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      error_ = s;
    }
    if (s.ok()) {
      cursor_ = delivered;
    } else {
      // Kafka or the store is failing: wait, then publish the same chunk again (or
      // store its cursor, if it was delivered).
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
}

absl::Status Outbox::PublishSignals(
    uint64_t seq, const google::protobuf::RepeatedPtrField<v1::Signal>& signals) {
  const std::string seq_text = absl::StrCat(seq);
  for (const v1::Signal& s : signals) {
    v1::Signal m = s;
    m.set_seq(seq);
    LOYALTY_RETURN_IF_ERROR(
        producer_->Send(options_.signals_topic, m.customer_id(), ToJson(m),
                        {{"loyalty-seq", seq_text}, {"content-type", "application/json"},
                         {"loyalty-signal", v1::SignalKind_Name(m.kind())}}));
  }
  return absl::OkStatus();
}

absl::Status Outbox::PublishChunk(uint64_t from, uint64_t to) {
  v1::LogRecord record;
  LOYALTY_RETURN_IF_ERROR(log_->Scan(
      from, to,
      [&](uint64_t seq, std::string_view, std::string_view bytes,
          std::string_view) -> absl::Status {
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::DataLossError(absl::StrCat("record ", seq, " does not decode"));
        }
        const std::string seq_text = absl::StrCat(seq);
        if (record.has_dead_letter()) {
          std::vector<std::pair<std::string, std::string>> headers = {
              {"loyalty-seq", seq_text},
              {"loyalty-reason", v1::DeadLetterReason_Name(record.dead_letter().reason())},
              {"loyalty-detail", record.dead_letter().detail()}};
          if (record.source().has_kafka()) {
            headers.emplace_back("loyalty-source-topic", record.source().kafka().topic());
            headers.emplace_back("loyalty-source-partition",
                                 absl::StrCat(record.source().kafka().partition()));
            headers.emplace_back("loyalty-source-offset",
                                 absl::StrCat(record.source().kafka().offset()));
          } else if (record.source().has_file()) {
            headers.emplace_back("loyalty-source-file", record.source().file().path());
            headers.emplace_back("loyalty-source-line", absl::StrCat(record.source().file().line()));
          }
          return producer_->Send(options_.dlq_topic, record.key(), record.raw(), headers);
        }
        if (record.has_sweep()) return PublishSignals(seq, record.sweep().signals());
        if (!record.has_applied()) return absl::OkStatus();
        v1::Event event;
        if (record.applied().has_event()) {
          event = record.applied().event();
        } else {
          LOYALTY_ASSIGN_OR_RETURN(event, DecodeEvent(record.raw(), v1::ENCODING_PROTOBUF));
        }
        const v1::Outcome& o = record.applied().outcome();
        v1::OutcomeMessage m;
        m.set_event_id(event.event_id());
        m.set_customer_id(event.customer_id());
        m.set_status(o.status());
        m.set_reason(o.reason());
        m.set_program_version(o.program_version());
        m.set_effective_at(o.effective_at());
        m.set_seq(seq);
        int64_t points = 0;
        for (const v1::LedgerEntry& e : o.entries()) {
          v1::LedgerEntry* copy = m.add_entries();
          *copy = e;
          copy->set_event_id(event.event_id());
          copy->set_seq(seq);
          if (e.customer_id() == event.customer_id()) points += SignedPoints(e);
        }
        m.set_points(points);
        *m.mutable_signals() = record.applied().signals();
        for (v1::Signal& signal : *m.mutable_signals()) signal.set_seq(seq);
        LOYALTY_RETURN_IF_ERROR(producer_->Send(
            options_.outcomes_topic, event.customer_id(), ToJson(m),
            {{"loyalty-seq", seq_text}, {"content-type", "application/json"}}));
        return PublishSignals(seq, record.applied().signals());
      }));
  return producer_->Flush(options_.delivery_timeout_ms);
}

}  // namespace loyalty
