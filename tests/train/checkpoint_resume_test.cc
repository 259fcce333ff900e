// Checkpoints and resume through `clipscale train` and `clipscale ckpt`, as
// users run them: real MPI ranks on CPU, real signals, real kill -9, a real
// size-limited file system. The promise under test: a run stopped anywhere
// (a signal, a killed rank, a kill in the middle of a save, a corrupt or
// missing file, a full disk) and resumed with --resume latest ends with the
// same per-step losses and the same final weights, byte for byte, as the run
// that was never stopped (same W); on another W it sees the same global batches.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "core/file_util.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::ShellQuote;

constexpr int kRequeueExit = 75;  // train/stop_signal.h

std::string Binary() { return testing::ClipscaleBinary(); }

const std::string& DataDir() {
  return testing::SharedSynthData("checkpoint_resume_data", "--train 384 --val 40 --seed 5");
}

// A small CLIP (one block per tower) so that a run of 24 steps takes seconds;
// patch dropout on, so that the ranks' generators are part of the state.
std::string WriteRecipe(const std::string& dir, const std::string& name, int epochs,
                        bool patch_dropout = true) {
  const std::string path = dir + "/" + name + ".yaml";
  std::ofstream(path)
      << "model: tiny\n"
         "model_overrides: [\"vision.layers=1\", \"text.layers=1\", \"vision.width=64\", "
         "\"vision.head_width=32\", \"text.width=64\", \"text.heads=1\", \"embed_dim=32\""
      << (patch_dropout ? ", \"vision.patch_dropout=0.5\"" : "")
      << "]\n"
         "data:\n  train: "
      << DataDir() << "/train\n  val: " << DataDir()
      << "/val\n  batch_size: 32\n  augment: true\n"
         "schedule:\n  lr: 1.0e-3\n  warmup_steps: 4\n"
         "eval:\n  templates: [\"a {}.\"]\n"
         "epochs: "
      << epochs << "\nthreads: 1\nlog_every: 4\n";
  return path;
}

// `launch`: "" (one plain process) or testing::Mpirun(W); `env`: "VAR=value ".
CommandResult Train(const std::string& launch, const std::string& recipe,
                    const std::string& output, const std::string& sets = "",
                    const std::string& env = "") {
  return testing::RunCommand(env + launch + ShellQuote(Binary()) + " train --config " +
                             ShellQuote(recipe) + " --set output=" + ShellQuote(output) + " " +
                             sets);
}

// Step -> loss; a step logged twice (before a crash and again after the
// resume) keeps its last value, as a reader of metrics.jsonl would.
std::map<int64_t, double> Losses(const std::string& run) {
  std::map<int64_t, double> losses;
  auto text = ReadFile(run + "/metrics.jsonl");
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return losses;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    // A run still writing may end in half a line.
    auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("train/loss")) {
      losses[json["step"]] = json["train/loss"].get<double>();
    }
  }
  return losses;
}

std::string DirName(int64_t step) {
  std::string digits = std::to_string(step);
  return "step_" + std::string(9 - digits.size(), '0') + digits;
}

std::string Bytes(const std::string& path) {
  auto bytes = ReadFile(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : "";
}

// The resumed run equals the reference: every step's loss to the bit, and the
// final weights byte for byte.
void ExpectSameRun(const std::string& reference, const std::string& resumed) {
  const auto want = Losses(reference), got = Losses(resumed);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [step, loss] : want) {
    ASSERT_TRUE(got.count(step)) << "step " << step << " missing in " << resumed;
    EXPECT_EQ(got.at(step), loss) << "step " << step;  // exact: bitwise continuation
  }
  EXPECT_TRUE(Bytes(reference + "/model.safetensors") == Bytes(resumed + "/model.safetensors"))
      << "final weights differ from the uninterrupted run's";
}

std::string Latest(const std::string& output) {
  auto text = ReadFile(output + "/checkpoints/latest");
  return text.ok() ? text->substr(0, text->find('\n')) : "";
}

class CheckpointResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::BinaryDir() + "/test_tmp/checkpoint_resume");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    recipe_ = new std::string(WriteRecipe(*dir_, "recipe", 2));
    // The uninterrupted runs the others are compared with: 2 ranks, gradient
    // cache (16 rows per rank in micro-batches of 5), 2 epochs of 12 steps.
    auto r = Train(testing::Mpirun(2), *recipe_, *dir_ + "/reference",
                   "--set data.micro_batch_size=5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static std::string Reference() { return *dir_ + "/reference"; }
  static std::string* dir_;
  static std::string* recipe_;
};
std::string* CheckpointResume::dir_ = nullptr;
std::string* CheckpointResume::recipe_ = nullptr;

// SIGTERM (raised by rank 1 itself as step K starts) stops both ranks at the
// boundary after it: they save step K+1 synchronously and exit with the
// requeue code. K+1 = 8 is mid-epoch, 12 the first epoch's end.
TEST_F(CheckpointResume, StopBySignalThenResumeIsBitwiseIdentical) {
  for (int stop_at : {7, 11}) {
    SCOPED_TRACE("signal at step " + std::to_string(stop_at));
    const std::string out = *dir_ + "/signal_" + std::to_string(stop_at);
    auto stopped = Train(testing::Mpirun(2), *recipe_, out, "--set data.micro_batch_size=5",
                         "CLIPSCALE_FAULT_FAIL_AT_STEP=1:" + std::to_string(stop_at) + ":sigterm ");
    EXPECT_EQ(stopped.exit_code, kRequeueExit) << stopped.output;
    const std::string saved = std::to_string(stop_at + 1);
    EXPECT_NE(stopped.output.find("rank 0 of 2 stopped after step " + saved), std::string::npos)
        << stopped.output;
    EXPECT_NE(stopped.output.find("rank 1 of 2 stopped after step " + saved), std::string::npos)
        << stopped.output;
    EXPECT_EQ(Latest(out), DirName(stop_at + 1));
    auto resumed = Train(testing::Mpirun(2), *recipe_, out,
                         "--set data.micro_batch_size=5 --resume latest");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed at step " + saved), std::string::npos)
        << resumed.output;
    ExpectSameRun(Reference(), out);
  }
}

// kill -9 of one rank (it sends itself SIGKILL) at steps drawn from fixed
// seeds, with asynchronous saves every 5 steps: `latest` is always a complete
// checkpoint, and resuming from it ends where the uninterrupted run ended.
TEST_F(CheckpointResume, KillNineAtRandomStepsThenResume) {
  for (uint32_t seed : {1u, 2u}) {
    // Steps 11..23: the save of step 5 is committed by then (the save of step
    // 10 waits for it), so there is always a `latest` to check.
    std::mt19937 draw(seed);
    const int rank = static_cast<int>(seed % 2);
    const int step = std::uniform_int_distribution<int>(11, 23)(draw);
    SCOPED_TRACE("seed " + std::to_string(seed) + ": rank " + std::to_string(rank) +
                 " killed at step " + std::to_string(step));
    const std::string out = *dir_ + "/kill_" + std::to_string(seed);
    const std::string sets = "--set data.micro_batch_size=5 --set checkpoint.every_steps=5";
    auto killed = Train(testing::Mpirun(2), *recipe_, out, sets,
                        "CLIPSCALE_FAULT_FAIL_AT_STEP=" + std::to_string(rank) + ":" +
                            std::to_string(step) + ":kill ");
    EXPECT_NE(killed.exit_code, 0) << killed.output;
    EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
    auto verify = testing::RunCommand(ShellQuote(Binary()) + " ckpt verify " + ShellQuote(out));
    EXPECT_EQ(verify.exit_code, 0) << verify.output;
    auto resumed = Train(testing::Mpirun(2), *recipe_, out, sets + " --resume latest");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    ExpectSameRun(Reference(), out);
  }
}

