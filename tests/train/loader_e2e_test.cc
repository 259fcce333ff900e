// `clipscale train` through the streaming loader, as users run it: the global
// batches are the same for mpirun -np 1, 2 and 4 over two epochs, and a
// rank's memory does not grow with the dataset's size.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "core/file_util.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

std::string Binary() { return testing::ClipscaleBinary(); }

std::string Synth(const std::string& dir, int train, int per_shard) {
  auto r = testing::RunCommand(testing::ShellQuote(Binary()) + " data synth --out " +
                               testing::ShellQuote(dir) + " --train " + std::to_string(train) +
                               " --val 10 --image-size 48 --per-shard " +
                               std::to_string(per_shard) + " --seed 5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir + "/train";
}

std::string Recipe(const std::string& dir, const std::string& train, const std::string& extra) {
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path) << "model: tiny\n"
                         "model_overrides: [\"vision.image_size=32\", \"vision.patch_size=16\"]\n"
                         "data:\n  train: "
                      << train << "\n  index_cache: " << dir
                      << "/index_cache\n  batch_size: 16\n  shuffle_block_shards: 2\n"
                         "schedule:\n  lr: 1.0e-3\n  warmup_steps: 2\n"
                         "threads: 1\nlog_every: 4\n"
                      << extra;
  return path;
}

// "epoch step" -> the keys of that step, ranks' files concatenated in rank order.
std::map<std::string, std::vector<std::string>> StepKeys(const std::string& run, int ranks) {
  std::map<std::string, std::vector<std::string>> steps;
  for (int r = 0; r < ranks; ++r) {
    std::ifstream in(run + "/sample_keys/rank_" + std::to_string(r) + ".txt");
    EXPECT_TRUE(in.good()) << run << " rank " << r;
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::string epoch, step, key;
      words >> epoch >> step;
      auto& keys = steps[epoch + " " + step];
      while (words >> key) keys.push_back(key);
    }
  }
  return steps;
}

TEST(LoaderEndToEnd, GlobalBatchesDoNotDependOnTheWorldSize) {
  const std::string dir = testing::MakeTempDir();
  const std::string train = Synth(dir + "/data", 100, 16);  // 7 shards, the last short
  const std::string recipe = Recipe(dir, train, "epochs: 2\n");
  std::map<std::string, std::vector<std::string>> one;
  for (int ranks : {1, 2, 4}) {
    const std::string run = dir + "/run" + std::to_string(ranks);
    auto r = testing::RunCommand(testing::Mpirun(ranks) + testing::ShellQuote(Binary()) +
                                 " train --config " + testing::ShellQuote(recipe) +
                                 " --set output=" + run + " --set data.log_sample_keys=true");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto steps = StepKeys(run, ranks);
    ASSERT_EQ(steps.size(), 12u) << "2 epochs of floor(100 / 16) = 6 steps";
    for (const auto& [step, keys] : steps) ASSERT_EQ(keys.size(), 16u) << step;
    if (ranks == 1) {
      one = steps;
      std::set<std::string> epoch0;
      for (const auto& [step, keys] : steps) {
        if (step[0] == '0') epoch0.insert(keys.begin(), keys.end());
      }
      EXPECT_EQ(epoch0.size(), 96u);  // no sample twice in an epoch
      EXPECT_NE(steps["0 0"], steps["1 0"]);
    } else {
      EXPECT_EQ(steps, one) << ranks << " ranks";
    }
  }
}

int64_t PeakRssKiB(const std::string& command) {
  // The child's peak resident set, as the kernel counted it.
  const std::string script =
      "import resource, subprocess, sys\n"
      "r = subprocess.run(sys.argv[1], shell=True, capture_output=True, text=True)\n"
      "print(r.stdout + r.stderr)\n"
      "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss"
      " if r.returncode == 0 else -1)\n";
  auto r = testing::RunCommand(testing::ShellQuote(testing::Python()) + " -c " +
                               testing::ShellQuote(script) + " " + testing::ShellQuote(command));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const size_t at = r.output.rfind("peak_rss_kib ");
  if (at == std::string::npos) return -1;
  const int64_t kib = std::stoll(r.output.substr(at + 13));
  EXPECT_GT(kib, 0) << r.output;
  return kib;
}

TEST(LoaderEndToEnd, PeakMemoryDoesNotGrowWithTheDataset) {
  const std::string dir = testing::MakeTempDir();
  const std::string shards = Synth(dir + "/data", 1000, 500);
  // 4,000 and 40,000 samples: copies of the same two shards under new names.
  for (int size : {4, 40}) {
    const std::string folder = dir + "/set" + std::to_string(size);
    std::filesystem::create_directories(folder);
    for (int s = 0; s < 2 * size; ++s) {
      char name[32];
      std::snprintf(name, sizeof name, "/%05d.tar", s);
      std::filesystem::copy_file(shards + (s % 2 == 0 ? "/00000.tar" : "/00001.tar"),
                                 folder + name);
    }
  }
  std::map<int, int64_t> peak;
  for (int size : {4, 40}) {
    const std::string folder = dir + "/set" + std::to_string(size);
    const std::string recipe = Recipe(dir, folder, "epochs: 1\nmax_steps: 20\n");
    peak[size] = PeakRssKiB(testing::ShellQuote(Binary()) + " train --config " +
                            testing::ShellQuote(recipe) + " --set output=" + folder + "_run");
    ASSERT_GT(peak[size], 0);
  }
  std::printf("peak RSS: %lld KiB with 4,000 samples, %lld KiB with 40,000\n",
              static_cast<long long>(peak[4]), static_cast<long long>(peak[40]));
  // Held in memory, 36,000 more decoded 48-px images would be 250 MB. What may
  // grow: the shard table and the epoch order (a few hundred bytes per shard).
  // Two runs of the same size differ by up to ~15 MB here (allocator and thread
  // timing), so the bound is 64 MiB: a quarter of what holding the images costs.
  EXPECT_LT(peak[40] - peak[4], 64 * 1024);
}

}  // namespace
}  // namespace clipscale
