#include "train/zero.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status.h"
#include "models/weights_io.h"
#include "train/checkpoint.h"

namespace clipscale {
namespace {

namespace fs = std::filesystem;

torch::Tensor Flat(const torch::Tensor& t) { return t.view({-1}); }

}  // namespace

std::vector<ZeroParam> ZeroParams(const torch::nn::Module& model) {
  std::vector<ZeroParam> params;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    params.push_back(
        {item.key(), item.value(), !ExcludedFromWeightDecay(item.key(), item.value())});
  }
  return params;
}

std::vector<std::pair<std::string, int64_t>> ZeroLayout(const std::vector<ZeroParam>& params) {
  std::vector<std::pair<std::string, int64_t>> layout;
  for (const ZeroParam& p : params) layout.emplace_back(p.name, p.tensor.numel());
  return layout;
}

ShardedAdamW::ShardedAdamW(std::vector<ZeroParam> params, const OptimizerConfig& config,
                           Communicator* comm)
    : params_(std::move(params)), config_(config), comm_(comm) {
  rank_ = comm_->rank();
  world_ = comm_->size();
  CS_CHECK_MSG(!params_.empty(), "ShardedAdamW: no parameters");
  const torch::TensorOptions options = params_[0].tensor.options();
  for (const ZeroParam& p : params_) {
    CS_CHECK_MSG(p.tensor.scalar_type() == options.dtype().toScalarType() &&
                     p.tensor.device() == options.device() && p.tensor.is_contiguous(),
                 "ShardedAdamW: ", p.name, " differs in dtype or device from ", params_[0].name,
                 " or is not contiguous");
    offsets_.push_back(numel_);
    numel_ += p.tensor.numel();
  }
  shard_ = (numel_ + world_ - 1) / world_;
  const int64_t begin = shard_begin(), end = std::min(numel_, begin + shard_);
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    const int64_t a = std::max(begin, offsets_[i]);
    const int64_t b = std::min(end, offsets_[i] + params_[i].tensor.numel());
    if (a < b) segments_.push_back({i, a - offsets_[i], a - begin, b - a});
  }
  exp_avg_ = torch::zeros({shard_}, options);
  exp_avg_sq_ = torch::zeros({shard_}, options);
  grad_shard_ = torch::zeros({shard_}, options);
}

int64_t ShardedAdamW::state_bytes() const {
  return static_cast<int64_t>(exp_avg_.nbytes() + exp_avg_sq_.nbytes());
}

int64_t ShardedAdamW::unsharded_state_bytes() const {
  return 2 * numel_ * static_cast<int64_t>(exp_avg_.element_size());
}

void ShardedAdamW::ReduceGradients() {
  torch::NoGradGuard no_grad;
  // The flat gradient exists only for the collective (P elements, then freed).
  torch::Tensor flat = torch::zeros({shard_ * world_}, exp_avg_.options());
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& g = params_[i].tensor.grad();
    if (g.defined()) flat.narrow(0, offsets_[i], g.numel()).copy_(Flat(g.contiguous()));
  }
  grad_shard_ = world_ == 1 ? flat : comm_->ReduceScatter(flat);
}

torch::Tensor ShardedAdamW::GradNorm() {
  torch::NoGradGuard no_grad;
  // Padding is zero and adds nothing; the squares are summed in fp64.
  torch::Tensor squares = grad_shard_.to(torch::kFloat64).square().sum().reshape({1});
  if (world_ > 1) comm_->AllReduce(squares, ReduceOp::kSum);
  return squares.sqrt().reshape({});
}

void ShardedAdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  AdamWHyper hyper;
  hyper.lr = lr;
  hyper.beta1 = config_.beta1;
  hyper.beta2 = config_.beta2;
  hyper.eps = config_.eps;
  // The shard's parameter values, updated segment by segment in a copy that
  // is then gathered (the padding stays zero).
  torch::Tensor values = torch::zeros({shard_}, exp_avg_.options());
  for (const Segment& s : segments_) {
    values.narrow(0, s.shard_offset, s.numel)
        .copy_(Flat(params_[s.param].tensor).narrow(0, s.param_offset, s.numel));
  }
  for (const Segment& s : segments_) {
    hyper.weight_decay = params_[s.param].decay ? config_.weight_decay : 0.0;
    AdamWSpanUpdate(values.narrow(0, s.shard_offset, s.numel),
                    grad_shard_.narrow(0, s.shard_offset, s.numel),
                    exp_avg_.narrow(0, s.shard_offset, s.numel),
                    exp_avg_sq_.narrow(0, s.shard_offset, s.numel), step_, hyper);
  }
  const torch::Tensor all = world_ == 1 ? values : comm_->AllGather(values);
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor p = params_[i].tensor;
    Flat(p).copy_(all.narrow(0, offsets_[i], p.numel()));
  }
}

