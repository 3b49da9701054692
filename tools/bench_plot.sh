#!/bin/sh
# Plots of docs/benchmarks.md from `loyalty bench --plot-data DIR` (gnuplot-nox;
# tools/bench_setup.sh installs it). usage: tools/bench_plot.sh DIR OUT_DIR
set -eu
data=$1
out=$2
mkdir -p "$out"
plot_lines() {  # title file... : "file|label" pairs for gnuplot
  sep=""
  for pair in "$@"; do
    f=${pair%%|*}
    label=${pair#*|}
    [ -s "$data/$f" ] || continue
    printf '%s"%s/%s" using %s with lines lw 2 title "%s"' "$sep" "$data" "$f" "$USING" "$label"
    sep=", "
  done
}
# Throughput: a 5 s moving average of the 0.5 s samples (a batch takes ~0.2-0.8 s,
# so single samples are mostly 0 or one batch).
smooth=$(mktemp -d)
trap 'rm -rf "$smooth"' EXIT
for f in "$data"/*.throughput.csv; do
  [ -s "$f" ] || continue
  awk '{t[NR]=$1; r[NR]=$2} END {for (i=1;i<=NR;i++) {s=0;n=0; for (j=i-5;j<=i+5;j++) if (j>=1&&j<=NR) {s+=r[j];n++}; print t[i], s/n}}' \
    "$f" > "$smooth/$(basename "$f")"
done
throughput_data=$smooth
USING='1:($2/1000)'
data_saved=$data
data=$throughput_data
gnuplot <<GP
set terminal pngcairo size 900,500
set output "$out/bench-throughput.png"
set title "Throughput over time (events/s, 5 s moving average; 2 shared cores)"
set xlabel "seconds since start"
set ylabel "thousand events/s"
set key outside right
set grid
plot $(plot_lines \
  "ingest-file.throughput.csv|file ingest (JSON lines)" \
  "ingest-kafka-mock-protobuf.throughput.csv|Kafka mock, protobuf" \
  "ingest-kafka-mock-json.throughput.csv|Kafka mock, JSON" \
  "ingest-kafka-broker-protobuf.throughput.csv|Kafka broker, protobuf" \
  "postgres.throughput.csv|PostgreSQL peer")
GP
data=$data_saved
USING='1:2'
gnuplot <<GP
set terminal pngcairo size 900,500
set output "$out/bench-batch-latency.png"
set title "Batch latency (one WriteBatch + WAL fsync; PostgreSQL: one transaction of 1000)"
set xlabel "latency (ms, log scale)"
set ylabel "fraction of batches"
set logscale x
set key bottom right
set grid
set yrange [0:1]
plot $(plot_lines \
  "ingest-file.batch_latency_cdf.csv|file ingest, 16384/batch" \
  "ingest-kafka-mock-protobuf.batch_latency_cdf.csv|Kafka mock protobuf" \
  "ingest-kafka-mock-json.batch_latency_cdf.csv|Kafka mock JSON" \
  "ingest-kafka-broker-protobuf.batch_latency_cdf.csv|Kafka broker protobuf" \
  "postgres.batch_latency_cdf.csv|PostgreSQL, 1000/batch")
GP
gnuplot <<GP
set terminal pngcairo size 900,500
set output "$out/bench-query-latency.png"
set title "Query latency distribution (balance)"
set xlabel "latency (ms, log scale)"
set ylabel "fraction of requests"
set logscale x
set key bottom right
set grid
set yrange [0:1]
plot $(plot_lines \
  "query.http_balance_c16_latency_cdf.csv|HTTP, 16 clients, idle" \
  "query.grpc_balance_c16_latency_cdf.csv|gRPC, 16 clients, idle" \
  "query.ingesting_http_balance_c16_latency_cdf.csv|HTTP, 16 clients, ingesting" \
  "query.ingesting_http_balance_paced10000_latency_cdf.csv|HTTP paced 10k QPS, ingesting" \
  "query.idle_http_balance_paced10000_latency_cdf.csv|HTTP paced 10k QPS, idle")
GP
echo "plots in $out"