// kill -9 of rank 0, the writer, while a save is half written (the writer
// sleeps after each file, so the kill lands inside the save): the .tmp folder
// is left behind, `latest` still names the previous checkpoint, and the
// resume continues from that one.
TEST_F(CheckpointResume, KillNineDuringACheckpointWrite) {
  for (int pause_ms : {1500, 500}) {
    SCOPED_TRACE("pause " + std::to_string(pause_ms) + " ms after each file");
    const std::string out = *dir_ + "/kill_in_save_" + std::to_string(pause_ms);
    const std::string sets = "--set data.micro_batch_size=5 --set checkpoint.every_steps=4";
    // The save of step 4 takes 3 pauses; step 8 waits for it, then starts its
    // own, which is in flight when rank 0 dies as step 10 starts.
    auto killed = Train(testing::Mpirun(2), *recipe_, out, sets,
                        "CLIPSCALE_FAULT_FAIL_AT_STEP=0:10:kill "
                        "CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS=" + std::to_string(pause_ms) + " ");
    EXPECT_NE(killed.exit_code, 0) << killed.output;
    EXPECT_NE(killed.output.find("waiting for the previous save"), std::string::npos)
        << killed.output;
    EXPECT_TRUE(fs::exists(out + "/checkpoints/step_000000008.tmp")) << killed.output;
    EXPECT_FALSE(fs::exists(out + "/checkpoints/step_000000008"));
    EXPECT_EQ(Latest(out), "step_000000004");
    auto resumed = Train(testing::Mpirun(2), *recipe_, out, sets + " --resume latest");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed at step 4"), std::string::npos) << resumed.output;
    EXPECT_FALSE(fs::exists(out + "/checkpoints/step_000000008.tmp"));
    ExpectSameRun(Reference(), out);
  }
}

// A SIGTERM from outside to one rank of a running job (as a scheduler or a
// user sends it): all ranks stop at the same step, save it, exit 75; more
// SIGTERMs during that save corrupt nothing; the resume continues bitwise.
TEST_F(CheckpointResume, SigtermToOneRankOfARunningJob) {
  const std::string recipe = WriteRecipe(*dir_, "long", 4);
  const std::string reference = *dir_ + "/long_reference";
  ASSERT_EQ(Train(testing::Mpirun(2), recipe, reference).exit_code, 0);
  const std::string out = *dir_ + "/sigterm";
  fs::create_directories(out);
  const std::string log = out + "/../sigterm.log", rc = out + "/../sigterm.rc";
  fs::remove(rc);
  const std::string command = "CLIPSCALE_FAULT_CHECKPOINT_PAUSE_MS=500 " + testing::Mpirun(2) +
                              ShellQuote(Binary()) + " train --config " +
                              ShellQuote(recipe) + " --set output=" + ShellQuote(out);
  std::thread job([&] {
    auto r = testing::RunCommand(command + " > " + ShellQuote(log) + " 2>&1; echo $? > " +
                                 ShellQuote(rc));
  });
  // Once a few steps are logged, signal the rank whose command line is the
  // second of the job's two clipscale processes.
  std::string pids;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(out + "/metrics.jsonl") && Losses(out).size() >= 3) {
      auto r = testing::RunCommand("pgrep -f -- " + ShellQuote("^" + Binary() + " train .*" + out));
      pids = r.output;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::istringstream list(pids);
  std::vector<std::string> ranks;
  for (std::string pid; list >> pid;) ranks.push_back(pid);
  ASSERT_GE(ranks.size(), 2u) << pids;
  auto kill = testing::RunCommand("kill -TERM " + ranks.back());
  // The save on the way out is slowed (0.5 s after each file); more SIGTERMs
  // to every rank while it runs must change nothing.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  for (const std::string& pid : ranks) testing::RunCommand("kill -TERM " + pid);
  job.join();
  const std::string output = Bytes(log);
  EXPECT_EQ(Bytes(rc), std::to_string(kRequeueExit) + "\n") << output;
  const size_t at = output.find("rank 0 of 2 stopped after step ");
  ASSERT_NE(at, std::string::npos) << output;
  const std::string step = output.substr(at + 31, output.find('\n', at) - at - 31);
  EXPECT_NE(output.find("rank 1 of 2 stopped after step " + step + "\n"), std::string::npos)
      << output;
  EXPECT_EQ(Latest(out), DirName(std::stoll(step)));
  auto resumed = Train(testing::Mpirun(2), recipe, out, "--resume latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  ExpectSameRun(reference, out);
}

// (epoch, step) -> the step's global batch: the ranks' sample keys in rank
// order, from <output>/sample_keys/rank_<r>.txt (a resumed run appends).
std::map<std::pair<int64_t, int64_t>, std::string> KeysPerStep(const std::string& output) {
  std::map<std::pair<int64_t, int64_t>, std::string> batches;
  for (int rank = 0; fs::exists(output + "/sample_keys/rank_" + std::to_string(rank) + ".txt");
       ++rank) {
    std::istringstream lines(Bytes(output + "/sample_keys/rank_" + std::to_string(rank) + ".txt"));
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      int64_t epoch = 0, step = 0;
      fields >> epoch >> step;
      std::string rest;
      std::getline(fields, rest);
      batches[{epoch, step}] += rest;
    }
  }
  return batches;
}

