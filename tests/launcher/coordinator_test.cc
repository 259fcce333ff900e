// The coordinator service in-process, over real gRPC on loopback: who it
// refuses (no token, a wrong one, another attempt's workers, a different
// build), what it survives (random bytes at its port, an oversized message),
// and the two-phase commit (no `latest` until every rank voted; a NO vote or
// a missing part commits nothing).
#include "launcher/coordinator/coordinator.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "core/checkpoint_dir.h"
#include "core/file_util.h"
#include "launcher/coordinator/coordinator.grpc.pb.h"
#include "launcher/coordinator/supervisor.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;
namespace pb = coordinator;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    CoordinatorOptions options;
    options.job_id = "job1";
    options.token = *NewJobToken();
    options.max_message_bytes = 64 << 10;
    options.checkpoint_root = dir_ + "/checkpoints";
    options.heartbeat_s = 0.2;
    options.startup_timeout_s = 30;
    auto started = Coordinator::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    coordinator_ = std::move(*started);
    AttemptPlan plan;
    plan.attempt = 1;
    plan.world_size = 2;
    coordinator_->BeginAttempt(plan);
    stub_ = pb::Coordinator::NewStub(
        grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
  }

  pb::Credentials Auth(int attempt = 1) const {
    pb::Credentials auth;
    auth.set_job_id("job1");
    auth.set_token(coordinator_->options().token);
    auth.set_attempt(attempt);
    return auth;
  }

  grpc::Status Status(const pb::Credentials& auth, pb::JobStatus* out = nullptr) {
    pb::StatusRequest request;
    *request.mutable_auth() = auth;
    pb::JobStatus reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    const grpc::Status status = stub_->GetStatus(&context, request, &reply);
    if (out) *out = reply;
    return status;
  }

  pb::RegisterRequest Join(int rank, const std::string& build = "b1") const {
    pb::RegisterRequest r;
    *r.mutable_auth() = Auth();
    r.set_rank(rank);
    r.set_world_size(2);
    r.set_host("h");
    r.set_build(build);
    r.set_config_hash(7);
    r.set_index_hash(9);
    return r;
  }

  grpc::Status Register(const pb::RegisterRequest& request) {
    pb::RegisterReply reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Register(&context, request, &reply);
  }

  // Both ranks joined (Register returns once both have).
  void JoinBoth() {
    grpc::Status first;
    std::thread other([&] { first = Register(Join(0)); });
    ASSERT_TRUE(Register(Join(1)).ok());
    other.join();
    ASSERT_TRUE(first.ok()) << first.error_message();
  }

  grpc::Status Vote(int rank, int64_t step, std::vector<ManifestEntry> files,
                    const std::string& error, bool wait, pb::VoteReply* reply) {
    pb::VoteRequest request;
    *request.mutable_auth() = Auth();
    request.set_rank(rank);
    request.set_step(step);
    for (const ManifestEntry& f : files) {
      pb::FileEntry* e = request.add_files();
      e->set_name(f.name);
      e->set_size(f.size);
      e->set_crc32c(f.crc32c);
    }
    request.set_error(error);
    request.set_wait(wait);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Vote(&context, request, reply);
  }

  // A rank's part written into the step's temporary folder, as WriteRankPart does.
  ManifestEntry WritePart(int64_t step, const std::string& name, const std::string& bytes) {
    auto writer = CheckpointDirWriter::Open(dir_ + "/checkpoints", step);
    EXPECT_TRUE(writer.ok()) << writer.status();
    EXPECT_TRUE(writer->AddFile(name, bytes).ok());
    return writer->files().back();
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<pb::Coordinator::Stub> stub_;
};

TEST_F(CoordinatorTest, ListensOnLoopbackByDefault) {
  EXPECT_EQ(coordinator_->address().rfind("127.0.0.1:", 0), 0u) << coordinator_->address();
  EXPECT_TRUE(Status(Auth()).ok());
}

