// stdin -> memory -> kafka against librdkafka's mock cluster, beside a plain librdkafka producer
// loop with the same producer settings, in the same run. Usage:
//   sluice_kafka_bench SLUICE_BINARY [MESSAGES] [PARTITIONS...]
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kLineBytes = 200;

std::string line(long i) {
  char head[64];
  const int n = std::snprintf(head, sizeof head, "%012ld GET /api/v1/items?id=%ld HTTP/1.1 200 ", i,
                              i % 9973);
  std::string s(head, static_cast<std::size_t>(n));
  s.resize(kLineBytes - 1, 'x');
  return s;
}

void set(rd_kafka_conf_t* conf, const char* k, const char* v) {
  char err[256];
  if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "%s: %s\n", k, err);
    std::exit(1);
  }
}

double plain_producer(const std::string& bootstraps, const std::string& topic, long n) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstraps.c_str());
  set(conf, "compression.codec", "zstd");
  set(conf, "enable.idempotence", "true");
  set(conf, "linger.ms", "5");
  set(conf, "log_level", "0");
  char err[256];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  std::vector<std::string> values;
  values.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) values.push_back(line(i));  // built before the clock starts
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    const std::string& v = values[static_cast<std::size_t>(i)];
    while (rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                             RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    if (i % 1000 == 0) rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 60'000);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return wall;
}

struct Run {
  double wall, cpu, rss_mb;
  int code;
};

// Messages appended to `topic`: the sum of the partitions' high watermarks, asked of the cluster.
long count_messages(const std::string& bootstraps, const std::string& topic, int partitions) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstraps.c_str());
  set(conf, "log_level", "0");
  char err[256];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  long total = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, 10'000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      total += static_cast<long>(hi);  // every message ever appended (the mock trims old segments)
    }
  }
  rd_kafka_destroy(rk);
  return total;
}

Run run_sluice(const std::string& binary, const std::string& conf, const std::string& input,
               const std::string& err) {
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    const int in = open(input.c_str(), O_RDONLY);
    const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int out = open("/dev/null", O_WRONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(e, 2);
    execl(binary.c_str(), binary.c_str(), "run", "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  Run r;
  r.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
          static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  r.rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SLUICE_BINARY [MESSAGES] [PARTITIONS...]\n", argv[0]);
    return 2;
  }
  const std::string binary = argv[1];
  const long n = argc > 2 ? std::atol(argv[2]) : 1'000'000;
  std::vector<int> partitions;
  for (int i = 3; i < argc; ++i) partitions.push_back(std::atoi(argv[i]));
  if (partitions.empty()) partitions = {1, 8};

  char tmpl[] = "/tmp/sluice-kafka-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string input = dir + "/input.log";
  {
    std::ofstream f(input);
    for (long i = 0; i < n; ++i) f << line(i) << '\n';
  }
  std::printf(
      "%ld messages of %d bytes (%.1f MB), mock cluster with 1 broker, zstd, idempotent, linger "
      "5ms\n",
      n, kLineBytes, n * kLineBytes / 1e6);
  std::printf("%-12s%-34s%10s%14s%9s%9s%13s\n", "partitions", "producer", "wall s", "events/s",
              "MB/s", "CPU s", "peak RSS MB");
  for (int p : partitions) {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set(conf, "log_level", "0");
    rd_kafka_t* keeper = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(keeper, 1);
    const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "plain", p, 1);
    rd_kafka_mock_topic_create(mc, "sluice", p, 1);

    // Best of SLUICE_BENCH_RUNS (default 3) runs, for both; bench/run_all.py asks for 1 run a
    // call and takes the median of its own calls, as for every other row.
    const char* runs_env = std::getenv("SLUICE_BENCH_RUNS");
    const int kRuns = runs_env != nullptr && std::atoi(runs_env) > 0 ? std::atoi(runs_env) : 3;
    double plain = 1e9;
    for (int i = 0; i < kRuns; ++i) plain = std::min(plain, plain_producer(bootstraps, "plain", n));
    std::printf("%-12d%-34s%10.3f%14.0f%9.1f%9s%13s\n", p, "librdkafka producer loop", plain,
                n / plain, n * kLineBytes / 1e6 / plain, "-", "-");

    const std::string conf_path = dir + "/sluice.toml";
    {
      std::ofstream f(conf_path);
      f << "[agent]\ndata_dir = \"" << dir
        << "/data\"\nadmin = \"127.0.0.1:0\"\nshutdown_timeout = \"120s\"\n"
        << "[sources.in]\ntype = \"stdin\"\nchannel = \"buf\"\n"
        << "[channels.buf]\ntype = \"memory\"\nmax_events = 200000\ntransaction_events = 10000\n"
        << "[sinks.k]\ntype = \"kafka\"\nchannel = \"buf\"\nbrokers = \"" << bootstraps
        << "\"\ntopic = \"sluice\"\n"
        << "id_header = \"\"\nmax_in_flight = 8\nbatch_events = 10000\n";
    }
    Run r{1e9, 0, 0, 0};
    long expected = 0;
    for (int i = 0; i < kRuns; ++i) {
      const Run one = run_sluice(binary, conf_path, input, dir + "/stderr");
      expected += n;
      if (one.code != 0) {
        r = one;
        break;
      }
      if (one.wall < r.wall) r = one;
    }
    std::ifstream log(dir + "/stderr");
    std::stringstream ss;
    ss << log.rdbuf();
    const bool all =
        ss.str().find("source in: " + std::to_string(n) + " events") != std::string::npos;
    const long in_topic = count_messages(bootstraps, "sluice", p);
    if (in_topic != expected) {
      std::fprintf(stderr, "the topic holds %ld messages, expected %ld\n", in_topic, expected);
      return 1;
    }
    if (r.code != 0 || !all) {
      std::fprintf(stderr, "sluice failed (exit %d):\n%s\n", r.code, ss.str().c_str());
      return 1;
    }
    std::printf("%-12d%-34s%10.3f%14.0f%9.1f%9.3f%13.1f   (%.0f%% of the plain producer)\n", p,
                "sluice stdin->memory->kafka", r.wall, n / r.wall, n * kLineBytes / 1e6 / r.wall,
                r.cpu, r.rss_mb, 100.0 * plain / r.wall);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(keeper);
  }
  std::system(("rm -rf " + dir).c_str());
  return 0;
}