// A W=2 run stopped at step 10 continues on 4 ranks: the same global batches
// in the same order (each step's keys, concatenated over the ranks); the
// losses differ only by the float sums' order (bound below).
TEST(CheckpointWorldSize, ResumeOnFourRanksFromTwo) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 2, /*patch_dropout=*/false);
  const std::string sets = "--set data.log_sample_keys=true";
  const std::string reference = dir + "/reference", out = dir + "/resized";
  ASSERT_EQ(Train(testing::Mpirun(2), recipe, reference, sets).exit_code, 0);
  auto stopped = Train(testing::Mpirun(2), recipe, out, sets,
                       "CLIPSCALE_FAULT_FAIL_AT_STEP=0:9:sigterm ");
  ASSERT_EQ(stopped.exit_code, kRequeueExit) << stopped.output;
  auto resumed = Train(testing::Mpirun(4), recipe, out, sets + " --resume latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("saved by 2 rank(s), now 4"), std::string::npos) << resumed.output;
  EXPECT_TRUE(fs::exists(out + "/sample_keys/rank_3.txt"));
  const auto want = KeysPerStep(reference), got = KeysPerStep(out);
  EXPECT_EQ(want.size(), 24u);
  EXPECT_EQ(got, want);
  // Same batches and the same math; only the order of fp32 sums differs (4
  // partial gradients instead of 2, the loss tiles over other rows), which
  // after 14 steps moves the loss by far less than 0.1 %.
  const auto want_loss = Losses(reference), got_loss = Losses(out);
  ASSERT_EQ(got_loss.size(), want_loss.size());
  for (const auto& [step, loss] : want_loss) {
    EXPECT_NEAR(got_loss.at(step), loss, 1e-3 * std::abs(loss)) << "step " << step;
  }
}

