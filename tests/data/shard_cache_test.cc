// Remote shards: http:// from a loopback server the test starts, and pipe:
// commands; fetched once into the size-limited cache, evicted LRU, read like
// local shards.
#include "data/shard_cache.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "data/dataset_index.h"
#include "data/stream_loader.h"
#include "tests/data/loader_fixtures.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

// python3 -m http.server on 127.0.0.1 with a port the kernel picks, serving
// `dir`; stopped in the destructor (also when a test fails).
class LoopbackServer {
 public:
  explicit LoopbackServer(const std::string& dir) {
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      const int quiet = open("/dev/null", O_WRONLY);  // the request log
      if (quiet >= 0) dup2(quiet, 2);
      execlp("python3", "python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
             "--directory", dir.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    std::string line;
    char c;
    while (line.find('\n') == std::string::npos && read(out[0], &c, 1) == 1) line.push_back(c);
    close(out[0]);
    const size_t at = line.find(" port ");
    if (at != std::string::npos) port_ = std::atoi(line.c_str() + at + 6);
  }
  ~LoopbackServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + path;
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

class ShardCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    std::filesystem::create_directories(dir_ + "/served");
    paths_ = testing::WriteJpegShards(dir_ + "/served", 4, 6);
    server_ = std::make_unique<LoopbackServer>(dir_ + "/served");
    ASSERT_GT(server_->port(), 0) << "the loopback HTTP server did not start";
    auto tokenizer = ClipTokenizer::LoadDefault();
    ASSERT_TRUE(tokenizer.ok());
    tokenizer_ = std::make_unique<ClipTokenizer>(*tokenizer);
  }
  std::vector<std::string> Keys(const std::string& spec, ShardCache* cache, int steps,
                                int64_t* invalid) {
    IndexBuildOptions build;
    build.cache = cache;
    const std::string index_path = dir_ + "/" + std::to_string(++indexes_) + ".index";
    EXPECT_TRUE(DatasetIndex::Build(spec, index_path, build).ok());
    auto index = DatasetIndex::Open(index_path);
    EXPECT_TRUE(index.ok());
    StreamLoaderOptions o;
    o.order.seed = 3;
    o.global_batch = o.slice_size = 4;
    o.image_size = 16;
    o.context_length = 8;
    o.workers = 2;
    o.cache = cache;
    auto loader = StreamLoader::Create(*index, tokenizer_.get(), o);
    EXPECT_TRUE(loader.ok());
    std::vector<std::string> keys;
    for (int s = 0; s < steps; ++s) {
      auto batch = (*loader)->Next();
      EXPECT_TRUE(batch.ok() && *batch);
      keys.insert(keys.end(), (*batch)->keys.begin(), (*batch)->keys.end());
    }
    if (invalid) *invalid = (*loader)->counts().bad_shard + (*loader)->counts().unreplaceable;
    return keys;
  }
  std::string dir_;
  std::vector<std::string> paths_;
  std::unique_ptr<LoopbackServer> server_;
  std::unique_ptr<ClipTokenizer> tokenizer_;
  int indexes_ = 0;
};

TEST_F(ShardCacheTest, HttpShardsReadLikeLocalOnesAndAreFetchedOnce) {
  ShardCache cache({.dir = dir_ + "/cache"});
  int64_t bad = -1;
  const auto remote = Keys(server_->Url("{00000..00003}.tar"), &cache, 12, &bad);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(remote, Keys(dir_ + "/served", nullptr, 12, nullptr));
  EXPECT_EQ(cache.fetches(), 4);  // indexing fetched them; loading found them cached
  EXPECT_EQ(cache.evictions(), 0);
}

TEST_F(ShardCacheTest, EvictionKeepsTheCacheWithinItsLimit) {
  const auto shard_bytes = std::filesystem::file_size(paths_[0]);
  ShardCache cache({.dir = dir_ + "/cache", .max_bytes = 2 * shard_bytes + shard_bytes / 2});
  int64_t bad = -1;
  const auto keys = Keys(server_->Url("{00000..00003}.tar"), &cache, 12, &bad);
  EXPECT_EQ(bad, 0);  // evicted shards are fetched again when needed
  EXPECT_EQ(keys, Keys(dir_ + "/served", nullptr, 12, nullptr));
  EXPECT_GT(cache.evictions(), 0);
  EXPECT_GT(cache.fetches(), 4);
  uint64_t cached = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/cache")) {
    if (e.path().extension() == ".shard") cached += e.file_size();
  }
  EXPECT_LE(cached, 2 * shard_bytes + shard_bytes / 2);
}

TEST_F(ShardCacheTest, FailuresNameTheShard) {
  ShardCache cache({.dir = dir_ + "/cache"});
  auto missing = cache.Fetch(server_->Url("nope.tar"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.tar"), std::string::npos) << missing.status();
  EXPECT_NE(missing.status().message().find("404"), std::string::npos) << missing.status();
  auto failing = cache.Fetch("pipe:exit 3");
  ASSERT_FALSE(failing.ok());
  EXPECT_NE(failing.status().message().find("exited with 3"), std::string::npos) << failing.status();
  ShardCache small({.dir = dir_ + "/small", .max_bytes = 100});
  EXPECT_EQ(small.Fetch(server_->Url("00000.tar")).status().code(),
            absl::StatusCode::kResourceExhausted);
  ShardCache none({});
  EXPECT_EQ(none.Fetch(server_->Url("00000.tar")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*none.Fetch(paths_[0]), paths_[0]);  // local files are read in place
  // An unreachable shard is recorded in the index with its error, not fatal.
  IndexBuildOptions build;
  build.cache = &cache;
  ASSERT_TRUE(DatasetIndex::Build(server_->Url("{00000..00001}.tar") + "::" + server_->Url("gone.tar"),
                                  dir_ + "/x.index", build)
                  .ok());
  auto index = DatasetIndex::Open(dir_ + "/x.index");
  ASSERT_TRUE(index.ok());
  EXPECT_EQ((*index)->total_samples(), 12);
  EXPECT_EQ((*index)->dropped().unreadable_shards, 1);
}

TEST_F(ShardCacheTest, PipeSourcesExpandBracesAndStream) {
  ShardCache cache({.dir = dir_ + "/cache"});
  int64_t bad = -1;
  const auto keys = Keys("pipe:cat " + dir_ + "/served/{00000..00003}.tar", &cache, 12, &bad);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(keys, Keys(dir_ + "/served", nullptr, 12, nullptr));
  EXPECT_EQ(cache.fetches(), 4);
}

}  // namespace
}  // namespace clipscale