TEST_F(CoordinatorTest, RefusesMissingWrongAndStaleCredentials) {
  pb::Credentials none;
  EXPECT_EQ(Status(none).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  pb::Credentials wrong = Auth();
  std::string token = wrong.token();
  token[0] = token[0] == 'a' ? 'b' : 'a';
  wrong.set_token(token);
  EXPECT_EQ(Status(wrong).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  pb::Credentials other_job = Auth();
  other_job.set_job_id("job0");
  EXPECT_EQ(Status(other_job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A worker of attempt 0 (the job before the restart) may not join attempt 1.
  pb::RegisterRequest stale = Join(0);
  *stale.mutable_auth() = Auth(/*attempt=*/0);
  const grpc::Status refused = Register(stale);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(refused.error_message().find("attempt 0 of this job is over"), std::string::npos);
  EXPECT_EQ(coordinator_->refused_requests(), 4);
  EXPECT_TRUE(Status(Auth()).ok());  // and it still serves the real job
}

TEST_F(CoordinatorTest, RefusesARankOfAnotherBuild) {
  grpc::Status first;
  std::thread other([&] { first = Register(Join(0, "b1")); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0 joins first
  const grpc::Status second = Register(Join(1, "b2"));
  other.join();
  EXPECT_EQ(second.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(second.error_message().find("runs build 'b2', other ranks 'b1'"), std::string::npos)
      << second.error_message();
  // Rank 0 is not released into a job that cannot start.
  EXPECT_EQ(first.error_code(), grpc::StatusCode::ABORTED) << first.error_message();
  auto fault = coordinator_->Check();
  ASSERT_TRUE(fault.has_value());
  EXPECT_FALSE(fault->restartable);
}

TEST_F(CoordinatorTest, SurvivesRandomBytesAtItsPort) {
  const int port = std::stoi(coordinator_->address().substr(coordinator_->address().rfind(':') + 1));
  std::mt19937 random(1);
  for (int round = 0; round < 20; ++round) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk(1 + random() % 20000, '\0');
    for (char& c : junk) c = static_cast<char>(random());
    if (round % 2) junk = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + junk;  // a real preface, then junk
    (void)!::write(fd, junk.data(), junk.size());
    ::close(fd);
  }
  EXPECT_TRUE(Status(Auth()).ok());
}

TEST_F(CoordinatorTest, RefusesAMessageOverTheSizeLimitAndKeepsServing) {
  pb::FailedRequest request;
  *request.mutable_auth() = Auth();
  request.set_cause(std::string(200 << 10, 'x'));  // 200 KiB > the 64 KiB limit
  pb::FailedReply reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(stub_->Failed(&context, request, &reply).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Status(Auth()).ok());
}

TEST_F(CoordinatorTest, CommitsOnlyWhenEveryRankVoted) {
  JoinBoth();
  const std::string root = dir_ + "/checkpoints";
  {
    auto tmp = CheckpointDirWriter::Create(root, 4);
    ASSERT_TRUE(tmp.ok());
    (void)tmp->Release();  // the ranks fill it; the coordinator commits it
  }
  const ManifestEntry part0 = WritePart(4, "rank_0.pb", "zero");
  const ManifestEntry part1 = WritePart(4, "rank_1.pb", "one!");
  pb::VoteReply reply;
  ASSERT_TRUE(Vote(1, 4, {part1}, "", /*wait=*/false, &reply).ok());
  EXPECT_FALSE(reply.committed());
  EXPECT_FALSE(ReadLatest(root).has_value()) << "one vote of two must not commit";
  ASSERT_TRUE(Vote(0, 4, {part0}, "", /*wait=*/true, &reply).ok());
  EXPECT_TRUE(reply.committed()) << reply.reason();
  EXPECT_EQ(ReadLatest(root), 4);
  auto manifest = VerifyCheckpoint(reply.dir());
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->files.size(), 2u);
  pb::JobStatus status;
  ASSERT_TRUE(Status(Auth(), &status).ok());
  EXPECT_EQ(status.last_checkpoint_step(), 4);

  // Step 8: rank 1 could not write its part (a NO vote): nothing committed.
  {
    auto tmp = CheckpointDirWriter::Create(root, 8);
    ASSERT_TRUE(tmp.ok());
    (void)tmp->Release();
  }
  ASSERT_TRUE(Vote(1, 8, {}, "disk full", false, &reply).ok());
  ASSERT_TRUE(Vote(0, 8, {WritePart(8, "rank_0.pb", "zero")}, "", true, &reply).ok());
  EXPECT_FALSE(reply.committed());
  EXPECT_NE(reply.reason().find("rank 1 could not write its part: disk full"), std::string::npos);
  EXPECT_EQ(ReadLatest(root), 4);

  // Step 12: a vote that lies about its part's size commits nothing either.
  {
    auto tmp = CheckpointDirWriter::Create(root, 12);
    ASSERT_TRUE(tmp.ok());
    (void)tmp->Release();
  }
  ManifestEntry lie = WritePart(12, "rank_1.pb", "one!");
  lie.size = 1000;
  ASSERT_TRUE(Vote(1, 12, {lie}, "", false, &reply).ok());
  ASSERT_TRUE(Vote(0, 12, {WritePart(12, "rank_0.pb", "zero")}, "", true, &reply).ok());
  EXPECT_FALSE(reply.committed());
  EXPECT_NE(reply.reason().find("1000 announced"), std::string::npos) << reply.reason();
  EXPECT_EQ(ReadLatest(root), 4);
}

TEST_F(CoordinatorTest, ASilentRankIsDeclaredDead) {
  JoinBoth();
  // Rank 0 heartbeats, rank 1 does not: dead after 3 x 0.2 s.
  const auto start = std::chrono::steady_clock::now();
  std::optional<JobFault> fault;
  while (!fault && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    pb::HeartbeatRequest beat;
    *beat.mutable_auth() = Auth();
    beat.set_rank(0);
    beat.set_step(3);
    beat.set_phase(2);
    pb::HeartbeatReply reply;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Heartbeat(&context, beat, &reply).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fault = coordinator_->Check();
  }
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->rank, 1);
  EXPECT_NE(fault->cause.find("rank 1 on h: no heartbeat for"), std::string::npos) << fault->cause;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.5);
  // Once the supervisor ends the attempt, a rank of it that is still alive is
  // told to stop (ABORTED), not just refused.
  coordinator_->EndAttempt("restarting");
  pb::HeartbeatRequest beat;
  *beat.mutable_auth() = Auth();
  beat.set_rank(0);
  pb::HeartbeatReply reply;
  grpc::ClientContext context;
  const grpc::Status over = stub_->Heartbeat(&context, beat, &reply);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::ABORTED) << over.error_message();
  EXPECT_NE(over.error_message().find("of this job is over"), std::string::npos);
}

TEST(ShrunkWorldSize, LargestDivisorThatFits) {
  EXPECT_EQ(ShrunkWorldSize(3, 32), 2);
  EXPECT_EQ(ShrunkWorldSize(7, 48), 6);
  EXPECT_EQ(ShrunkWorldSize(5, 5), 5);
  EXPECT_EQ(ShrunkWorldSize(4, 7), 1);
}

}  // namespace
}  // namespace clipscale
