#include "train/checkpoint.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/checkpoint_dir.h"
#include "core/file_util.h"
#include "core/status.h"
#include "models/weights_io.h"
#include "train/host_collectives.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;

// Parameter name by TensorImpl, as the optimizer's state is keyed.
std::map<const void*, std::string> ParameterNames(const torch::nn::Module& model) {
  std::map<const void*, std::string> names;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    names[item.value().unsafeGetTensorImpl()] = item.key();
  }
  return names;
}

// Copies `source` into the snapshot's tensor `name`, (re)allocating on a shape change.
void CopyInto(std::map<std::string, torch::Tensor>* out, const std::string& name,
              const torch::Tensor& source, bool pinned) {
  torch::Tensor& slot = (*out)[name];
  if (!slot.defined() || slot.sizes() != source.sizes() || slot.dtype() != source.dtype()) {
    slot = torch::empty(source.sizes(),
                        torch::TensorOptions().dtype(source.dtype()).pinned_memory(pinned));
  }
  slot.copy_(source.detach(), /*non_blocking=*/pinned);
}

torch::Tensor Scalar(int64_t value) { return torch::full({}, value, torch::kInt64); }

absl::Status GeneratorError(const std::string& what, const c10::Error& e) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

std::string TensorBytes(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

torch::Tensor BytesTensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

}  // namespace

void CaptureTensors(const torch::nn::Module& model, const torch::optim::AdamW* optimizer,
                    bool pinned, CheckpointSnapshot* snapshot) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : StateDict(model)) {
    CopyInto(&snapshot->model, name, tensor, pinned);
  }
  const auto names = ParameterNames(model);
  std::set<std::string> present;
  if (optimizer != nullptr) {
    for (const auto& [key, state] : optimizer->state()) {
      auto it = names.find(key);
      if (it == names.end()) continue;
      const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*state);
      CopyInto(&snapshot->optimizer, it->second + ".exp_avg", adam.exp_avg(), pinned);
      CopyInto(&snapshot->optimizer, it->second + ".exp_avg_sq", adam.exp_avg_sq(), pinned);
      snapshot->optimizer[it->second + ".step"] = Scalar(adam.step());
      present.insert(it->second + ".exp_avg");
      present.insert(it->second + ".exp_avg_sq");
      present.insert(it->second + ".step");
    }
  }
  for (auto it = snapshot->optimizer.begin(); it != snapshot->optimizer.end();) {
    it = present.count(it->first) ? std::next(it) : snapshot->optimizer.erase(it);
  }
  if (pinned) torch::cuda::synchronize();
}

absl::Status WriteSnapshotFiles(const CheckpointSnapshot& snapshot, CheckpointDirWriter& writer,
                                int pause_ms) {
  auto pause = [&] {
    if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  };
  // As SaveWeights writes the final weights: the same bytes for the same model.
  RETURN_IF_ERROR(WriteTensors((fs::path(writer.tmp_dir()) / kModelFile).string(), snapshot.model));
  RETURN_IF_ERROR(writer.AdoptFile(kModelFile));
  pause();
  if (snapshot.state.zero_world() == 0) {
    RETURN_IF_ERROR(
        WriteTensors((fs::path(writer.tmp_dir()) / kOptimizerFile).string(), snapshot.optimizer));
    RETURN_IF_ERROR(writer.AdoptFile(kOptimizerFile));
    pause();
  }
  RETURN_IF_ERROR(writer.AddFile(kStateFile, snapshot.state.SerializeAsString()));
  pause();
  return absl::OkStatus();
}

std::string RankPartName(int rank) { return absl::StrCat("rank_", rank, ".pb"); }

absl::StatusOr<ManifestEntry> WriteRankPart(const std::string& root, int64_t step,
                                            const proto::RankPart& part) {
  ASSIGN_OR_RETURN(CheckpointDirWriter writer, CheckpointDirWriter::Open(root, step));
  RETURN_IF_ERROR(writer.AddFile(RankPartName(part.rank()), part.SerializeAsString()));
  return writer.files().back();
}

absl::StatusOr<std::optional<proto::RankPart>> ReadRankPart(const std::string& dir, int rank) {
  const std::string path = (fs::path(dir) / RankPartName(rank)).string();
  std::error_code error;
  if (!fs::exists(path, error)) return std::optional<proto::RankPart>();
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  proto::RankPart part;
  if (!part.ParseFromString(bytes) || part.rank() != rank) {
    return absl::DataLossError(absl::StrCat(path, ": not rank ", rank, "'s checkpoint part"));
  }
  return std::optional<proto::RankPart>(std::move(part));
}

absl::StatusOr<proto::CheckpointState> ReadCheckpointState(const std::string& dir) {
  const std::string path = (fs::path(dir) / kStateFile).string();
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path));
  proto::CheckpointState state;
  if (!state.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a checkpoint state record"));
  }
  return state;
}

