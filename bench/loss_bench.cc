// Contrastive-loss memory and time at large global batches, in one process:
// clipscale's TiledClipLoss (LocalCommunicator, so n = N) against the naive
// full-matrix loss, OpenCLIP's ClipLoss (venv Python, bench/py/loss_bench.py)
// and this machine's fp32 matmul throughput, all measured in the same run.
//
//   loss_bench [--sizes 8192,16384,32768] [--dim 512] [--tile 1024] [--repeats 1]
//              [--no-naive] [--no-openclip] [--siglip]
//
// Memory: before each forward+backward, freed heap goes back to the OS
// (malloc_trim) and VmHWM is reset through /proc/self/clear_refs; "extra" is
// VmHWM after minus VmRSS before, the inputs already existing. Time: against
// the seconds the best measured matmul rate needs for the loss's FLOPs, 6·N²·d
// at least (S = 2N²d forward, ∂X and ∂Y 4N²d backward) and 8·N²·d for the
// tiled loss, which recomputes S in its backward pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <malloc.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "distributed/contrastive_loss.h"
#include "distributed/local_communicator.h"

namespace clipscale {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
// Until a size has been measured: bytes per logit of a full-matrix loss, about
// ten live fp32 N×N matrices. Afterwards the measured value of the largest N.
constexpr double kPriorBytesPerLogit = 40;
// Use at most this share of MemAvailable: the machine is shared, and others' use grows.
constexpr double kMemoryHeadroom = 0.75;
constexpr double kTimeTarget = 1.3, kMemoryTargetPercent = 1.0;

struct Options {
  std::vector<int64_t> sizes = {8192, 16384, 32768};
  int64_t dim = 512;
  int64_t tile = kDefaultLossTile;
  int repeats = 1;
  bool naive = true, openclip = true, siglip = false;
};

bool ParsePositive(const std::string& text, int64_t* out) {
  return absl::SimpleAtoi(text, out) && *out > 0;
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const std::string value = i + 1 < argc ? argv[i + 1] : "";
    int64_t repeats = 0;
    bool ok = true;
    if (flag == "--no-naive") {
      o.naive = false;
      continue;
    } else if (flag == "--no-openclip") {
      o.openclip = false;
      continue;
    } else if (flag == "--siglip") {
      o.siglip = true;
      continue;
    } else if (flag == "--sizes") {
      o.sizes.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        ok = ok && ParsePositive(std::string(s), &o.sizes.emplace_back());
      }
    } else if (flag == "--dim") {
      ok = ParsePositive(value, &o.dim);
    } else if (flag == "--tile") {
      ok = ParsePositive(value, &o.tile);
    } else if (flag == "--repeats") {
      ok = ParsePositive(value, &repeats);
      o.repeats = static_cast<int>(repeats);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag));
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad value for ", flag, ": ", value));
    ++i;
  }
  return o;
}

// A "kB" line of a /proc file ("VmRSS" of /proc/self/status, ...), in bytes.
int64_t ProcBytes(const char* file, const std::string& field) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
      return std::stoll(line.substr(field.size() + 1)) * 1024;
    }
  }
  CS_CHECK_MSG(false, field, " not in ", file);
  return 0;
}
int64_t RssBytes() { return ProcBytes("/proc/self/status", "VmRSS"); }

bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  return static_cast<bool>(out << "5" << std::flush);
}