OptimizerRange ShardedAdamW::Shard() const {
  const int64_t begin = std::min(numel_, shard_begin()), end = std::min(numel_, begin + shard_);
  const int64_t n = std::max<int64_t>(0, end - begin);
  OptimizerRange range;
  range.begin = begin;
  range.exp_avg = exp_avg_.narrow(0, 0, n);
  range.exp_avg_sq = exp_avg_sq_.narrow(0, 0, n);
  range.step = step_;
  return range;
}

absl::Status ShardedAdamW::Restore(const OptimizerRange& range) {
  const int64_t begin = std::min(numel_, shard_begin()), end = std::min(numel_, begin + shard_);
  const int64_t n = std::max<int64_t>(0, end - begin);
  if (range.begin != begin || range.exp_avg.numel() != n || range.exp_avg_sq.numel() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer state for elements [", range.begin, ", ", range.begin + range.exp_avg.numel(),
        ") where rank ", rank_, " owns [", begin, ", ", end, ")"));
  }
  torch::NoGradGuard no_grad;
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  exp_avg_.narrow(0, 0, n).copy_(range.exp_avg);
  exp_avg_sq_.narrow(0, 0, n).copy_(range.exp_avg_sq);
  step_ = range.step;
  return absl::OkStatus();
}

absl::Status SetOptimizerState(torch::optim::AdamW& optimizer, const std::vector<ZeroParam>& params,
                               const OptimizerRange& all) {
  int64_t total = 0;
  for (const ZeroParam& p : params) total += p.tensor.numel();
  if (all.begin != 0 || all.exp_avg.numel() != total || all.exp_avg_sq.numel() != total) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state for elements [", all.begin,
                                                   ", ", all.begin + all.exp_avg.numel(),
                                                   ") where the model has ", total));
  }
  torch::NoGradGuard no_grad;
  optimizer.state().clear();
  if (all.step == 0) return absl::OkStatus();  // saved before the first step
  int64_t offset = 0;
  for (const ZeroParam& p : params) {
    const int64_t n = p.tensor.numel();
    auto moments = [&](const torch::Tensor& flat) {
      return flat.narrow(0, offset, n)
          .view(p.tensor.sizes())
          .to(p.tensor.device(), p.tensor.scalar_type())
          .clone(torch::MemoryFormat::Contiguous);
    };
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(all.step);
    state->exp_avg(moments(all.exp_avg));
    state->exp_avg_sq(moments(all.exp_avg_sq));
    optimizer.state()[p.tensor.unsafeGetTensorImpl()] = std::move(state);
    offset += n;
  }
  return absl::OkStatus();
}

std::string OptimizerShardName(int rank) {
  return absl::StrCat(kOptimizerShardPrefix, rank, ".safetensors");
}

std::map<std::string, torch::Tensor> OptimizerShardTensors(const OptimizerRange& shard) {
  return {{"exp_avg", shard.exp_avg},
          {"exp_avg_sq", shard.exp_avg_sq},
          {"step", torch::full({}, shard.step, torch::kInt64)},
          {"begin", torch::full({}, shard.begin, torch::kInt64)}};
}

absl::StatusOr<ManifestEntry> WriteOptimizerShard(const std::string& root, int64_t step, int rank,
                                                  const OptimizerRange& shard) {
  ASSIGN_OR_RETURN(CheckpointDirWriter writer, CheckpointDirWriter::Open(root, step));
  const std::string name = OptimizerShardName(rank);
  RETURN_IF_ERROR(
      WriteTensors((fs::path(writer.tmp_dir()) / name).string(), OptimizerShardTensors(shard)));
  RETURN_IF_ERROR(writer.AdoptFile(name));
  return writer.files().back();
}

