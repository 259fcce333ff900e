#include "train/data_parallel.h"

#include <algorithm>
#include <optional>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/crc32c.h"
#include "core/logging.h"
#include "core/status.h"

namespace clipscale {
namespace {

class ReadyHook : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  void operator()(const torch::autograd::Variable& /*tensor*/) override { fn_(); }

 private:
  std::function<void()> fn_;
};

// Generator states to replay an encoder pass (patch dropout draws on the CPU
// generator; anything on a GPU on that device's generator).
struct RngState {
  torch::Tensor cpu;
  std::optional<torch::Device> cuda_device;
  torch::Tensor cuda;
};

RngState SaveRng(const torch::Device& device) {
  RngState state;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.cpu = gen.get_state();
  }
  if (device.is_cuda()) {
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.cuda_device = device;
    state.cuda = gen.get_state();
  }
  return state;
}

void RestoreRng(const RngState& state) {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.cpu);
  }
  if (state.cuda_device) {
    auto gen = at::globalContext().defaultGenerator(*state.cuda_device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.cuda);
  }
}

torch::Tensor Loss(ClipModel& model, const torch::Tensor& x, const torch::Tensor& y,
                   Communicator& comm, const StepOptions& o) {
  if (o.loss == LossKind::kClip) return TiledClipLoss(x, y, model->logit_scale(), &comm, o.loss_tile);
  CS_CHECK_MSG(model->logit_bias().defined(),
               "the siglip loss needs a model with a logit_bias (init_logit_bias)");
  return TiledSigLipLoss(x, y, model->logit_scale(), model->logit_bias(), &comm, o.loss_tile);
}

// The towers' forward passes, under autocast for amp_*; the embeddings come
// out in the precision's dtype (autocast leaves the final normalisation in
// fp32, so they are cast: the loss then gathers half the bytes).
torch::Tensor EncodeImages(ClipModel& model, const torch::Tensor& images, const StepOptions& o) {
  std::optional<torch::NoGradGuard> no_grad;
  if (o.lock_image) no_grad.emplace();
  torch::Tensor x;
  {
    AutocastGuard autocast(images.device().type(), o.precision);
    x = model->EncodeImage(images, true);
  }
  return o.precision == Precision::kFp32 ? x : x.to(EmbeddingDtype(o.precision));
}

torch::Tensor EncodeTexts(ClipModel& model, const torch::Tensor& tokens, const StepOptions& o) {
  torch::Tensor y;
  {
    AutocastGuard autocast(tokens.device().type(), o.precision);
    y = model->EncodeText(tokens, true);
  }
  return o.precision == Precision::kFp32 ? y : y.to(EmbeddingDtype(o.precision));
}

void Backward(const torch::Tensor& loss, const StepOptions& o) {
  if (o.scaler != nullptr) {
    o.scaler->Scale(loss).backward();
  } else {
    loss.backward();
  }
}

}  // namespace

absl::StatusOr<LossKind> ParseLossKind(const std::string& name) {
  if (name == "clip") return LossKind::kClip;
  if (name == "siglip") return LossKind::kSigLip;
  return absl::InvalidArgumentError(absl::StrCat("unknown loss '", name, "' (clip, siglip)"));
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator* comm,
                                 int64_t bucket_bytes, bool overlap)
    : params_(std::move(params)), comm_(comm), bucket_bytes_(bucket_bytes), overlap_(overlap) {
  if (comm_->size() == 1) return;
  const int count = static_cast<int>(params_.size());
  ready_.assign(count, false);
  std::vector<int> order;
  for (int i = count - 1; i >= 0; --i) {
    CS_CHECK_MSG(params_[i].requires_grad(), "GradientReducer: parameter ", i,
                 " requires no gradient");
    order.push_back(i);  // reverse registration: roughly the order of backward
  }
  Build(std::move(order));
  for (int i = 0; i < count; ++i) {
    torch::autograd::impl::set_post_acc_grad_hooks(
        params_[i], std::make_unique<ReadyHook>([this, i] { OnGradReady(i); }));
  }
}

void GradientReducer::Build(std::vector<int> order) {
  // A bucket takes consecutive parameters of one dtype and device up to bucket_bytes.
  order_ = std::move(order);
  slots_.assign(params_.size(), Slot{});
  buckets_.clear();
  int64_t numel = 0;             // elements in the open bucket
  torch::TensorOptions current;  // the open bucket's dtype and device
  for (int i : order_) {
    const torch::Tensor& p = params_[i];
    const bool fits = !buckets_.empty() && current.dtype() == p.dtype() &&
                      current.device() == p.device() &&
                      (numel + p.numel()) * p.element_size() <= bucket_bytes_;
    if (!fits) {
      if (!buckets_.empty()) buckets_.back().buffer = torch::empty({numel}, current);
      buckets_.push_back(Bucket{});
      current = p.options();
      numel = 0;
    }
    slots_[i] = Slot{static_cast<int>(buckets_.size()) - 1, numel};
    buckets_.back().params.push_back(i);
    numel += p.numel();
  }
  if (!buckets_.empty()) buckets_.back().buffer = torch::empty({numel}, current);
}