// Peak RSS since construction: VmHWM after a clear_refs reset, or, where
// clear_refs is not writable, VmRSS polled every millisecond by a thread.
class PeakRss {
 public:
  explicit PeakRss(bool exact) : exact_(exact && ResetPeakRss()), peak_(RssBytes()) {
    if (!exact_) {
      sampler_ = std::thread([this] {
        while (!stop_.load()) {
          peak_.store(std::max(peak_.load(), RssBytes()));
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      });
    }
  }
  int64_t Stop() {
    if (exact_) return ProcBytes("/proc/self/status", "VmHWM");
    stop_ = true;
    sampler_.join();
    return std::max(peak_.load(), RssBytes());
  }

 private:
  bool exact_;
  std::atomic<int64_t> peak_;
  std::atomic<bool> stop_{false};
  std::thread sampler_;
};

struct Inputs {
  at::Tensor image, text, log_scale, bias;  // leaves requiring grad
};

Inputs MakeInputs(int64_t n, int64_t dim) {
  auto unit = [&] {
    at::Tensor x = at::randn({n, dim});
    return (x / x.norm(2, {1}, true)).requires_grad_();
  };
  return {unit(), unit(), at::full({}, std::log(1 / 0.07)).requires_grad_(),
          at::full({}, -10.0).requires_grad_()};
}

using LossFn = std::function<at::Tensor(const Inputs&)>;

// train/metrics.h ClipLoss, spelled out so that the bench links only clipscale_distributed.
at::Tensor NaiveClipLoss(const Inputs& in) {
  const at::Tensor logits = in.log_scale.exp() * at::mm(in.image, in.text.t());
  const at::Tensor labels = at::arange(logits.size(0), logits.options().dtype(at::kLong));
  return 0.5 *
         (at::cross_entropy_loss(logits, labels) + at::cross_entropy_loss(logits.t(), labels));
}

// OpenCLIP's SigLipLoss in one process: −Σ log σ(z·ℓ) / N, z = 2I − 1.
at::Tensor NaiveSigLipLoss(const Inputs& in) {
  const at::Tensor logits = in.log_scale.exp() * at::mm(in.image, in.text.t()) + in.bias;
  const at::Tensor z = 2 * at::eye(logits.size(0), logits.options()) - 1;
  return -at::log_sigmoid(z * logits).sum() / static_cast<double>(logits.size(0));
}

struct Variant {
  std::string name;
  std::string family;  // "clip" or "siglip"
  enum Kind { kTiled, kNaive, kOpenClip } kind;
  LossFn fn;  // empty for OpenCLIP (measured by the Python script)
};

struct Sample {
  double seconds = 0;
  int64_t extra_bytes = 0;
};

void ClearGrads(const Inputs& in) {
  for (const at::Tensor& t : {in.image, in.text, in.log_scale, in.bias}) t.mutable_grad().reset();
}

// Median seconds and largest extra peak RSS of `repeats` forward+backward passes.
Sample Measure(const LossFn& fn, const Inputs& in, int repeats, bool exact_peak) {
  std::vector<double> times;
  int64_t extra = 0;
  for (int r = 0; r < repeats; ++r) {
    malloc_trim(0);
    PeakRss peak(exact_peak);
    const int64_t before = RssBytes();
    const auto start = std::chrono::steady_clock::now();
    fn(in).backward();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    extra = std::max(extra, peak.Stop() - before);
    ClearGrads(in);
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], extra};
}

// Best of three batches of calls, each batch running at least 0.3 s.
double Gflops(const std::function<void()>& mm, double flops) {
  mm();
  double best = 0;
  for (int batch = 0; batch < 3; ++batch) {
    const auto start = std::chrono::steady_clock::now();
    int calls = 0;
    double elapsed = 0;
    do {
      mm();
      ++calls;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < 0.3);
    best = std::max(best, flops * calls / elapsed / 1e9);
  }
  return best;
}

