// CPU priorities for the engine's threads: on two cores, ingestion at full speed
// takes both, and queries wait behind it for a time slice. Ingestion's threads
// (the ingesting thread and the helpers it starts, RocksDB's flushes and
// compactions) can run at a lower priority, so that a query's thread runs as soon
// as it wakes: `loyalty serve --ingest-nice` (docs/operations.md). `loyalty bench
// query --ingest-nice` measures it (docs/benchmarks.md, run W).
#ifndef LOYALTY_ENGINE_CPU_PRIORITY_H_
#define LOYALTY_ENGINE_CPU_PRIORITY_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace rocksdb {
class Env;
}

namespace loyalty {

// Sets the calling thread's nice value (0, the default, to 19, the lowest
// priority). Threads it starts afterwards inherit it (Linux keeps it per thread).
absl::Status SetThreadNice(int nice);

// Asks the scheduler for time slices of `slice` for the calling thread (Linux 6.12
// and later, EEVDF: a thread with a shorter slice than the one running preempts it
// when it wakes; the kernel clamps it to 0.1-100 ms; the default grows with the
// number of cores, 1.4 ms on a 2-core machine). Earlier kernels take the call and
// ignore the slice. Keeps the thread's nice value; the policy becomes SCHED_OTHER
// (the engine's threads have no other).
absl::Status SetThreadSlice(absl::Duration slice);

// Runs RocksDB's background threads of `env` (flushes and compactions, both
// pools) at the lowest CPU priority (nice 19).
absl::Status LowerBackgroundPriority(rocksdb::Env* env);

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_CPU_PRIORITY_H_