bool GradientReducer::SetOrder(const std::vector<int>& order) {
  if (comm_->size() == 1) return true;
  std::vector<bool> seen(params_.size(), false);
  if (order.size() != params_.size()) return false;
  for (int i : order) {
    if (i < 0 || i >= static_cast<int>(params_.size()) || seen[i]) return false;
    seen[i] = true;
  }
  CS_CHECK_MSG(!armed_, "GradientReducer::SetOrder between Prepare and Finish");
  Build(order);
  rebuilt_ = true;
  observed_.clear();
  return true;
}

void GradientReducer::RebuildFromObservedOrder() {
  // The observed order first, then what the pass did not reach (reduced in
  // Finish), in the current order.
  std::vector<bool> seen(params_.size(), false);
  std::vector<int64_t> order;
  for (int i : observed_) {
    order.push_back(i);
    seen[i] = true;
  }
  for (int i : order_) {
    if (!seen[i]) order.push_back(i);
  }
  // Rank 0's, on the parameters' device (NCCL broadcasts CUDA tensors only).
  torch::Tensor t = torch::tensor(order, torch::kInt64).to(params_.front().device());
  comm_->Broadcast(t, 0);
  t = t.to(torch::kCPU);
  std::vector<int> chosen(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  Build(std::move(chosen));
  rebuilt_ = true;
  observed_.clear();
}

GradientReducer::~GradientReducer() {
  if (comm_->size() == 1) return;  // no hooks were set
  for (auto& p : params_) torch::autograd::impl::post_acc_grad_hooks(p).reset();
}

void GradientReducer::Prepare() {
  if (comm_->size() == 1) return;
  CS_CHECK_MSG(!armed_, "GradientReducer::Prepare twice without Finish");
  std::fill(ready_.begin(), ready_.end(), false);
  observed_.clear();
  first_unfinished_ = 0;
  for (Bucket& b : buckets_) b.pending = static_cast<int>(b.params.size());
  next_launch_ = 0;
  launched_in_backward_ = 0;
  hooks_ = 0;
  held_back_ = 0;
  armed_ = true;
}

void GradientReducer::CopyIn(int param) {
  const Slot& slot = slots_[param];
  Bucket& bucket = buckets_[slot.bucket];
  torch::Tensor view = bucket.buffer.narrow(0, slot.offset, params_[param].numel());
  const torch::Tensor& grad = params_[param].grad();
  if (grad.defined()) {
    view.copy_(grad.reshape({-1}));
  } else {
    view.zero_();
  }
  ready_[param] = true;
  if (--bucket.pending == 0) bucket.completed_at = hooks_;
}

void GradientReducer::LaunchReady() {
  torch::NoGradGuard no_grad;
  while (next_launch_ < num_buckets() && buckets_[next_launch_].pending == 0) {
    Bucket& bucket = buckets_[next_launch_++];
    if (bucket.completed_at < hooks_) ++held_back_;
    bucket.work = comm_->AllReduceAsync(bucket.buffer, ReduceOp::kSum);
  }
}

void GradientReducer::OnGradReady(int param) {
  if (!armed_) return;  // an earlier micro-batch: the gradient is not final yet
  CS_CHECK_MSG(!ready_[param], "GradientReducer: the gradient of parameter ", param,
               " was accumulated twice in one prepared backward pass");
  if (!rebuilt_) observed_.push_back(param);
  ++hooks_;
  {
    torch::NoGradGuard no_grad;
    CopyIn(param);
  }
  if (!overlap_) return;
  const int before = next_launch_;
  LaunchReady();
  launched_in_backward_ += next_launch_ - before;
  // Drive the buckets in flight (Open MPI progresses them only inside MPI calls).
  while (first_unfinished_ < next_launch_ && buckets_[first_unfinished_].work->Progress()) {
    ++first_unfinished_;
  }
  for (int b = first_unfinished_ + 1; b < next_launch_; ++b) buckets_[b].work->Progress();
}

void GradientReducer::Finish() {
  if (comm_->size() == 1) return;
  CS_CHECK_MSG(armed_, "GradientReducer::Finish without Prepare");
  ++hooks_;  // what backward left for Finish comes in after every hook
  torch::NoGradGuard no_grad;
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    if (!ready_[i]) CopyIn(i);
  }
  LaunchReady();
  for (Bucket& bucket : buckets_) {
    bucket.work->Wait();
    bucket.work.reset();
    for (int i : bucket.params) {
      torch::Tensor& p = params_[i];
      torch::Tensor sum = bucket.buffer.narrow(0, slots_[i].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
    }
  }
  armed_ = false;
  if (!rebuilt_) RebuildFromObservedOrder();
}

torch::Tensor ComputeGradients(ClipModel& model, const torch::Tensor& pixels_in,
                               const torch::Tensor& tokens, Communicator& comm,
                               GradientReducer& reducer, const StepOptions& o) {
  const int64_t n = pixels_in.size(0);
  CS_CHECK_MSG(tokens.size(0) == n, "images and tokens differ in batch size");
  // pure_bf16: the images in the weights' dtype. Otherwise as given (fp64 in tests).
  const torch::Tensor images =
      o.precision == Precision::kPureBf16 ? pixels_in.to(WeightDtype(o.precision)) : pixels_in;
  for (auto& p : model->parameters()) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  const int64_t micro = o.micro_batch <= 0 ? n : std::min(o.micro_batch, n);
  auto enter = [&o](Phase phase) {
    if (o.on_phase) o.on_phase(phase);
  };
  enter(Phase::kForward);
  if (micro == n) {
    torch::Tensor x = EncodeImages(model, images, o);
    torch::Tensor y = EncodeTexts(model, tokens, o);
    enter(Phase::kLoss);
    torch::Tensor loss = Loss(model, x, y, comm, o);
    enter(Phase::kBackward);
    reducer.Prepare();
    Backward(loss, o);
    enter(Phase::kAllReduce);
    reducer.Finish();
    return loss.detach();
  }

  // GradCache: 1. embed every micro-batch without a graph.
  const int64_t chunks = (n + micro - 1) / micro;
  std::vector<RngState> rng;
  std::vector<torch::Tensor> xs, ys;
  {
    torch::NoGradGuard no_grad;
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t len = std::min(micro, n - k * micro);
      rng.push_back(SaveRng(images.device()));
      xs.push_back(EncodeImages(model, images.narrow(0, k * micro, len), o));
      ys.push_back(EncodeTexts(model, tokens.narrow(0, k * micro, len), o));
    }
  }
  const RngState after = SaveRng(images.device());
  // 2. The loss once, over the cached embeddings; its backward leaves ∂L/∂x and
  // ∂L/∂y here and accumulates this rank's share into logit_scale/logit_bias.
  torch::Tensor x = torch::cat(xs).requires_grad_(!o.lock_image);
  torch::Tensor y = torch::cat(ys).requires_grad_(true);
  xs.clear();
  ys.clear();
  enter(Phase::kLoss);
  torch::Tensor loss = Loss(model, x, y, comm, o);
  enter(Phase::kBackward);
  Backward(loss, o);  // with a scaler, the cached gradients carry its scale
  const torch::Tensor gx = o.lock_image ? torch::Tensor() : x.grad();
  const torch::Tensor gy = y.grad();
  // 3. Re-encode each micro-batch with its saved generator state and push its
  // slice of the cached gradient through the encoders.
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t len = std::min(micro, n - k * micro);
    RestoreRng(rng[k]);
    std::vector<torch::Tensor> outputs, grads;
    if (!o.lock_image) {
      outputs.push_back(EncodeImages(model, images.narrow(0, k * micro, len), o));
      grads.push_back(gx.narrow(0, k * micro, len));
    }
    outputs.push_back(EncodeTexts(model, tokens.narrow(0, k * micro, len), o));
    grads.push_back(gy.narrow(0, k * micro, len));
    if (k + 1 == chunks) reducer.Prepare();
    torch::autograd::backward(outputs, grads);
  }
  enter(Phase::kAllReduce);
  reducer.Finish();
  RestoreRng(after);
  return loss.detach();
}