absl::Status LoadModelAndOptimizer(const std::string& dir, torch::nn::Module& model,
                                   torch::optim::AdamW& optimizer) {
  const std::string optimizer_path = (fs::path(dir) / kOptimizerFile).string();
  ASSIGN_OR_RETURN(auto moments, ReadTensors(optimizer_path));
  // Checked before anything changes: one entry per trainable parameter, or none
  // (a checkpoint from before the first step).
  std::vector<std::pair<torch::Tensor, std::string>> params;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) params.emplace_back(p, "");
  }
  const auto names = ParameterNames(model);
  for (auto& [p, name] : params) {
    auto it = names.find(p.unsafeGetTensorImpl());
    if (it == names.end()) return absl::InternalError("an optimized tensor is not a parameter");
    name = it->second;
    if (moments.empty()) continue;
    for (const char* part : {".exp_avg", ".exp_avg_sq", ".step"}) {
      auto m = moments.find(name + part);
      if (m == moments.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(optimizer_path, ": no \"", name, part, "\" for a trained parameter"));
      }
      const bool scalar = std::string(part) == ".step";
      if (scalar ? m->second.numel() != 1 || m->second.scalar_type() != torch::kInt64
                 : m->second.sizes() != p.sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat(optimizer_path, ": \"", name, part, "\" has the wrong shape or type"));
      }
    }
  }
  if (!moments.empty() && moments.size() != 3 * params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        optimizer_path, ": ", moments.size() / 3, " parameters' state for ", params.size(),
        " trained parameters (was the image tower locked in one run and not the other?)"));
  }
  RETURN_IF_ERROR(LoadWeights(model, (fs::path(dir) / kModelFile).string()));
  optimizer.state().clear();
  for (const auto& [p, name] : params) {
    if (moments.empty()) break;
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(moments.at(name + ".step").item<int64_t>());
    state->exp_avg(moments.at(name + ".exp_avg").to(p.device(), p.scalar_type()).contiguous());
    state->exp_avg_sq(
        moments.at(name + ".exp_avg_sq").to(p.device(), p.scalar_type()).contiguous());
    optimizer.state()[p.unsafeGetTensorImpl()] = std::move(state);
  }
  return absl::OkStatus();
}

absl::Status LoadModel(const std::string& dir, torch::nn::Module& model) {
  return LoadWeights(model, (fs::path(dir) / kModelFile).string());
}

void BroadcastOptimizerState(torch::optim::AdamW& optimizer, Communicator& comm, int root,
                             const torch::Device& device) {
  if (comm.size() == 1) return;
  std::vector<torch::Tensor> params;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) params.push_back(p);
  }
  auto& states = optimizer.state();
  torch::Tensor has = torch::full({1}, static_cast<int64_t>(!states.empty()), torch::kInt64);
  HostBroadcast(has, root, comm, device);
  if (comm.rank() != root) states.clear();
  if (has.item<int64_t>() == 0) return;
  torch::Tensor steps = torch::zeros({static_cast<int64_t>(params.size())}, torch::kInt64);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    auto& slot = states[params[i].unsafeGetTensorImpl()];
    if (!slot) {
      auto fresh = std::make_unique<torch::optim::AdamWParamState>();
      fresh->exp_avg(torch::zeros_like(params[i], torch::MemoryFormat::Contiguous));
      fresh->exp_avg_sq(torch::zeros_like(params[i], torch::MemoryFormat::Contiguous));
      slot = std::move(fresh);
    }
    auto& adam = static_cast<torch::optim::AdamWParamState&>(*slot);
    steps[static_cast<int64_t>(i)] = adam.step();
    torch::Tensor m = adam.exp_avg(), v = adam.exp_avg_sq();  // handles: in place
    comm.Broadcast(m, root);
    comm.Broadcast(v, root);
  }
  HostBroadcast(steps, root, comm, device);
  for (size_t i = 0; i < params.size(); ++i) {
    auto& adam = static_cast<torch::optim::AdamWParamState&>(*states[params[i].unsafeGetTensorImpl()]);
    adam.step(steps[static_cast<int64_t>(i)].item<int64_t>());
  }
}

proto::RankRng CaptureRng(int rank, const torch::Device& device) {
  proto::RankRng rng;
  rng.set_rank(rank);
  {
    at::Generator cpu = at::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(cpu.mutex());
    rng.set_cpu_state(TensorBytes(cpu.get_state()));
  }
  if (device.is_cuda()) {
    at::Generator cuda = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(cuda.mutex());
    rng.set_cuda_state(TensorBytes(cuda.get_state()));
  }
  return rng;
}

absl::Status RestoreRng(const proto::RankRng& rng, const torch::Device& device) {
  try {
    at::Generator cpu = at::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(BytesTensor(rng.cpu_state()));
  } catch (const c10::Error& e) {
    return GeneratorError(absl::StrCat("rank ", rng.rank(), "'s CPU generator state"), e);
  }
  if (device.is_cuda() && !rng.cuda_state().empty()) {
    try {
      at::Generator cuda = at::globalContext().defaultGenerator(device);
      std::lock_guard<std::mutex> lock(cuda.mutex());
      cuda.set_state(BytesTensor(rng.cuda_state()));
    } catch (const c10::Error& e) {
      return GeneratorError(absl::StrCat("rank ", rng.rank(), "'s CUDA generator state"), e);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> ResolveResume(const std::string& resume,
                                                         const std::string& root,
                                                         std::vector<std::string>* skipped) {
  if (resume != "latest") {
    auto manifest = VerifyCheckpoint(resume);
    if (!manifest.ok()) {
      return absl::DataLossError(absl::StrCat("resume: ", resume, " is not a usable checkpoint: ",
                                              manifest.status().message()));
    }
    return std::optional<std::string>(resume);
  }
  const std::vector<int64_t> steps = ListCheckpoints(root);
  const std::optional<int64_t> latest = ReadLatest(root);
  for (int64_t step : steps) {
    // Folders past the pointer were renamed but never committed by it.
    if (latest && step > *latest) continue;
    const std::string dir = (fs::path(root) / CheckpointDirName(step)).string();
    auto manifest = VerifyCheckpoint(dir);
    if (manifest.ok()) return std::optional<std::string>(dir);
    skipped->push_back(std::string(manifest.status().message()));
  }
  if (steps.empty()) return std::optional<std::string>();
  return absl::DataLossError(absl::StrCat("resume: latest: no checkpoint under ", root,
                                          " verifies:\n  ", absl::StrJoin(*skipped, "\n  ")));
}

}  // namespace clipscale