// distributed.zero: 1 shards AdamW's moments over the ranks. At W = 2 the
// sharded run is the unsharded one to the bit (a sum of two gradients does not
// depend on the order, and the shard's update is FusedAdamW's loop): the same
// losses and the same checkpoint weights. Its checkpoint holds one optimizer
// shard per rank and no optimizer.safetensors, and resumes on one rank with
// ZeRO (resharded 2 -> 1) and without it, as the unsharded checkpoint does
// with and without ZeRO: all four continuations end with the same weights.
TEST(CheckpointZero, ShardedEqualsUnshardedAndReshards) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 2, /*patch_dropout=*/false);
  const std::string stop = "CLIPSCALE_FAULT_FAIL_AT_STEP=0:9:sigterm ";
  const std::string plain = dir + "/plain", sharded = dir + "/sharded";
  auto a = Train(testing::Mpirun(2), recipe, plain, "--set distributed.zero=0", stop);
  ASSERT_EQ(a.exit_code, kRequeueExit) << a.output;
  auto b = Train(testing::Mpirun(2), recipe, sharded, "--set distributed.zero=1", stop);
  ASSERT_EQ(b.exit_code, kRequeueExit) << b.output;
  EXPECT_EQ(Losses(plain), Losses(sharded));
  EXPECT_EQ(Losses(plain).size(), 10u);  // steps 0..9 before the stop
  const std::string step10 = "/checkpoints/" + DirName(10);
  EXPECT_TRUE(Bytes(plain + step10 + "/model.safetensors") ==
              Bytes(sharded + step10 + "/model.safetensors"))
      << "the sharded run's weights differ from the unsharded run's";
  EXPECT_TRUE(fs::exists(plain + step10 + "/optimizer.safetensors"));
  EXPECT_FALSE(fs::exists(sharded + step10 + "/optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(sharded + step10 + "/optimizer_shard_0.safetensors"));
  EXPECT_TRUE(fs::exists(sharded + step10 + "/optimizer_shard_1.safetensors"));
  auto inspect =
      testing::RunCommand(ShellQuote(Binary()) + " ckpt inspect " + ShellQuote(sharded + step10));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("optimizer: ZeRO-1 shards of 2 rank(s)"), std::string::npos)
      << inspect.output;
  // The start-up line: each rank holds half of the moments (ceil(P/2) of P).
  const std::string line = "optimizer state per rank: ";
  const size_t at = b.output.find(line);
  ASSERT_NE(at, std::string::npos) << b.output;
  double mine = 0, unsharded = 0;
  ASSERT_EQ(std::sscanf(b.output.c_str() + at + line.size(),
                        "%lf MiB (ZeRO-1 over 2 rank(s); unsharded %lf MiB)", &mine, &unsharded),
            2)
      << b.output.substr(at, 120);
  EXPECT_GT(unsharded, 0);
  EXPECT_NEAR(mine, unsharded / 2, 0.01);

  // Four continuations on one rank, each from a copy of a stopped run.
  const std::vector<std::pair<std::string, std::string>> runs = {
      {plain, "0"}, {plain, "1"}, {sharded, "1"}, {sharded, "0"}};
  std::vector<std::string> outs;
  for (const auto& [from, zero] : runs) {
    const std::string out = from + "_then_zero" + zero;
    fs::copy(from, out, fs::copy_options::recursive);
    auto r = Train("", recipe, out, "--set distributed.zero=" + zero + " --resume latest");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("saved by 2 rank(s), now 1"), std::string::npos) << r.output;
    outs.push_back(out);
  }
  for (size_t i = 1; i < outs.size(); ++i) ExpectSameRun(outs[0], outs[i]);
}

// Unmounts what the test mounted, also when the test fails.
struct ScopedMount {
  std::string path;
  ~ScopedMount() {
    if (!path.empty()) ::umount2(path.c_str(), MNT_DETACH);
  }
};

// Checkpoints on a file system with room for one: the first save commits,
// every later one fails cleanly (no .tmp left, `latest` untouched) and is
// retried at the next interval, while training goes on to the end.
TEST(CheckpointFullDisk, FailedSavesLeaveLatestAndTrainingGoesOn) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 2);
  const std::string sets = "--set checkpoint.every_steps=4";
  // How large one checkpoint of this model is.
  auto probe = Train("", recipe, dir + "/probe", sets + " --set max_steps=6");
  ASSERT_EQ(probe.exit_code, 0) << probe.output;
  uint64_t size = 0;
  for (const auto& f : fs::directory_iterator(dir + "/probe/checkpoints/step_000000004")) {
    size += fs::file_size(f.path());
  }
  ASSERT_GT(size, 1u << 20);
  const std::string out = dir + "/run", mount_point = out + "/checkpoints";
  fs::create_directories(mount_point);
  const std::string options = "size=" + std::to_string((size * 3 / 2) / 4096 * 4096 + 8192);
  ASSERT_EQ(::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, options.c_str()), 0)
      << "mount -t tmpfs -o " << options << " " << mount_point << ": " << std::strerror(errno)
      << " (the test needs root)";
  ScopedMount unmount{mount_point};
  auto run = Train("", recipe, out, sets);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (int step : {8, 12, 24}) {
    EXPECT_NE(run.output.find("saving step " + std::to_string(step) + " failed, nothing committed"),
              std::string::npos)
        << run.output;
  }
  EXPECT_NE(run.output.find("No space left on device"), std::string::npos) << run.output;
  EXPECT_EQ(Latest(out), "step_000000004");
  std::vector<std::string> left;
  for (const auto& f : fs::directory_iterator(mount_point)) left.push_back(f.path().filename());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"latest", "step_000000004"}));
  auto verify = testing::RunCommand(ShellQuote(Binary()) + " ckpt verify " + ShellQuote(out));
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));  // the run's own output is elsewhere
}