std::vector<torch::Tensor> TrainableParameters(torch::nn::Module& model) {
  std::vector<torch::Tensor> params;
  for (auto& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

void BroadcastModule(torch::nn::Module& module, Communicator& comm, int root) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) comm.Broadcast(p, root);
  BroadcastBuffers(module, comm, root);
}

bool BroadcastBuffers(torch::nn::Module& module, Communicator& comm, int root) {
  auto buffers = module.buffers();
  if (buffers.empty()) return false;
  if (comm.size() == 1) return true;
  torch::NoGradGuard no_grad;
  for (auto& b : buffers) comm.Broadcast(b, root);
  return true;
}

uint32_t ModuleDigest(torch::nn::Module& module) {
  uint32_t crc = 0;
  auto add = [&](const torch::Tensor& t) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    crc = Crc32cExtend(crc, c.data_ptr(), c.nbytes());
  };
  for (const auto& p : module.parameters()) add(p);
  for (const auto& b : module.buffers()) add(b);
  return crc;
}

absl::Status CheckReplicasIdentical(torch::nn::Module& module, Communicator& comm) {
  if (comm.size() == 1) return absl::OkStatus();
  // On the parameters' device: NCCL gathers only CUDA tensors.
  const auto params = module.parameters();
  const torch::Device device = params.empty() ? torch::kCPU : params.front().device();
  torch::Tensor digest = torch::tensor({static_cast<int64_t>(ModuleDigest(module))}).to(device);
  torch::Tensor all = comm.AllGather(digest).to(torch::kCPU);
  std::vector<int> differing;
  for (int r = 1; r < comm.size(); ++r) {
    if (all[r].item<int64_t>() != all[0].item<int64_t>()) differing.push_back(r);
  }
  if (differing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the weights of rank(s) ", absl::StrJoin(differing, ", "),
                   " differ from rank 0's (bitwise); the replicas have diverged"));
}

}  // namespace clipscale