// GFLOP/s of the products the tiled loss runs (S tile, ∂X and ∂Y addmm_),
// of one [T,d]·[d,N] row block and of one big [N,d]·[d,B] block.
std::vector<std::pair<std::string, double>> MatmulRates(int64_t n, int64_t d, int64_t tile) {
  const int64_t t = std::min(tile, n), b = std::min<int64_t>(n, 2048);
  const at::Tensor a = at::randn({t, d}), c = at::randn({t, d}), g = at::randn({t, t});
  const at::Tensor y = at::randn({n, d}), big = at::randn({b, d});
  at::Tensor out = at::zeros({t, d});
  const double tile_flops = 2.0 * t * t * d;
  std::vector<std::pair<std::string, double>> rates;
  auto add = [&](std::string shape, double flops, const std::function<void()>& mm) {
    rates.emplace_back(std::move(shape), Gflops(mm, flops));
  };
  add(absl::StrCat("S tile [", t, ",", d, "]x[", d, ",", t, "]"), tile_flops,
      [&] { (void)at::mm(a, c.t()); });
  add(absl::StrCat("dX tile addmm [", t, ",", t, "]x[", t, ",", d, "]"), tile_flops,
      [&] { out.addmm_(g, c); });
  add(absl::StrCat("dY tile addmm [", t, ",", t, "]^T x[", t, ",", d, "]"), tile_flops,
      [&] { out.addmm_(g.t(), a); });
  add(absl::StrCat("row block [", t, ",", d, "]x[", d, ",", n, "]"), 2.0 * t * n * d,
      [&] { (void)at::mm(a, y.t()); });
  add(absl::StrCat("big [", n, ",", d, "]x[", d, ",", b, "]"), 2.0 * n * b * d,
      [&] { (void)at::mm(y, big.t()); });
  return rates;
}