// Damage to the newest checkpoint is caught before anything is loaded; the
// resume falls back to the one before and still ends bit for bit where the
// uninterrupted run ended. One process (W = 1) keeps this quick.
TEST(CheckpointCorruption, NewestDamagedPreviousUsed) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 2);
  const std::string sets = "--set checkpoint.every_steps=4 --set checkpoint.keep=2";
  const std::string reference = dir + "/reference";
  ASSERT_EQ(Train("", recipe, reference, sets).exit_code, 0);
  ASSERT_EQ(Latest(reference), "step_000000024");
  struct Damage {
    std::string name, file, expect;
  };
  for (const Damage& d : {Damage{"truncate", "model.safetensors", "truncated"},
                          Damage{"flip", "optimizer.safetensors", "corrupt"},
                          Damage{"no_manifest", "manifest.json", "missing"}}) {
    SCOPED_TRACE(d.name);
    const std::string out = dir + "/" + d.name;
    fs::copy(reference, out, fs::copy_options::recursive);
    fs::remove(out + "/model.safetensors");
    const std::string path = out + "/checkpoints/step_000000024/" + d.file;
    if (d.name == "truncate") fs::resize_file(path, fs::file_size(path) / 2);
    if (d.name == "no_manifest") fs::remove(path);
    if (d.name == "flip") {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(static_cast<std::streamoff>(fs::file_size(path) / 2));
      const char c = static_cast<char>(f.get());
      f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
      f.put(static_cast<char>(c ^ 0x10));
    }
    auto verify = testing::RunCommand(ShellQuote(Binary()) + " ckpt verify " +
                                      ShellQuote(out + "/checkpoints/step_000000024"));
    EXPECT_EQ(verify.exit_code, 1) << verify.output;
    EXPECT_NE(verify.output.find(d.file), std::string::npos) << verify.output;
    EXPECT_NE(verify.output.find(d.expect), std::string::npos) << verify.output;
    auto resumed = Train("", recipe, out, sets + " --resume latest");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resume: skipping"), std::string::npos) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed at step 20"), std::string::npos) << resumed.output;
    EXPECT_TRUE(Bytes(reference + "/model.safetensors") == Bytes(out + "/model.safetensors"));
    EXPECT_EQ(testing::RunCommand(ShellQuote(Binary()) + " ckpt verify " + ShellQuote(out))
                  .exit_code, 0);
  }
  // An explicit checkpoint that does not verify stops the run, naming the file.
  const std::string out = dir + "/truncate";
  fs::resize_file(out + "/checkpoints/step_000000024/state.pb", 3);
  auto refused = Train("", recipe, dir + "/explicit",
                       sets + " --resume " + ShellQuote(out + "/checkpoints/step_000000024"));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("state.pb: 3 bytes"), std::string::npos) << refused.output;
}

// SIGINT (a user's Ctrl-C) saves and stops too, with its own exit code (not
// the requeue one); saves by time alone (checkpoint.every_minutes) also land
// on step boundaries all ranks agree on, and resume like any other.
TEST(CheckpointSignals, SigintAndSavesByTime) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 2);
  auto interrupted = Train(testing::Mpirun(2), recipe, dir + "/sigint",
                           "--set checkpoint.every_minutes=0.002 --set checkpoint.keep=0",
                           "CLIPSCALE_FAULT_FAIL_AT_STEP=0:15:sigint ");
  EXPECT_EQ(interrupted.exit_code, 130) << interrupted.output;
  EXPECT_NE(interrupted.output.find("stopped by SIGINT after step 16"), std::string::npos)
      << interrupted.output;
  // 0.12 s of training between saves: several by time before the signal.
  std::vector<int64_t> steps;
  for (const auto& f : fs::directory_iterator(dir + "/sigint/checkpoints")) {
    const std::string name = f.path().filename();
    if (name.rfind("step_", 0) == 0) steps.push_back(std::stoll(name.substr(5)));
  }
  EXPECT_GE(steps.size(), 3u) << interrupted.output;
  EXPECT_EQ(Latest(dir + "/sigint"), "step_000000016");
  auto resumed = Train(testing::Mpirun(2), recipe, dir + "/sigint",
                       "--set checkpoint.every_minutes=0.002 --resume latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed at step 16"), std::string::npos) << resumed.output;
}

