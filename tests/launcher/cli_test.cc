// The clipscale binary as a user runs it: subcommands, outputs, errors.
#include <gtest/gtest.h>

#include <filesystem>

#include <torch/torch.h>

#include "core/file_util.h"
#include "core/npy.h"
#include "data/tar.h"
#include "data/tokenizer.h"
#include "models/clip_model.h"
#include "models/weights_io.h"
#include "tests/test_util.h"

namespace clipscale {
namespace {

std::string Binary() { return testing::ClipscaleBinary(); }

testing::CommandResult RunCli(const std::string& args) {
  return testing::RunCommand(testing::ShellQuote(Binary()) + " " + args);
}

TEST(CliTest, HelpShowsDefaults) {
  auto r = RunCli("data synth --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--per-shard"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1000"), std::string::npos) << r.output;  // default shown
}

TEST(CliTest, ConfigErrorsNameTheKey) {
  auto r = RunCli("config --model tiny --set vision.width=abc");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("vision.width: expected an integer, got 'abc'"), std::string::npos)
      << r.output;
  r = RunCli("config --model ViT-B-32 --set vision.patch_dropout=0.5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("patch_dropout: 0.5"), std::string::npos) << r.output;
  r = RunCli("config --model no-such-model");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown model 'no-such-model'"), std::string::npos) << r.output;
}

// std::filesystem throws on some paths; the commands answer with an error
// naming the path instead of dying of an uncaught exception.
TEST(CliTest, UnusablePathsAreErrorsNamingThePath) {
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/file", "not a folder").ok());
  auto r = RunCli("data synth --out " + dir + "/file/sub --train 4 --val 4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot create " + dir + "/file/sub/"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  // Longer than NAME_MAX: std::filesystem::exists(path) throws ENAMETOOLONG.
  const std::string long_name(5000, 'x');
  r = RunCli("config --model " + long_name);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("unknown model '" + long_name + "'"), std::string::npos) << r.output;
}

TEST(CliTest, EmbedZeroShotAndEvalOnSavedWeights) {
  const std::string dir = testing::MakeTempDir();
  auto r = RunCli("data synth --out " + dir + "/data --train 8 --val 40 --per-shard 20 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  torch::manual_seed(0);
  ClipModel model(*LoadModelConfig("tiny"));
  model->eval();
  ASSERT_TRUE(SaveWeights(*model, dir + "/w.safetensors").ok());

  r = RunCli("embed --model tiny --weights " + dir + "/w.safetensors --text 'a red circle' " +
          "--text 'two blue squares' --out " + dir + "/t.npy");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto npy = ReadNpy(dir + "/t.npy");
  ASSERT_TRUE(npy.ok()) << npy.status();
  ASSERT_EQ(npy->shape, (std::vector<int64_t>{2, 128}));
  torch::Tensor from_cli =
      torch::from_blob(npy->bytes.data(), {2, 128}, torch::kFloat32).clone();
  auto tokenizer = ClipTokenizer::LoadDefault();
  ASSERT_TRUE(tokenizer.ok());
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids;
  for (const char* text : {"a red circle", "two blue squares"}) {
    for (int32_t id : tokenizer->Tokenize(text, 32)) ids.push_back(id);
  }
  torch::Tensor direct = model->EncodeText(torch::tensor(ids).view({2, 32}));
  EXPECT_TRUE(torch::allclose(from_cli, direct, 1e-6, 1e-6));

  std::string jpeg;
  ASSERT_TRUE(ReadTar(dir + "/data/val/00000.tar", [&](const TarMember& m) {
                if (jpeg.empty() && m.name.find(".jpg") != std::string::npos) jpeg = m.content;
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/scene.jpg", jpeg).ok());
  r = RunCli("zeroshot --model tiny --weights " + dir + "/w.safetensors --image " + dir +
          "/scene.jpg --labels 'red circle,blue square,green star' --top-k 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("scene.jpg"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("%"), std::string::npos) << r.output;

  r = RunCli("zeroshot --model tiny --weights " + dir + "/w.safetensors --image " + dir +
          "/w.safetensors --labels a,b");
  EXPECT_EQ(r.exit_code, 1);  // not an image: a clear error, no crash
  EXPECT_NE(r.output.find("clipscale: error:"), std::string::npos) << r.output;

  r = RunCli("eval --model tiny --weights " + dir + "/w.safetensors --data " + dir + "/data/val");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("zeroshot_top1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image_to_text_R@1"), std::string::npos) << r.output;

  r = RunCli("embed --model tiny --weights " + dir + "/t.npy --text x --out " + dir + "/x.npy");
  EXPECT_EQ(r.exit_code, 1);  // weights that are not safetensors
}


// The job scripts in configs/slurm/ are what `clipscale slurm` writes today
// (for an install at /opt/clipscale): they cannot drift from the generator.
TEST(CliTest, SlurmExamplesAreWhatTheGeneratorWrites) {
  const std::string dir = testing::MakeTempDir();
  std::filesystem::create_directories(dir + "/configs");
  std::filesystem::copy_file(testing::SourceDir() + "/configs/demo.yaml", dir + "/configs/demo.yaml");
  struct Example {
    const char* file;
    const char* args;
  };
  for (const Example& e :
       {Example{"demo-1node-8gpu.sbatch", "--nodes 1 --gpus-per-node 8 --cpus-per-task 12"},
        Example{"demo-4nodes-8gpu.sbatch",
                "--nodes 4 --gpus-per-node 8 --cpus-per-task 12 --partition gpu --account proj "
                "--time 48:00:00"}}) {
    SCOPED_TRACE(e.file);
    auto r = testing::RunCommand("cd " + testing::ShellQuote(dir) + " && (" +
                                 testing::ShellQuote(Binary()) + " slurm --config configs/demo.yaml " +
                                 e.args + " --clipscale /opt/clipscale/bin/clipscale > out.sbatch)");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string script = *ReadFile(dir + "/out.sbatch");
    for (size_t at; (at = script.find(dir)) != std::string::npos;) script.replace(at, dir.size(), "/opt/clipscale");
    const std::string example = testing::SourceDir() + "/configs/slurm/" + e.file;
    auto committed = ReadFile(example);
    ASSERT_TRUE(committed.ok()) << example;
    EXPECT_EQ(*committed, script) << "regenerate " << example << " with: clipscale slurm --config "
                                  << "configs/demo.yaml " << e.args;
  }
}

TEST(CliTest, SlurmRefusesARankCountThatDoesNotDivideTheBatch) {
  auto r = RunCli("slurm --config " + testing::SourceDir() + "/configs/demo.yaml --nodes 3 --gpus-per-node 2");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("data.batch_size 64 of "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is not divisible by the 6 ranks of --nodes 3 x 2 per node"),
            std::string::npos)
      << r.output;
  r = RunCli("slurm --config " + testing::SourceDir() + "/configs/demo.yaml --gpus-per-node 8 "
             "--tasks-per-node 4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("clipscale runs one rank per GPU"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace clipscale