absl::StatusOr<OptimizerRange> ReadOptimizerRange(
    const std::string& dir, const std::vector<std::pair<std::string, int64_t>>& layout,
    const std::vector<std::pair<std::string, int64_t>>& saved_layout, int saved_world,
    int64_t saved_shard, int64_t begin, int64_t end, torch::ScalarType dtype) {
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const auto& [name, numel] : layout) {
    offsets.push_back(total);
    total += numel;
  }
  if (saved_world > 0) {
    // The shards are flat: the layouts must agree element for element.
    for (size_t i = 0; i < std::max(layout.size(), saved_layout.size()); ++i) {
      if (i >= layout.size() || i >= saved_layout.size() || layout[i] != saved_layout[i]) {
        auto describe = [](const auto& l, size_t k) {
          return k < l.size() ? absl::StrCat(l[k].first, " (", l[k].second, " elements)")
                              : std::string("nothing");
        };
        return absl::InvalidArgumentError(absl::StrCat(
            dir, ": the checkpoint's sharded optimizer state has ", describe(saved_layout, i),
            " as trained parameter ", i, ", this model ", describe(layout, i)));
      }
    }
  }
  CS_CHECK_MSG(0 <= begin && begin <= end && end <= total, "ReadOptimizerRange: bad range");
  OptimizerRange out;
  out.begin = begin;
  out.exp_avg = torch::zeros({end - begin}, dtype);
  out.exp_avg_sq = torch::zeros({end - begin}, dtype);
  if (saved_world == 0) {
    const std::string path = (fs::path(dir) / kOptimizerFile).string();
    ASSIGN_OR_RETURN(auto moments, ReadTensors(path));
    if (moments.empty()) return out;  // saved before the first step
    for (size_t i = 0; i < layout.size(); ++i) {
      const int64_t a = std::max(begin, offsets[i]);
      const int64_t b = std::min(end, offsets[i] + layout[i].second);
      const std::string& name = layout[i].first;
      auto m = moments.find(name + ".exp_avg"), v = moments.find(name + ".exp_avg_sq");
      auto s = moments.find(name + ".step");
      if (m == moments.end() || v == moments.end() || s == moments.end() ||
          m->second.numel() != layout[i].second || v->second.numel() != layout[i].second) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": no state of the right size for trained parameter \"", name, "\""));
      }
      out.step = s->second.item<int64_t>();
      if (a >= b) continue;
      out.exp_avg.narrow(0, a - begin, b - a)
          .copy_(Flat(m->second).narrow(0, a - offsets[i], b - a));
      out.exp_avg_sq.narrow(0, a - begin, b - a)
          .copy_(Flat(v->second).narrow(0, a - offsets[i], b - a));
    }
    return out;
  }
  if (saved_shard <= 0 || saved_shard * saved_world < total) {
    return absl::DataLossError(absl::StrCat(dir, ": shard size ", saved_shard, " over ",
                                            saved_world, " ranks cannot hold ", total,
                                            " elements"));
  }
  bool any = false;
  for (int r = 0; r < saved_world; ++r) {
    const int64_t shard_begin = r * saved_shard;
    const int64_t shard_end = std::min(total, shard_begin + saved_shard);
    const int64_t a = std::max(begin, shard_begin), b = std::min(end, shard_end);
    if (a >= b) continue;
    const std::string path = (fs::path(dir) / OptimizerShardName(r)).string();
    ASSIGN_OR_RETURN(auto shard, ReadTensors(path));
    auto m = shard.find("exp_avg"), v = shard.find("exp_avg_sq"), s = shard.find("step"),
         first = shard.find("begin");
    const int64_t n = std::max<int64_t>(0, shard_end - shard_begin);
    if (m == shard.end() || v == shard.end() || s == shard.end() || first == shard.end() ||
        m->second.numel() != n || v->second.numel() != n ||
        first->second.item<int64_t>() != shard_begin) {
      return absl::DataLossError(
          absl::StrCat(path, ": not rank ", r, "'s shard of ", saved_world, " (", n, " elements)"));
    }
    out.step = s->second.item<int64_t>();
    any = true;
    out.exp_avg.narrow(0, a - begin, b - a).copy_(m->second.narrow(0, a - shard_begin, b - a));
    out.exp_avg_sq.narrow(0, a - begin, b - a).copy_(v->second.narrow(0, a - shard_begin, b - a));
  }
  if (!any) {  // an empty range: the step count still comes from a shard
    const std::string path = (fs::path(dir) / OptimizerShardName(0)).string();
    ASSIGN_OR_RETURN(auto shard, ReadTensors(path));
    auto s = shard.find("step");
    if (s == shard.end()) return absl::DataLossError(absl::StrCat(path, ": no step count"));
    out.step = s->second.item<int64_t>();
  }
  return out;
}

}  // namespace clipscale