// The recipe may change what is logged, evaluated and where; not what is
// trained. A resume into a folder without checkpoints starts fresh.
TEST(CheckpointConfig, RefusesIncompatibleRecipeChanges) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 1);
  const std::string out = dir + "/run";
  auto fresh = Train("", recipe, out, "--set max_steps=6 --set checkpoint.every_steps=3 "
                                      "--resume latest");
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_NE(fresh.output.find("no checkpoint under " + out + "/checkpoints: starting fresh"),
            std::string::npos)
      << fresh.output;
  const std::string step3 = " --resume " + ShellQuote(out + "/checkpoints/step_000000003");
  for (const auto& [set, key] : std::vector<std::pair<std::string, std::string>>{
           {"--set data.batch_size=16", "data.batch_size: 32 in the checkpoint, 16 now"},
           {"--set seed=4", "seed: 0 in the checkpoint, 4 now"},
           {"--set " + ShellQuote("model_overrides=[\"vision.layers=2\",\"text.layers=1\","
                                  "\"vision.width=64\",\"vision.head_width=32\",\"text.width=64\","
                                  "\"text.heads=1\",\"embed_dim=32\",\"vision.patch_dropout=0.5\"]"),
            "model_config.vision.layers: [1] in the checkpoint, [2] now"}}) {
    auto refused = Train("", recipe, dir + "/other", "--set max_steps=6 " + set + step3);
    EXPECT_EQ(refused.exit_code, 1) << refused.output;
    EXPECT_NE(refused.output.find("cannot continue under this recipe"), std::string::npos)
        << refused.output;
    EXPECT_NE(refused.output.find(key), std::string::npos) << refused.output;
  }
  auto forced = Train("", recipe, dir + "/forced",
                      "--set max_steps=6 --set seed=4 --resume-ignore-config" + step3);
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_NE(forced.output.find("ignoring a recipe change: seed"), std::string::npos)
      << forced.output;
  auto safe = Train("", recipe, dir + "/safe",
                    "--set max_steps=6 --set log_every=1 --set eval.every_steps=2 "
                    "--set data.workers=1" + step3);
  EXPECT_EQ(safe.exit_code, 0) << safe.output;
  EXPECT_NE(safe.output.find("resumed at step 3"), std::string::npos) << safe.output;
}

// `ckpt inspect` and `ckpt export`; both the exported weights and the
// checkpoint's own model.safetensors load into open_clip with strict=True.
TEST(CheckpointTools, InspectAndExportForOpenClip) {
  const std::string dir = testing::MakeTempDir();
  const std::string recipe = WriteRecipe(dir, "recipe", 1);
  const std::string out = dir + "/run";
  auto run = Train(testing::Mpirun(2), recipe, out,
                   "--set max_steps=6 --set checkpoint.every_steps=3");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto inspect = testing::RunCommand(ShellQuote(Binary()) + " ckpt inspect " + ShellQuote(out));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  for (const char* want : {"step_000000006 (verified)", "step 6 of 6", "world size 2",
                           "global batch 32", "model.safetensors", "optimizer.safetensors",
                           "state.pb"}) {
    EXPECT_NE(inspect.output.find(want), std::string::npos) << want << "\n" << inspect.output;
  }
  const std::string exported = dir + "/exported.safetensors";
  auto exp = testing::RunCommand(ShellQuote(Binary()) + " ckpt export " +
                                 ShellQuote(out + "/checkpoints/step_000000003") + " --out " +
                                 ShellQuote(exported));
  ASSERT_EQ(exp.exit_code, 0) << exp.output;
  for (const std::string& weights :
       {exported, out + "/checkpoints/step_000000006/model.safetensors"}) {
    auto loaded = testing::RunPythonScript("clip_load_check.py", {out + "/model.yaml", weights});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->rfind("ok ", 0), 0u) << *loaded;
  }
  EXPECT_TRUE(Bytes(out + "/checkpoints/step_000000006/model.safetensors") ==
              Bytes(out + "/model.safetensors"));
}

}  // namespace
}  // namespace clipscale