std::optional<nlohmann::json> RunOpenClip(const Options& o, int threads) {
  std::string sizes;
  for (int64_t n : o.sizes) absl::StrAppend(&sizes, sizes.empty() ? "" : ",", n);
  const std::string command = absl::StrCat(
      CLIPSCALE_BENCH_PYTHON, " ", CLIPSCALE_BENCH_SCRIPT, " --sizes ", sizes, " --dim ", o.dim,
      " --threads ", threads, " --repeats ", o.repeats, o.siglip ? " --siglip" : "");
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t got;
  while (pipe && (got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, got);
  if (pipe == nullptr || pclose(pipe) != 0) return std::nullopt;
  return nlohmann::json::parse(out);
}

void CheckAgreement(const Variant& tiled, const Variant& naive, const Inputs& in) {
  auto run = [&](const LossFn& fn) {
    const at::Tensor loss = fn(in);
    loss.backward();
    std::vector<at::Tensor> out = {loss.detach(), in.image.grad().clone(), in.text.grad().clone(),
                                   in.log_scale.grad().clone()};
    ClearGrads(in);
    return out;
  };
  const std::vector<at::Tensor> a = run(tiled.fn), b = run(naive.fn);
  auto rel = [](const at::Tensor& x, const at::Tensor& y) {
    return ((x - y).abs().max() / y.abs().max()).item<double>();
  };
  const double loss_rel = rel(a[0], b[0]);
  std::printf(
      "check N=%ld: %s loss %.8f, %s loss %.8f, relative difference %.2e (%s 1e-5); "
      "max |grad diff| / max |grad|: image %.2e, text %.2e; d/dlogit_scale %.8f vs %.8f\n",
      in.image.size(0), tiled.name.c_str(), a[0].item<double>(), naive.name.c_str(),
      b[0].item<double>(), loss_rel, loss_rel <= 1e-5 ? "within" : "EXCEEDS", rel(a[1], b[1]),
      rel(a[2], b[2]), a[3].item<double>(), b[3].item<double>());
}

std::vector<Variant> MakeVariants(const Options& o, Communicator* comm) {
  const int64_t tile = o.tile;
  std::vector<Variant> v;
  v.push_back({"clipscale TiledClipLoss", "clip", Variant::kTiled, [=](const Inputs& in) {
                 return TiledClipLoss(in.image, in.text, in.log_scale, comm, tile);
               }});
  if (o.naive) v.push_back({"naive full-matrix CLIP", "clip", Variant::kNaive, NaiveClipLoss});
  if (o.openclip) v.push_back({"openclip ClipLoss", "clip", Variant::kOpenClip, nullptr});
  if (!o.siglip) return v;
  v.push_back({"clipscale TiledSigLipLoss", "siglip", Variant::kTiled, [=](const Inputs& in) {
                 return TiledSigLipLoss(in.image, in.text, in.log_scale, in.bias, comm, tile);
               }});
  if (o.naive)
    v.push_back({"naive full-matrix SigLIP", "siglip", Variant::kNaive, NaiveSigLipLoss});
  if (o.openclip) v.push_back({"openclip SigLipLoss", "siglip", Variant::kOpenClip, nullptr});
  return v;
}

// Keeps the full-matrix losses from running the machine out of memory: their
// need is bytes-per-logit (measured at the largest N so far) times N².
class MemoryGuard {
 public:
  std::string WhyNot(const std::string& name, int64_t n) const {
    const double need = BytesPerLogit(name) * n * n;
    const double avail = ProcBytes("/proc/meminfo", "MemAvailable");
    if (need <= kMemoryHeadroom * avail) return "";
    char reason[200];
    std::snprintf(reason, sizeof(reason),
                  "needs ~%.1f GiB (%.1f B per logit), more than %.0f%% of MemAvailable %.1f GiB",
                  need / 1024 / kMiB, BytesPerLogit(name), 100 * kMemoryHeadroom,
                  avail / 1024 / kMiB);
    return reason;
  }
  void Record(const std::string& name, int64_t n, int64_t extra_bytes) {
    measured_[name] = {n, static_cast<double>(extra_bytes) / n / n};
  }
  // Extra bytes at N extrapolated from the largest measured N, which it names.
  std::optional<std::pair<double, int64_t>> Extrapolate(const std::string& name, int64_t n) const {
    auto it = measured_.find(name);
    if (it == measured_.end()) return std::nullopt;
    return std::make_pair(it->second.second * n * n, it->second.first);
  }

 private:
  double BytesPerLogit(const std::string& name) const {
    auto it = measured_.find(name);
    return it == measured_.end() ? kPriorBytesPerLogit : it->second.second;
  }
  std::map<std::string, std::pair<int64_t, double>> measured_;  // name → (N, bytes per logit)
};

struct Row {
  const Variant* variant;
  std::optional<Sample> sample;
  std::string skipped;  // why, when there is no sample
};

Row OpenClipRow(const Variant& v, const nlohmann::json& python, int64_t n) {
  for (const auto& r : python["results"]) {
    if (r["n"] != n || r["variant"] != v.name) continue;
    if (r.contains("skipped")) return {&v, std::nullopt, r["skipped"].get<std::string>()};
    return {&v, Sample{r["seconds"].get<double>(), r["extra_bytes"].get<int64_t>()}, ""};
  }
  return {&v, std::nullopt, "not in the Python results"};
}

std::string Fixed(double value, const char* format) {
  char text[32];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

struct Reference {
  double gflops;     // best matmul rate measured for this N
  double seconds_6;  // 6·N²·d FLOPs at that rate
  double seconds_8;  // 8·N²·d
};

// The naive loss's extra memory and time at N, for the percent and t/naive
// columns; extrapolated as N² (memory only) when it was skipped.
struct NaiveBaseline {
  std::optional<double> bytes, seconds;
  std::string note;  // set when `bytes` is extrapolated
};

NaiveBaseline FindNaive(const std::vector<Row>& rows, const std::string& family, int64_t n,
                        const MemoryGuard& guard) {
  NaiveBaseline base;
  for (const Row& r : rows) {
    if (r.variant->family != family || r.variant->kind != Variant::kNaive) continue;
    if (r.sample) {
      base.bytes = r.sample->extra_bytes;
      base.seconds = r.sample->seconds;
    } else if (auto e = guard.Extrapolate(r.variant->name, n)) {
      base.bytes = e->first;
      base.note = absl::StrCat("~ : against the ", r.variant->name,
                               " extra memory extrapolated as N^2 from N=", e->second, ": ",
                               Fixed(e->first / kMiB, "%.0f"), " MiB");
    }
  }
  return base;
}

void PrintRows(const std::vector<Row>& rows, const std::string& family, int64_t n, int64_t dim,
               const Reference& ref, const MemoryGuard& guard) {
  const NaiveBaseline naive = FindNaive(rows, family, n, guard);
  const char* mark = naive.note.empty() ? "" : "~";
  std::vector<std::string> targets;
  for (const Row& r : rows) {
    if (r.variant->family != family) continue;
    std::printf("  %-26s", r.variant->name.c_str());
    if (!r.sample) {
      std::printf(" skipped: %s\n", r.skipped.c_str());
      continue;
    }
    const Sample& s = *r.sample;
    const double pct = naive.bytes ? 100.0 * s.extra_bytes / *naive.bytes : NAN;
    const std::string pct_text = naive.bytes ? Fixed(pct, "%.2f%%") + mark : "-";
    const std::string t_naive = naive.seconds ? Fixed(s.seconds / *naive.seconds, "%.2f") : "-";
    const double r6 = s.seconds / ref.seconds_6, r8 = s.seconds / ref.seconds_8;
    std::printf(" %9.2f %10.1f %8.2f %8.1f %11s %8s %11.2f %11.2f\n", s.seconds,
                s.extra_bytes / kMiB, s.extra_bytes / (4.0 * n * n),
                s.extra_bytes / (4.0 * n * dim), pct_text.c_str(), t_naive.c_str(), r6, r8);
    if (r.variant->kind != Variant::kTiled) continue;
    auto verdict = [](bool met) { return met ? "met" : "MISSED"; };
    targets.push_back(absl::StrCat(
        "target ", r.variant->name, " at N=", n, ": extra memory ", pct_text, " of naive (<= ",
        kMemoryTargetPercent, "%: ", naive.bytes ? verdict(pct <= kMemoryTargetPercent) : "n/a",
        "); time ", Fixed(r6, "%.2f"), "x matmul time of 6N^2d (<= ", kTimeTarget,
        "x: ", verdict(r6 <= kTimeTarget), "), ", Fixed(r8, "%.2f"),
        "x that of 8N^2d, the FLOPs it runs (<= ", kTimeTarget, "x: ", verdict(r8 <= kTimeTarget),
        ")"));
  }
  if (!naive.note.empty()) std::printf("     %s\n", naive.note.c_str());
  for (const std::string& line : targets) std::printf("  %s\n", line.c_str());
}

Reference PrintMatmulRates(int64_t n, const Options& o) {
  const auto rates = MatmulRates(n, o.dim, o.tile);
  Reference ref{0, 0, 0};
  std::printf("  matmul GFLOP/s:");
  for (const auto& [shape, gflops] : rates) {
    std::printf(" %s %.1f;", shape.c_str(), gflops);
    ref.gflops = std::max(ref.gflops, gflops);
  }
  const double n2d = static_cast<double>(n) * n * o.dim;
  ref.seconds_6 = 6 * n2d / (ref.gflops * 1e9);
  ref.seconds_8 = 8 * n2d / (ref.gflops * 1e9);
  std::printf(
      "\n  reference: the best, %.1f GFLOP/s -> 6*N^2*d = %.1f GFLOP in %.2f s, "
      "8*N^2*d = %.1f GFLOP in %.2f s\n",
      ref.gflops, 6 * n2d / 1e9, ref.seconds_6, 8 * n2d / 1e9, ref.seconds_8);
  return ref;
}

void BenchSize(int64_t n, const Options& o, const std::vector<Variant>& variants,
               const nlohmann::json& python, bool exact_peak, MemoryGuard* guard) {
  std::printf(
      "\nN = %ld, d = %ld, tile %ld; input gradients alone (2*N*d*4 B): %.1f MiB, "
      "one N*N fp32 matrix: %.1f MiB\n",
      n, o.dim, o.tile, 8.0 * n * o.dim / kMiB, 4.0 * n * n / kMiB);
  const Reference ref = PrintMatmulRates(n, o);
  const Inputs in = MakeInputs(n, o.dim);
  std::vector<Row> rows;
  for (const Variant& v : variants) {
    if (v.kind == Variant::kOpenClip) {
      rows.push_back(OpenClipRow(v, python, n));
      continue;
    }
    const std::string why_not = v.kind == Variant::kNaive ? guard->WhyNot(v.name, n) : "";
    if (!why_not.empty()) {
      rows.push_back({&v, std::nullopt, why_not});
      continue;
    }
    rows.push_back({&v, Measure(v.fn, in, o.repeats, exact_peak), ""});
    if (v.kind == Variant::kNaive) guard->Record(v.name, n, rows.back().sample->extra_bytes);
  }
  std::printf("  %-26s %9s %10s %8s %8s %11s %8s %11s %11s\n", "variant", "seconds", "extra MiB",
              "x N^2*4B", "x N*d*4B", "% naive mem", "t/naive", "t/mm(6N2d)", "t/mm(8N2d)");
  PrintRows(rows, "clip", n, o.dim, ref, *guard);
  if (o.siglip) PrintRows(rows, "siglip", n, o.dim, ref, *guard);
}

// One untimed pass of every variant at a small N: thread pools, MKL and the
// allocator's first growth would otherwise land on the first measurement.
void WarmUp(const Options& o, const std::vector<Variant>& variants) {
  const Inputs in = MakeInputs(std::min<int64_t>(o.tile, 1024), o.dim);
  for (const Variant& v : variants) {
    if (v.fn) {
      v.fn(in).backward();
      ClearGrads(in);
    }
  }
}

// The tiled and the full-matrix loss agree at the smallest size.
void CheckAgreements(const Options& o, const std::vector<Variant>& variants,
                     const MemoryGuard& guard) {
  const int64_t n = *std::min_element(o.sizes.begin(), o.sizes.end());
  const Inputs in = MakeInputs(n, o.dim);
  for (const Variant& tiled : variants) {
    if (tiled.kind != Variant::kTiled) continue;
    for (const Variant& naive : variants) {
      if (naive.kind != Variant::kNaive || naive.family != tiled.family) continue;
      const std::string why_not = guard.WhyNot(naive.name, n);
      if (why_not.empty()) {
        CheckAgreement(tiled, naive, in);
      } else {
        std::printf("check N=%ld skipped: %s %s\n", n, naive.name.c_str(), why_not.c_str());
      }
    }
  }
}

int Main(int argc, char** argv) {
  const absl::StatusOr<Options> options = ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "loss_bench: %s\n", options.status().ToString().c_str());
    return 2;
  }
  const Options& o = *options;
  cpu_set_t cpus;
  const int threads = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                          ? CPU_COUNT(&cpus)
                          : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads);
  const bool exact_peak = ResetPeakRss();
  std::printf("loss_bench: fp32 CPU, forward+backward, %d torch threads, median of %d\n",
              at::get_num_threads(), o.repeats);
  std::printf("peak memory: %s\n",
              exact_peak ? "VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS "
                           "before (inputs excluded)"
                         : "/proc/self/clear_refs is NOT writable: falling back to VmRSS polled "
                           "every 1 ms (may miss short peaks), minus VmRSS before");
  nlohmann::json python = {{"results", nlohmann::json::array()}};
  if (o.openclip) {
    std::optional<nlohmann::json> out = RunOpenClip(o, threads);
    if (!out) {
      std::fprintf(stderr, "loss_bench: %s failed\n", CLIPSCALE_BENCH_SCRIPT);
      return 1;
    }
    python = *out;
    std::printf("OpenCLIP side: open_clip %s, torch %s, %d threads, peak %s\n",
                python["open_clip"].get<std::string>().c_str(),
                python["torch"].get<std::string>().c_str(), python["threads"].get<int>(),
                python["exact_peak"].get<bool>() ? "via clear_refs" : "by 1 ms VmRSS polling");
  }
  LocalCommunicator comm;
  const std::vector<Variant> variants = MakeVariants(o, &comm);
  MemoryGuard guard;
  at::manual_seed(0);
  WarmUp(o, variants);
  CheckAgreements(o, variants, guard);
  for (int64_t n : o.sizes) BenchSize(n, o, variants, python, exact_peak, &guard);
  return 0;
}

}  // namespace
}  // namespace clipscale

int main(int argc, char** argv) { return clipscale::Main(argc, argv); }
